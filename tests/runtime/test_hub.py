"""Many streams on one runtime: each equals itself alone, vision batched across streams, windows
taken round-robin, a failing stream leaves the others alone, memory allocated once."""

from __future__ import annotations

import threading
from collections import deque
from types import SimpleNamespace

import pytest
import torch

from streamvxl import ClosedError, ConfigError, Hub, Runtime, VideoMemory
from streamvxl.runtime.scheduler import Scheduler
from tests.runtime.helpers import QUESTION, config, kv, scenes, worker_held


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint) -> Runtime:
    return Runtime.from_pretrained(tiny_checkpoint, device="cpu")


def alone(runtime: Runtime, frames, **kw) -> VideoMemory:
    """The same stream in a synchronous memory of its own."""
    mem = VideoMemory.on(runtime, config(**kw), background=False)
    mem.extend(frames, timestamps=[float(i) for i in range(len(frames))])
    mem.flush()
    return mem


@pytest.mark.parametrize("background", [False, True], ids=["sync", "worker"])
def test_each_stream_in_a_hub_equals_it_alone(runtime, background: bool) -> None:
    clips = {f"cam{k}": scenes(3, 7 + k, seed=10 + k) for k in range(3)}
    budgets = {"cam0": None, "cam1": 60, "cam2": None}
    with Hub(runtime, background=background) as hub:
        streams = {name: hub.stream(name, config(token_budget=budgets[name]))
                   for name in clips}

        def produce(name: str) -> None:
            for i, f in enumerate(clips[name]):
                streams[name].push(f, timestamp=float(i))
            streams[name].flush()

        producers = [threading.Thread(target=produce, args=(n,)) for n in clips]
        for t in producers:
            t.start()
        for t in producers:
            t.join(120)
        got = {n: (s.intervals, kv(s), s.ask(QUESTION, max_new_tokens=3, output_logits=True))
               for n, s in streams.items()}
    for name, frames in clips.items():
        solo = alone(runtime, frames, token_budget=budgets[name])
        intervals, (k, v), answer = got[name]
        assert intervals == solo.intervals, name
        sk, sv = kv(solo)
        torch.testing.assert_close(k, sk, atol=1e-5, rtol=0)
        torch.testing.assert_close(v, sv, atol=1e-5, rtol=0)
        want = solo.ask(QUESTION, max_new_tokens=3, output_logits=True)
        assert answer.token_ids == want.token_ids
        torch.testing.assert_close(answer.logits, want.logits, atol=1e-4, rtol=0)


def test_streams_come_and_go_while_others_run(runtime) -> None:
    frames = scenes(3, 8, seed=4)
    with Hub(runtime) as hub:
        a = hub.stream("a", config())
        for i, f in enumerate(frames[:10]):
            a.push(f, timestamp=float(i))
        b = hub.stream("b", config())  # added while a has work queued
        for i, f in enumerate(frames):
            b.push(f, timestamp=float(i))
        a.close()  # removed while b's frames are being processed
        assert hub.names == ["b"]
        with pytest.raises(ClosedError):
            a.push(frames[0])
        with pytest.raises(KeyError):
            hub["a"]
        b.flush()
        assert hub["b"].stats().frames_seen == len(frames)
        c = hub.stream("a", config())  # the name is free again
        assert c.stats().frames_seen == 0
        got = b.intervals
    assert got == alone(runtime, frames).intervals
    with pytest.raises(ClosedError):
        hub.stream("late", config())


def test_stream_names_and_configs_are_checked(runtime) -> None:
    with Hub(runtime, background=False) as hub:
        hub.stream("x", config())
        with pytest.raises(ConfigError, match="exists"):
            hub.stream("x", config())
        with pytest.raises(ConfigError, match="name"):
            hub.stream("", config())
        with pytest.raises(ConfigError, match="MemoryConfig"):
            hub.stream("y", {"ratio": 2})  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="token_budget"):
            hub.stream("y", config(token_budget=5))
        assert hub.names == ["x"]


def test_vision_is_batched_across_streams(runtime, monkeypatch) -> None:
    batches: list[int] = []
    real = runtime.encode_images

    def counting(images):
        batches.append(len(images))
        return real(images)

    monkeypatch.setattr(runtime, "encode_images", counting)
    with Hub(runtime) as hub:
        streams = [hub.stream(f"s{k}", config()) for k in range(4)]
        with worker_held(streams[0]):
            for k, s in enumerate(streams):
                for i, f in enumerate(scenes(1, 3, seed=k)):
                    s.push(f, timestamp=float(i))
        for s in streams:
            s.wait()
    assert batches == [12]  # one forward for the four streams' queued frames


def test_windows_are_taken_round_robin() -> None:
    """With closed intervals waiting in several streams, each gets one window in turn."""
    scheduler = Scheduler(SimpleNamespace(config=SimpleNamespace(vision_batch=16)))
    slots = [SimpleNamespace(name=n, state=SimpleNamespace(pending=deque(range(k))))
             for n, k in (("a", 4), ("b", 1), ("c", 2))]
    order: list[str] = []

    def compress(slot) -> None:
        order.append(slot.name)
        slot.state.pending.popleft()

    scheduler._compress = compress
    while (step := scheduler._compress_step(slots)) is not None:
        assert step.kind == "compress"
        step.run()
    assert order == ["a", "b", "c", "a", "c", "a", "a"]


def test_a_failing_stream_leaves_the_others_alone(runtime, monkeypatch) -> None:
    frames = scenes(3, 9, seed=8)
    with Hub(runtime) as hub:
        bad, good = hub.stream("bad", config()), hub.stream("good", config())
        real = runtime.compress_next

        def failing(state):
            if state is bad.state:
                raise RuntimeError("simulated failure in one camera")
            return real(state)

        monkeypatch.setattr(runtime, "compress_next", failing)
        for i, f in enumerate(frames):
            bad.push(f, timestamp=float(i))
            good.push(f, timestamp=float(i))
        good.flush()
        with pytest.raises(RuntimeError, match="one camera"):
            bad.flush()
        assert bad.stats().intervals_closed == 0 and bad.stats().frames_seen == len(frames)
        got = good.intervals
        monkeypatch.setattr(runtime, "compress_next", real)
    assert got == alone(runtime, frames).intervals


def test_memory_is_allocated_once_per_stream(runtime) -> None:
    llm = runtime.model.config.llm
    per_token = 3 * llm.num_hidden_layers * llm.num_key_value_heads * llm.dim_per_head * 4
    budgets = (60, 80)
    with Hub(runtime) as hub:
        streams = [hub.stream(f"b{b}", config(token_budget=b)) for b in budgets]
        scratch = runtime.device_bytes
        sizes = set()
        for i, f in enumerate(scenes(6, 9, seed=12)):
            for s in streams:
                s.push(f, timestamp=float(i))
            if i % 9 == 8:
                for s in streams:
                    s.wait()
                sizes.add(tuple(s.stats().allocated_bytes for s in streams))
                assert runtime.device_bytes == scratch
        assert all(s.stats().intervals_evicted > 0 for s in streams)
    assert sizes == {tuple(b * per_token for b in budgets)}
