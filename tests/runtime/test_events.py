"""Interval events: every stored interval is told to the stream's listeners, as stored."""

from __future__ import annotations

from streamvxl import IntervalEvent, VideoMemory
from streamvxl.runtime.runtime import Runtime
from tests.runtime.helpers import config, scenes


def test_each_stored_interval_is_told_once_as_the_memory_holds_it(tiny_checkpoint) -> None:
    runtime = Runtime.from_pretrained(tiny_checkpoint, device="cpu")
    mem = VideoMemory.on(runtime, config(token_budget=40), background=True)
    events: list[IntervalEvent] = []
    order: list[str] = []
    mem.on_interval(events.append)
    mem.on_interval(lambda e: order.append("listener"))
    mem.on_interval(lambda e: 1 / 0)  # a broken listener is logged; the others still hear
    mem.watch("a car is here", lambda e: order.append("watch"), threshold=-1e9, hysteresis=0)
    mem.extend(scenes(5, 9), timestamps=[0.5 * i for i in range(45)])
    mem.flush()
    stats = mem.stats()
    assert len(events) == stats.intervals_closed >= 4
    assert [e.interval for e in events] == list(range(len(events)))
    kept = {r.id: r for r in mem.intervals}
    assert stats.intervals_evicted > 0 and sum(e.evicted for e in events) == stats.intervals_evicted
    assert sum(e.offloaded for e in events) == 0  # drop_oldest: nothing moves, it goes
    for e in events:
        if e.interval in kept:
            r = kept[e.interval]
            assert (e.t_start, e.t_end, e.num_frames, e.ratio, e.num_tokens) == (
                r.t_start, r.t_end, r.num_frames, r.ratio, r.num_tokens)
    assert events[0].t_start == 0.0 and events[-1].t_end == 22.0
    assert order[:2] == ["listener", "watch"]  # the event before its interval's alert
    mem.close()


def test_offloaded_intervals_are_told_apart_from_dropped_ones(tiny_checkpoint) -> None:
    """Under ``offload`` an interval leaving the GPU is still held (``offloaded``); only what
    leaves the last tier -- here the host, there is no log -- is ``evicted``."""
    runtime = Runtime.from_pretrained(tiny_checkpoint, device="cpu")
    mem = VideoMemory.on(runtime, config(token_budget=40, eviction="offload", host_budget=40),
                         background=False)
    events: list[IntervalEvent] = []
    mem.on_interval(events.append)
    mem.extend(scenes(8, 9), timestamps=[0.5 * i for i in range(72)])
    mem.flush()
    stats = mem.stats()
    on_gpu = stats.intervals_closed - stats.intervals_on_host - stats.intervals_evicted
    assert stats.intervals_on_host > 0 and stats.intervals_evicted > 0
    assert sum(e.offloaded for e in events) == stats.intervals_closed - on_gpu
    assert sum(e.evicted for e in events) == stats.intervals_evicted
    mem.close()


def test_a_removed_listener_hears_nothing_more(tiny_checkpoint) -> None:
    mem = VideoMemory.from_pretrained(tiny_checkpoint, config=config(), device="cpu",
                                      background=False)
    heard: list[int] = []
    remove = mem.on_interval(lambda e: heard.append(e.interval))
    mem.extend(scenes(2, 9), timestamps=[float(i) for i in range(18)])
    mem.wait()
    n = len(heard)
    assert n >= 1
    remove()
    mem.extend(scenes(2, 9, seed=1), timestamps=[18.0 + i for i in range(18)])
    mem.flush()
    assert len(heard) == n and mem.stats().intervals_closed > n
    mem.close()
    remove()  # after close: nothing to remove, no error
