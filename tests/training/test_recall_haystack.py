"""End to end on the embedded default model: a needle past the GPU budget is found by
retrieval, cited, and missed by drop-oldest, and a planted object is brought back by the
words that name it (what benchmarks/recall_eval.py measures at hours; here 6-minute haystacks
on the CPU)."""

from __future__ import annotations

import dataclasses

import pytest

from streamvxl import MemoryConfig, VideoMemory
from streamvxl.memory.recall import Retrieval
from streamvxl.world import is_correct
from training.niah import make_haystack, plant_objects

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


def test_the_words_of_a_question_bring_back_the_object_they_name(tmp_path) -> None:
    """The default scorer ("frames") puts the planted object's intervals in the question's
    context and cites one of them first; the model's own keys do not find it."""
    hay = plant_objects(make_haystack(384, 0.5, seed=2, fps=1.0), (0.15, 0.45), seed=2)
    cfg = MemoryConfig(ratio=16, token_budget=14 + 38, eviction="offload", host_budget=64,
                       log_dir=tmp_path / "log")
    mem = VideoMemory(config=cfg, background=False)
    at = 0
    for chunk in hay.chunks():
        mem.extend(list(chunk), timestamps=[float(at + k) for k in range(len(chunk))])
        at += len(chunk)
    mem.flush()
    found = []
    for obj in hay.planted:
        assert all(r.t_start > obj.t_out for r in mem.state.store.records)  # off the GPU

        def shows(s, obj=obj) -> bool:
            return s.t_start <= obj.t_out - 1 and s.t_end >= obj.t_in

        question = f"When did the {obj.shape} appear?"
        by_frames = mem.ask(question, max_new_tokens=8)
        assert any(shows(s) for s in by_frames.intervals)
        assert shows(by_frames.cited[0]) and by_frames.cited[0].match is not None
        found.append(question)
    mem.close()
    keys = VideoMemory.open(tmp_path / "log", background=False,
                            config=dataclasses.replace(cfg, retrieval=Retrieval(scorer="keys")))
    missed = 0
    for obj, question in zip(hay.planted, found, strict=True):
        answer = keys.ask(question, max_new_tokens=8)
        missed += not any(s.t_start <= obj.t_out - 1 and s.t_end >= obj.t_in
                          for s in answer.intervals)
    keys.close()
    assert missed >= 1  # what the frames scorer adds
