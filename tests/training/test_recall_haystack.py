"""End to end on the embedded default model: a needle past the GPU budget is found by
retrieval, cited, and missed by drop-oldest (what benchmarks/recall_eval.py measures at
hours; here a 6-minute haystack on the CPU)."""

from __future__ import annotations

import pytest

from streamvxl import MemoryConfig, VideoMemory
from streamvxl.world import is_correct
from training.niah import make_haystack

pytestmark = pytest.mark.slow


def test_retrieval_finds_and_cites_a_needle_drop_oldest_lost(tmp_path) -> None:
    hay = make_haystack(384, 0.3, seed=1, fps=1.0)
    lo, hi = hay.needle_span
    mem = VideoMemory(config=MemoryConfig(ratio=16, token_budget=14 + 38, eviction="offload",
                                          host_budget=64, log_dir=tmp_path / "log"),
                      background=False)
    at = 0
    for chunk in hay.chunks():
        mem.extend(list(chunk), timestamps=[float(at + k) for k in range(len(chunk))])
        at += len(chunk)
    mem.flush()
    stats = mem.stats()
    assert stats.intervals_on_disk > 0 and stats.intervals_evicted == 0
    found = mem.ask(hay.qa.question, max_new_tokens=16)
    lost = mem.ask(hay.qa.question, max_new_tokens=16, retrieve=False)
    assert is_correct(found.text, hay.qa), found.text
    assert not is_correct(lost.text, hay.qa)
    top = found.cited[0]
    assert top.t_start <= hi - 1 and top.t_end >= lo, (top, hay.needle_span)
    assert all(s.t_end < lo or s.t_start > hi - 1 for s in lost.intervals)
    mem.close()
