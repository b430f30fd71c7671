"""Offloading: intervals leave the GPU budget for host memory and the log instead of being
dropped, keep their K/V exactly, come back to questions, and survive a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from streamvxl import VideoMemory
from streamvxl.errors import ConfigError, MemoryFileError
from streamvxl.memory.recall import Retrieval
from streamvxl.runtime.retrieval import held
from streamvxl.runtime.runtime import Runtime
from tests.runtime.helpers import QUESTION, config, scenes

STAMPS = [float(i) for i in range(54)]
BUDGET = 40  # the sink and a few intervals: most of the 54 frames leave the GPU


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint: Path) -> Runtime:
    return Runtime.from_pretrained(tiny_checkpoint, device="cpu")


def filled(runtime: Runtime, **kw) -> VideoMemory:
    kw.setdefault("token_budget", BUDGET)
    mem = VideoMemory.on(runtime, config(**kw), background=False)
    mem.extend(scenes(6, 9), timestamps=STAMPS)
    mem.flush()
    return mem


def everything(mem: VideoMemory) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """(id, keys, values (L, 1, G, n, D)) of every interval held, oldest first, from its tier."""
    state = mem.state
    out = [(e.record.id, *state.archive.load(e)) for e in state.archive.entries]
    store, at = state.store, state.store.sink_tokens
    for r in store.records:
        out.append((r.id, store.keys()[:, :, :, at:at + r.num_tokens],
                    store.values()[:, :, :, at:at + r.num_tokens]))
        at += r.num_tokens
    return out


def unbounded_twin(runtime: Runtime, mem: VideoMemory) -> VideoMemory:
    """A memory holding every interval ``mem`` holds, on the GPU, in one unbounded store."""
    twin = VideoMemory.on(runtime, config(), background=False)
    store = twin.state.store
    records = {r.id: r for r in held(mem.state)}
    for i, keys, values in everything(mem):
        r = records[i]
        store.next_id = i
        store.add(keys, values, t_start=r.t_start, t_end=r.t_end, frame_start=r.frame_start,
                  frame_end=r.frame_end, ratio=r.ratio, evict=0)
    return twin


def test_the_gpu_tier_is_what_drop_oldest_keeps(runtime) -> None:
    dropping = filled(runtime)
    offloading = filled(runtime, eviction="offload")
    a, b = dropping.state.store, offloading.state.store
    assert [r.id for r in a.records] == [r.id for r in b.records]
    assert torch.equal(a.keys(), b.keys()) and torch.equal(a.values(), b.values())
    stats = offloading.stats()
    assert stats.intervals_evicted == 0 and stats.intervals_on_host == \
        dropping.stats().intervals_evicted > 0
    assert [r.id for r in offloading.intervals] == list(range(stats.intervals_closed))
    assert stats.host_bytes == sum(e.keys.nbytes + e.values.nbytes
                                   for e in offloading.state.archive.entries)
    # the retrieval index is counted apart: a digest for each interval held, on every tier
    digests = offloading.state.digests
    assert len(digests) == stats.intervals_closed and stats.digest_bytes == digests.nbytes > 0
    assert dropping.stats().digest_bytes == 0  # no retrieval, no index


def test_offloaded_intervals_keep_their_kv_exactly(runtime) -> None:
    unbounded = filled(runtime, token_budget=None)
    offloading = filled(runtime, eviction="offload")
    # each interval was encoded over the GPU memory of its time; the first ones saw the same
    first = everything(offloading)[0]
    store = unbounded.state.store
    n = first[1].shape[3]
    assert torch.equal(first[1], store.keys()[:, :, :, store.sink_tokens:store.sink_tokens + n])
    assert torch.equal(first[2], store.values()[:, :, :, store.sink_tokens:store.sink_tokens + n])


def test_a_question_over_everything_reads_every_tier(runtime) -> None:
    mem = filled(runtime, eviction="offload", retrieval=Retrieval(budget=10_000))
    twin = unbounded_twin(runtime, mem)
    a = mem.ask(QUESTION, max_new_tokens=6, output_logits=True)
    b = twin.ask(QUESTION, max_new_tokens=6, output_logits=True)
    assert a.text == b.text and torch.allclose(a.logits, b.logits, atol=1e-6, rtol=0)
    assert [s.t_start for s in a.intervals] == [r.t_start for r in held(mem.state)]
    assert a.context_tokens == b.context_tokens


def test_over_the_host_budget_intervals_go_to_the_log_and_come_back_equal(runtime,
                                                                          tmp_path) -> None:
    on_host = filled(runtime, eviction="offload")
    tiered = filled(runtime, eviction="offload", host_budget=6, log_dir=tmp_path / "log")
    tiered.wait()
    stats = tiered.stats()
    archive = tiered.state.archive
    assert stats.intervals_on_disk > 0 and stats.intervals_evicted == 0
    assert archive.host_tokens <= 6
    assert sum(e.record.num_tokens for e in archive.entries if e.on_host) == archive.host_tokens
    for (i, k, v), (j, k2, v2) in zip(everything(on_host), everything(tiered), strict=True):
        assert i == j and torch.equal(k, k2) and torch.equal(v, v2)


def test_without_a_log_the_host_tier_is_the_last(runtime) -> None:
    mem = filled(runtime, eviction="offload", host_budget=6)
    stats = mem.stats()
    assert stats.intervals_on_disk == 0 and stats.intervals_evicted > 0
    assert mem.state.archive.host_tokens <= 6
    held_ids = [r.id for r in mem.intervals]
    assert held_ids == list(range(stats.intervals_evicted, stats.intervals_closed))
    assert mem.state.digests.ids == held_ids  # digests leave with their intervals


def test_a_log_reopens_with_its_tiers(runtime, tmp_path) -> None:
    live = filled(runtime, eviction="offload", host_budget=6, log_dir=tmp_path / "log",
                  retrieval=Retrieval(budget=10_000))
    before = live.ask(QUESTION, max_new_tokens=6, output_logits=True)
    kv = everything(live)
    live.close()
    again = VideoMemory.open(tmp_path / "log", runtime=runtime, background=False)
    stats = again.stats()
    assert stats.intervals_on_disk == len(again.state.archive) > 0  # reopened: all on disk
    for (i, k, v), (j, k2, v2) in zip(kv, everything(again), strict=True):
        assert i == j and torch.equal(k, k2) and torch.equal(v, v2)
    after = again.ask(QUESTION, max_new_tokens=6, output_logits=True)
    assert after.text == before.text
    assert torch.allclose(after.logits, before.logits, atol=1e-6, rtol=0)
    # a reopened interval that leaves the GPU later goes to disk: its record is known
    again.extend(scenes(2, 9, seed=3), timestamps=[60.0 + i for i in range(18)])
    again.flush()
    assert again.stats().intervals_evicted == 0
    again.close()


def test_a_snapshot_holds_every_tier(runtime, tmp_path) -> None:
    live = filled(runtime, eviction="offload", retrieval=Retrieval(budget=10_000))
    kv = everything(live)
    before = live.ask(QUESTION, max_new_tokens=6, output_logits=True)
    live.save(tmp_path / "all.svxl")
    again = VideoMemory.open(tmp_path / "all.svxl", runtime=runtime, background=False)
    assert again.stats().intervals_closed == live.stats().intervals_closed
    for (i, k, v), (j, k2, v2) in zip(kv, everything(again), strict=True):
        assert i == j and torch.equal(k, k2) and torch.equal(v, v2)
    after = again.ask(QUESTION, max_new_tokens=6, output_logits=True)
    assert torch.allclose(after.logits, before.logits, atol=1e-6, rtol=0)
    # the same snapshot opened under drop_oldest: the GPU tier alone, the rest forgotten
    plain = VideoMemory.open(tmp_path / "all.svxl", runtime=runtime, background=False,
                             config=config(token_budget=BUDGET))
    assert plain.state.archive is None
    assert plain.stats().intervals_evicted == len(live.state.archive)


def test_a_drop_oldest_log_reopened_with_offload_finds_its_history_on_disk(runtime,
                                                                           tmp_path) -> None:
    live = filled(runtime, log_dir=tmp_path / "log")
    evicted = live.stats().intervals_evicted
    live.close()
    again = VideoMemory.open(tmp_path / "log", runtime=runtime, background=False,
                             config=config(token_budget=BUDGET, eviction="offload"))
    stats = again.stats()
    assert stats.intervals_on_disk == evicted > 0 and stats.intervals_evicted == 0
    again.close()


def test_reset_forgets_every_tier(runtime) -> None:
    mem = filled(runtime, eviction="offload")
    mem.reset()
    stats = mem.stats()
    assert stats.intervals_on_host == 0 and mem.intervals == [] and len(mem.state.digests) == 0


@pytest.mark.parametrize("kw, match", [
    ({"eviction": "offload"}, "token_budget"),
    ({"eviction": "spill"}, "eviction"),
    ({"token_budget": 40, "eviction": "offload", "host_budget": -1}, "host_budget"),
    ({"retrieval": 512}, "Retrieval"),
])
def test_bad_tier_settings_are_config_errors(kw, match) -> None:
    with pytest.raises(ConfigError, match=match):
        config(**kw)


@pytest.mark.parametrize("kw, match", [
    ({"budget": 0}, "budget"), ({"recent": 1.5}, "recent"), ({"digest_tokens": 0}, "digest"),
])
def test_bad_retrieval_settings_are_config_errors(kw, match) -> None:
    with pytest.raises(ConfigError, match=match):
        Retrieval(**kw)


def test_a_snapshot_opened_into_a_new_log_moves_its_disk_tier_there(runtime, tmp_path) -> None:
    live = filled(runtime, eviction="offload", retrieval=Retrieval(budget=20))
    live.save(tmp_path / "all.svxl")
    kept = len(live.state.archive)
    cfg = config(token_budget=BUDGET, eviction="offload", host_budget=0,
                 log_dir=tmp_path / "new", retrieval=Retrieval(budget=20))
    mem = VideoMemory.open(tmp_path / "all.svxl", runtime=runtime, background=False, config=cfg)
    mem.extend(scenes(3, 9, seed=3), timestamps=[60.0 + i for i in range(27)])
    mem.flush()
    mem.wait()
    archive = mem.state.archive
    assert archive.on_disk == len(archive) > kept  # old and new intervals, all in the new log
    before = everything(mem)
    answer = mem.ask(QUESTION, max_new_tokens=4)
    mem.close()
    again = VideoMemory.open(tmp_path / "new", runtime=runtime, background=False)
    assert again.stats().intervals_evicted == 0
    for (i, k, v), (j, k2, v2) in zip(before, everything(again), strict=True):
        assert i == j and torch.equal(k, k2) and torch.equal(v, v2)
    assert again.ask(QUESTION, max_new_tokens=4).text == answer.text
    again.close()


def test_a_snapshot_opened_without_a_log_keeps_digests_with_their_intervals(runtime,
                                                                           tmp_path) -> None:
    live = filled(runtime, eviction="offload", retrieval=Retrieval(budget=20))
    live.save(tmp_path / "all.svxl")
    mem = VideoMemory.open(tmp_path / "all.svxl", runtime=runtime, background=False,
                           config=config(token_budget=BUDGET, eviction="offload", host_budget=0,
                                         retrieval=Retrieval(budget=20)))
    mem.extend(scenes(3, 9, seed=3), timestamps=[60.0 + i for i in range(27)])
    mem.flush()
    # the snapshot's intervals stay on its disk; newer ones have no log and leave for good
    assert mem.stats().intervals_evicted > 0 and mem.state.archive.on_disk == len(live.state.archive)
    assert mem.state.digests.ids == [r.id for r in held(mem.state)]
    assert mem.ask(QUESTION, max_new_tokens=4).intervals
    snapshot = (tmp_path / "all.svxl").resolve()
    assert snapshot in open_files()  # the disk tier reads it
    mem.close()
    assert snapshot not in open_files()  # and lets go of it with the memory


def open_files() -> set[Path]:
    """Files this process holds open now."""
    fds = Path("/proc/self/fd")
    return {Path(os.readlink(fd)) for fd in fds.iterdir() if fd.exists()}


def test_a_record_read_back_must_be_the_interval_asked_for(runtime, tmp_path) -> None:
    mem = filled(runtime, eviction="offload", host_budget=0, log_dir=tmp_path / "log")
    mem.wait()
    first, second = mem.state.archive.entries[:2]
    with pytest.raises(MemoryFileError, match="not 1's|interval 0's"):
        mem.state.log.read_interval(first.offset, second.record.id)
    mem.reset()
    assert mem.state.log.offsets == {}  # ids start again: no offset may name an old record
    mem.close()
