"""A memory that outlives its process: its log and snapshots reopen to the same intervals and the
same answer logits, continue its time, and are refused under another model, dtype or prompt."""

from __future__ import annotations

import contextlib
import os
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from streamvxl import VideoMemory
from streamvxl.errors import ConfigError, MemoryFileError, ModelMismatchError
from streamvxl.persist.durability import Durability
from streamvxl.persist.log import log_file
from streamvxl.prompt import PromptTemplate
from streamvxl.runtime.runtime import Runtime
from tests.runtime.helpers import QUESTION, config, scenes

STAMPS = [float(i) for i in range(54)]


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint: Path) -> Runtime:
    """One runtime over the tiny checkpoint for every reopening (and the writers)."""
    return Runtime.from_pretrained(tiny_checkpoint, device="cpu")


def written(runtime: Runtime, log_dir: Path | None, budget: int | None = None,
            background: bool = False, **kw) -> VideoMemory:
    mem = VideoMemory.on(runtime, config(log_dir=log_dir, token_budget=budget, **kw),
                         background=background)
    mem.extend(scenes(6, 9), timestamps=STAMPS)
    mem.flush()
    return mem


def captured(mem: VideoMemory) -> dict:
    """What two memories must share: intervals, K/V in their slots, answer logits, counters."""
    answer = mem.ask(QUESTION, max_new_tokens=6, output_logits=True)
    store, stats = mem.state.store, mem.stats()
    return {"records": [(r.id, r.t_start, r.t_end, r.frame_start, r.frame_end, r.ratio,
                         r.num_tokens) for r in mem.intervals],
            "embeddings": [r.embedding.clone() for r in mem.intervals],
            "kv": (store.keys().clone(), store.values().clone(), store.rotated_keys().clone()),
            "text": answer.text, "logits": answer.logits,
            "counts": (stats.intervals_closed, stats.intervals_evicted)}


def same_memory(a: VideoMemory | dict, b: VideoMemory | dict) -> None:
    """Same intervals, same K/V in the same slots, same answer logits (1e-6, fp32)."""
    x = a if isinstance(a, dict) else captured(a)
    y = b if isinstance(b, dict) else captured(b)
    assert x["records"] == y["records"] and x["counts"] == y["counts"]
    assert all(torch.equal(e, f) for e, f in zip(x["embeddings"], y["embeddings"], strict=True))
    assert all(torch.equal(s, t) for s, t in zip(x["kv"], y["kv"], strict=True))
    assert x["text"] == y["text"]
    assert torch.allclose(x["logits"], y["logits"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("budget", [None, 60], ids=["unbounded", "budget-evicting"])
def test_a_log_and_a_snapshot_reopen_to_the_same_memory(runtime, tmp_path, budget) -> None:
    live = written(runtime, tmp_path / "log", budget)
    if budget is not None:
        assert live.stats().intervals_evicted > 0
    live.save(tmp_path / "snapshot.svxl")
    before = captured(live)
    live.close()  # a log has one writer: the live memory lets go of it first
    for source in (tmp_path / "log", tmp_path / "snapshot.svxl"):
        reopened = VideoMemory.open(source, runtime=runtime, background=False)
        same_memory(before, reopened)
        reopened.close()


def test_the_worker_writes_the_same_log(runtime, tmp_path) -> None:
    sync = written(runtime, tmp_path / "sync", 60)
    worker = written(runtime, tmp_path / "worker", 60, background=True)
    worker.wait()
    sync.close()
    worker.close()
    a = VideoMemory.open(tmp_path / "sync", runtime=runtime, background=False)
    b = VideoMemory.open(tmp_path / "worker", runtime=runtime, background=False)
    same_memory(a, b)
    a.close()
    b.close()


def test_a_reopened_log_goes_on_appending_and_reopens_again(runtime, tmp_path) -> None:
    frames, stamps = scenes(10, 9, seed=4), [float(i) for i in range(90)]
    reference = VideoMemory.on(runtime, config(token_budget=60), background=False)
    first = VideoMemory.on(runtime, config(log_dir=tmp_path, token_budget=60),
                           background=False)
    for mem in (reference, first):
        mem.extend(frames[:45], timestamps=stamps[:45])
        mem.flush()  # the open interval is closed: nothing is lost at this cut
    first.close()
    second = VideoMemory.open(tmp_path, runtime=runtime, background=False)
    # what the log held counts as logged, like intervals_closed counts it as closed
    closed = reference.stats().intervals_closed
    assert (second.stats().intervals_logged, second.stats().intervals_closed) == (closed, closed)
    for mem in (reference, second):
        mem.extend(frames[45:], timestamps=stamps[45:])
        mem.flush()
    assert second.stats().intervals_logged == reference.stats().intervals_closed
    second.close()
    third = VideoMemory.open(tmp_path, runtime=runtime, background=False)
    assert third.intervals[-1].frame_end == 89
    same_memory(reference, third)
    reference.close()
    third.close()


def test_time_goes_on_after_a_restart_and_the_downtime_is_a_gap(runtime, tmp_path,
                                                                 monkeypatch) -> None:
    mem = written(runtime, tmp_path)
    end = mem.intervals[-1].t_end
    mem.close()
    reopened = VideoMemory.open(tmp_path, runtime=runtime, background=False)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 30.0)  # closed for 30 s
    # a source whose clock started again at 0 s
    reopened.extend(scenes(1, 6, seed=9), timestamps=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    reopened.flush()
    new = reopened.intervals[-1]
    assert end + 30.0 <= new.t_start < end + 32.0
    assert new.t_end - new.t_start == pytest.approx(5.0)
    gap = reopened.stats().gaps[-1]
    assert (gap.start, gap.end, gap.cause) == (end, new.t_start, "the memory was not running")
    assert reopened.ask(QUESTION, max_new_tokens=2).gaps == (gap,)
    reopened.close()


def test_a_clock_that_goes_on_is_left_alone(runtime, tmp_path) -> None:
    written(runtime, tmp_path).close()
    reopened = VideoMemory.open(tmp_path, runtime=runtime, background=False)
    reopened.extend(scenes(1, 6, seed=9), timestamps=[60.0 + i for i in range(6)])
    reopened.flush()
    assert reopened.intervals[-1].t_start == 60.0
    reopened.close()


def test_gaps_are_kept_across_a_restart(runtime, tmp_path) -> None:
    mem = VideoMemory.on(runtime, config(log_dir=tmp_path), background=False)
    mem.extend(scenes(4, 9), timestamps=[float(i) for i in range(18)] +
               [100.0 + i for i in range(18)])
    mem.flush()
    gaps = mem.stats().gaps
    assert len(gaps) == 1
    mem.close()
    assert VideoMemory.open(tmp_path, runtime=runtime, background=False).stats().gaps == gaps


def test_a_reset_is_logged(runtime, tmp_path) -> None:
    mem = written(runtime, tmp_path)
    mem.reset()
    mem.extend(scenes(2, 9, seed=5), timestamps=[float(i) for i in range(18)])
    mem.flush()
    kept = [(r.frame_start, r.frame_end) for r in mem.intervals]
    mem.close()
    reopened = VideoMemory.open(tmp_path, runtime=runtime, background=False)
    assert [(r.frame_start, r.frame_end) for r in reopened.intervals] == kept
    reopened.close()


def test_another_model_dtype_or_prompt_is_refused(runtime, tmp_path, tmp_path_factory,
                                                   tiny_checkpoint) -> None:
    from streamvxl.testing import make_checkpoint

    written(runtime, tmp_path).close()
    other = Runtime.from_pretrained(make_checkpoint(tmp_path_factory.mktemp("other"), seed=1),
                                    device="cpu")
    with pytest.raises(ModelMismatchError, match="another model.*written under.*opened under"):
        VideoMemory.open(tmp_path, runtime=other, background=False)
    half = Runtime.from_pretrained(tiny_checkpoint, device="cpu", dtype=torch.bfloat16)
    with pytest.raises(ModelMismatchError, match="float32.*bfloat16"):
        VideoMemory.open(tmp_path, runtime=half, background=False)
    prompt = PromptTemplate(prefix="<|im_start|>system\nYou watch a gate.<|im_end|>\n")
    with pytest.raises(ModelMismatchError, match="prompt.*You watch a gate"):
        VideoMemory.open(tmp_path, runtime=runtime, background=False,
                         config=config(prompt=prompt))


def test_a_memory_is_refused_under_other_preprocessing(runtime, tmp_path, monkeypatch) -> None:
    """Cropped and padded frames give other keys from the same weights: a log written with
    one fit does not open under a runtime with the other; one written before the preprocessing
    was recorded opens unchecked."""
    from streamvxl import Preprocessor
    from streamvxl.runtime import durable

    padded = Runtime(runtime.model, runtime.tokenizer,
                     Preprocessor(runtime.model.image_size, fit="pad"))
    written(runtime, tmp_path / "cropped").close()
    with pytest.raises(ModelMismatchError, match="fit: written 'crop', this runtime 'pad'"):
        VideoMemory.open(tmp_path / "cropped", runtime=padded, background=False)
    VideoMemory.open(tmp_path / "cropped", runtime=runtime, background=False).close()
    written(padded, tmp_path / "padded").close()
    with pytest.raises(ModelMismatchError, match="fit: written 'pad', this runtime 'crop'"):
        VideoMemory.open(tmp_path / "padded", runtime=runtime, background=False)
    monkeypatch.setattr(durable, "preprocess_record", lambda p: None)  # an older writer
    written(runtime, tmp_path / "older").close()
    VideoMemory.open(tmp_path / "older", runtime=padded, background=False).close()


def test_only_serving_settings_may_change_on_reopen(runtime, tmp_path) -> None:
    written(runtime, tmp_path).close()
    with pytest.raises(ConfigError, match="ratio"):
        VideoMemory.open(tmp_path, runtime=runtime, background=False, config=config(ratio=4))
    mem = VideoMemory.open(tmp_path, runtime=runtime, background=False,
                           config=config(queue_frames=7, durability=Durability("never")))
    assert mem.config.queue_frames == 7 and mem.config.log_dir == str(tmp_path)
    mem.close()


def test_a_directory_with_a_log_is_not_overwritten(runtime, tmp_path) -> None:
    written(runtime, tmp_path).close()
    size = log_file(tmp_path).stat().st_size
    with pytest.raises(MemoryFileError, match="already holds a memory log.*VideoMemory.open"):
        VideoMemory.on(runtime, config(log_dir=tmp_path), background=False)
    assert log_file(tmp_path).stat().st_size == size


def test_nothing_there_is_a_typed_error(runtime, tmp_path) -> None:
    with pytest.raises(MemoryFileError, match="does not exist"):
        VideoMemory.open(tmp_path / "nowhere.svxl", runtime=runtime, background=False)
    with pytest.raises(MemoryFileError, match="does not exist"):
        VideoMemory.open(tmp_path, runtime=runtime, background=False)  # a dir without a log


@pytest.mark.parametrize("fsync,expected", [("record", "every"), ("batch", "some"),
                                            ("never", "none")])
def test_durability_decides_the_fsyncs(runtime, tmp_path, monkeypatch, fsync, expected) -> None:
    # the first six intervals are written and closed first: a "batch" fsync of theirs still
    # running on the syncer thread would otherwise be counted below (or delay the next one)
    written(runtime, tmp_path / "log", durability=Durability("never")).close()
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    cfg = config(log_dir=tmp_path / "log",
                 durability=Durability(fsync, every_records=3, every_seconds=3600))
    mem = VideoMemory.open(tmp_path / "log", runtime=runtime, background=False, config=cfg)
    assert mem.stats().intervals_closed == 6 and not calls  # reopening forces nothing to disk
    mem.extend(scenes(3, 9, seed=2), timestamps=[100.0 + i for i in range(27)])
    mem.flush()
    records = 3  # three more intervals
    assert mem.stats().intervals_closed == 9
    mem.close()  # waits for a batch fsync in flight; nothing is left unsynced after it
    n = len(calls)
    assert {"every": n == records, "some": n == 1, "none": n == 0}[expected], n


def test_a_save_replaces_the_old_snapshot_whole(runtime, tmp_path) -> None:
    target = tmp_path / "mem.svxl"
    mem = written(runtime, None)
    mem.save(target)
    first = target.read_bytes()
    mem.extend(scenes(2, 9, seed=3), timestamps=[100.0 + i for i in range(18)])
    mem.flush()
    mem.save(target)
    assert target.read_bytes() != first
    assert not [p for p in tmp_path.iterdir() if p.name != "mem.svxl"]  # no temporary left
    reopened = VideoMemory.open(target, runtime=runtime, background=False)
    same_memory(mem, reopened)
    mem.close()
    reopened.close()


def test_a_snapshot_can_start_a_new_log(runtime, tmp_path) -> None:
    mem = written(runtime, None, 60)
    mem.save(tmp_path / "mem.svxl")
    moved = VideoMemory.open(tmp_path / "mem.svxl", runtime=runtime, background=False,
                             config=replace(mem.config, log_dir=tmp_path / "log"))
    moved.close()
    again = VideoMemory.open(tmp_path / "log", runtime=runtime, background=False)
    same_memory(mem, again)
    mem.close()
    again.close()


def test_a_hub_reopens_each_camera_from_its_own_log(runtime, tmp_path) -> None:
    from streamvxl import Hub

    with Hub(runtime, background=False) as hub:
        for name, seed in (("gate", 0), ("dock", 1)):
            cam = hub.stream(name, config(log_dir=tmp_path / name))
            cam.extend(scenes(4, 9, seed=seed), timestamps=[float(i) for i in range(36)])
            cam.flush()
        before = {name: [(r.id, r.t_start, r.num_tokens) for r in hub[name].intervals]
                  for name in hub.names}
    alone = VideoMemory.on(runtime, config(), background=False)
    alone.extend(scenes(4, 9, seed=1), timestamps=[float(i) for i in range(36)])
    alone.flush()
    with Hub(runtime, background=False) as hub:
        dock = hub.open_stream("dock", tmp_path / "dock")
        gate = hub.open_stream("gate", tmp_path / "gate")
        assert [(r.id, r.t_start, r.num_tokens) for r in dock.intervals] == before["dock"]
        assert [(r.id, r.t_start, r.num_tokens) for r in gate.intervals] == before["gate"]
        same_memory(alone, dock)  # one camera of a hub, reopened, equals that camera alone
    alone.close()


def test_a_failed_write_reaches_the_caller_and_the_memory_goes_on(runtime, tmp_path,
                                                                  monkeypatch) -> None:
    from streamvxl.persist.log import LogWriter

    mem = written(runtime, tmp_path)
    logged = mem.stats().intervals_logged
    assert logged == mem.stats().intervals_closed == 6

    def disk_full(self, body):
        raise MemoryFileError(f"writing to {self.path} failed: [Errno 28] No space left")

    monkeypatch.setattr(LogWriter, "append", disk_full)
    with pytest.raises(MemoryFileError, match="No space left"):
        mem.extend(scenes(3, 9, seed=6), timestamps=[100.0 + i for i in range(27)])
        mem.flush()
    monkeypatch.undo()
    with contextlib.suppress(MemoryFileError):  # the record in flight failed too: said here
        mem.flush()
    mem.extend(scenes(2, 9, seed=7), timestamps=[200.0 + i for i in range(18)])
    mem.flush()
    closed = mem.stats().intervals_closed
    assert mem.stats().intervals_logged < closed  # the failed ones are not in the log
    mem.close()
    reopened = VideoMemory.open(tmp_path, runtime=runtime, background=False)
    assert reopened.intervals[-1].t_end == 217.0  # the records after the failure are there
    reopened.close()


def test_a_log_has_one_writer_at_a_time(runtime, tmp_path) -> None:
    written(runtime, tmp_path).close()
    first = VideoMemory.open(tmp_path, runtime=runtime, background=False)
    size = log_file(tmp_path).stat().st_size
    with pytest.raises(MemoryFileError, match="in use"):
        VideoMemory.open(tmp_path, runtime=runtime, background=False)
    assert log_file(tmp_path).stat().st_size == size  # nothing cut, nothing written
    first.close()
    VideoMemory.open(tmp_path, runtime=runtime, background=False).close()  # free again


def test_reopening_holds_only_what_memory_keeps(runtime, tmp_path) -> None:
    """A log holds every interval ever stored; reopening reads it through a map of the file and
    copies only the bodies still in memory, so what it allocates follows the budget, not the
    history."""
    mem = VideoMemory.on(runtime, config(log_dir=tmp_path / "log", token_budget=40),
                         background=False)
    mem.extend(scenes(60, 9), timestamps=[float(i) for i in range(540)])
    mem.flush()
    kept = mem.stats()
    mem.close()
    size = log_file(tmp_path / "log").stat().st_size
    tracemalloc.start()
    try:
        again = VideoMemory.open(tmp_path / "log", runtime=runtime, background=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert again.stats().intervals_in_memory == kept.intervals_in_memory
    assert kept.intervals_evicted > 3 * kept.intervals_in_memory  # most of the log is history
    assert peak < size / 3, (peak, size)
    again.close()
