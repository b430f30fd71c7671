"""Questions over tiered memories: what retrieval chooses is what the answer reads, answers
cite exactly their context, and a damaged disk tier is a typed error that loses nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamvxl import VideoMemory
from streamvxl.errors import MemoryFileError
from streamvxl.memory.recall import Retrieval, select
from streamvxl.persist.log import log_file
from streamvxl.runtime.retrieval import held, scores
from streamvxl.runtime.runtime import Runtime
from tests.runtime.helpers import QUESTION, config, scenes, tiered


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint: Path) -> Runtime:
    return Runtime.from_pretrained(tiny_checkpoint, device="cpu")


def filled(runtime: Runtime, background: bool = False, **kw) -> VideoMemory:
    return tiered(runtime, background, **kw)


def twin_of(runtime: Runtime, mem: VideoMemory, ids: list[int]) -> VideoMemory:
    """An unbounded memory holding exactly the intervals ``ids`` of ``mem``, in time order."""
    twin = VideoMemory.on(runtime, config(), background=False)
    state, store = mem.state, twin.state.store
    archived = {e.record.id: e for e in state.archive.entries}
    hot, at = {}, state.store.sink_tokens
    for r in state.store.records:
        hot[r.id] = (state.store.keys()[:, :, :, at:at + r.num_tokens],
                     state.store.values()[:, :, :, at:at + r.num_tokens])
        at += r.num_tokens
    for r in held(state):
        if r.id in ids:
            keys, values = hot[r.id] if r.id in hot else state.archive.load(archived[r.id])
            store.add(keys, values, t_start=r.t_start, t_end=r.t_end, frame_start=r.frame_start,
                      frame_end=r.frame_end, ratio=r.ratio, evict=0)
    return twin


def test_the_answer_reads_what_the_rule_chooses(runtime) -> None:
    mem = filled(runtime, retrieval=Retrieval(budget=12, recent=0.25))
    question = mem._question(QUESTION, 6, 0.0, 1.0, None, True)
    everything = held(mem.state)
    chosen = select([r.num_tokens for r in everything],
                    scores(runtime, mem.state, question.ids, None), 12, 0.25)
    expected = [everything[i] for i in chosen]
    assert 0 < len(expected) < len(everything)
    answer = mem.ask(QUESTION, max_new_tokens=6, output_logits=True)
    assert [(s.t_start, s.t_end) for s in answer.intervals] == \
        [(r.t_start, r.t_end) for r in expected]
    assert answer.candidates == len(everything)
    reference = twin_of(runtime, mem, [r.id for r in expected]).ask(
        QUESTION, max_new_tokens=6, output_logits=True)
    assert answer.text == reference.text
    assert torch.allclose(answer.logits, reference.logits, atol=1e-6, rtol=0)


def test_retrieve_false_reads_the_gpu_tier_alone(runtime) -> None:
    mem = filled(runtime, retrieval=Retrieval(budget=12))
    answer = mem.ask(QUESTION, max_new_tokens=4, retrieve=False)
    assert [s.t_start for s in answer.intervals] == [r.t_start for r in mem.state.store.records]


def test_citations_rank_exactly_the_context(runtime) -> None:
    mem = filled(runtime, retrieval=Retrieval(budget=16))
    mem.extend(scenes(1, 5, seed=9), timestamps=[60.0 + i for i in range(5)])  # an open interval
    answer = mem.ask(QUESTION, max_new_tokens=6)
    cited = answer.cited
    assert {(c.t_start, c.t_end) for c in cited} == \
        {(s.t_start, s.t_end) for s in answer.intervals}
    assert [c.weight for c in cited] == sorted((c.weight for c in cited), reverse=True)
    assert abs(sum(c.weight for c in cited) - 1.0) < 1e-6 and all(c.weight >= 0 for c in cited)
    assert any(c.interval is None for c in cited)  # the frames not yet compressed
    assert mem.ask(QUESTION, max_new_tokens=6, cite=False).cited == ()


def test_the_worker_answers_as_the_caller_does(runtime) -> None:
    sync = filled(runtime, retrieval=Retrieval(budget=12))
    worker = filled(runtime, background=True, retrieval=Retrieval(budget=12))
    a, b = sync.ask(QUESTION, max_new_tokens=6), worker.ask(QUESTION, max_new_tokens=6)
    assert a.text == b.text and a.intervals == b.intervals
    assert [(c.t_start, c.interval) for c in a.cited] == [(c.t_start, c.interval) for c in b.cited]
    worker.close()


def test_a_damaged_disk_tier_is_a_typed_error_and_the_memory_goes_on(runtime,
                                                                     tmp_path) -> None:
    mem = filled(runtime, host_budget=0, log_dir=tmp_path / "log",
                 retrieval=Retrieval(budget=10_000))
    archive = mem.state.archive
    assert archive.on_disk > 0
    victim = archive.entries[0].offset
    with open(log_file(tmp_path / "log"), "r+b") as fh:  # a stray write inside its record
        fh.seek(victim + 40)
        fh.write(b"\x00" * 16)
    with pytest.raises(MemoryFileError, match="no intact record"):
        mem.ask(QUESTION, max_new_tokens=4)
    assert mem.ask(QUESTION, max_new_tokens=4, retrieve=False).text is not None
    mem.extend(scenes(1, 9, seed=4), timestamps=[70.0 + i for i in range(9)])
    mem.flush()
    assert mem.stats().frames_seen == 63
