"""The background worker: push returns at once, queues keep order or count their drops,
questions jump the backlog, errors reach the next call, close never hangs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from streamvxl import ClosedError, Frame, WorkerError
from tests.runtime.helpers import QUESTION, kv, memory, scenes, worker_held


def test_push_returns_at_once_and_the_backlog_is_reported(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint)
    frames = scenes(2, 5)
    with worker_held(mem):
        t0 = time.perf_counter()
        for i, f in enumerate(frames):
            mem.push(f, timestamp=float(i))
        took = time.perf_counter() - t0
        s = mem.stats()
        assert (s.frames_pushed, s.queue_depth, s.frames_seen) == (10, 10, 0)
        assert s.lag == 9.0  # newest pushed (9 s) minus where the stream started (0 s)
    assert took < 1.0  # nothing ran: the worker was busy the whole time
    mem.wait()
    s = mem.stats()
    assert (s.frames_seen, s.queue_depth, s.frames_dropped, s.lag) == (10, 0, 0, 0.0)
    mem.close()


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", [7.0, 8.0, 9.0]),
                                              ("drop_newest", [0.0, 1.0, 2.0])])
def test_drop_policies_count_drops_exactly(tiny_checkpoint, policy: str, kept) -> None:
    mem = memory(tiny_checkpoint, queue_frames=3, overflow=policy)
    with worker_held(mem):
        for i, f in enumerate(scenes(1, 10)):
            mem.push(f, timestamp=float(i))
        assert mem.stats().frames_dropped == 7
    mem.flush()
    s = mem.stats()
    assert (s.frames_pushed, s.frames_dropped, s.frames_seen) == (10, 7, 3)
    spans = mem.ask(QUESTION, max_new_tokens=1).intervals
    assert [(sp.t_start, sp.t_end) for sp in spans] == [(kept[0], kept[-1])]
    mem.close()


def test_block_waits_for_room_and_loses_nothing(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint, queue_frames=2)
    frames = scenes(3, 6, seed=2)
    with worker_held(mem):
        producer = threading.Thread(target=lambda: [mem.push(f, timestamp=float(i))
                                                    for i, f in enumerate(frames)])
        producer.start()
        time.sleep(0.3)
        assert producer.is_alive() and mem.stats().queue_depth == 2  # waiting for room
    producer.join(30)
    assert not producer.is_alive()
    mem.flush()
    quiet = memory(tiny_checkpoint, background=False)
    quiet.extend(frames, timestamps=[float(i) for i in range(len(frames))])
    quiet.flush()
    assert mem.intervals == quiet.intervals
    torch.testing.assert_close(kv(mem)[0], kv(quiet)[0], atol=1e-5, rtol=0)
    mem.close()


def test_live_frames_drop_the_oldest_others_block(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint, queue_frames=2)
    images = scenes(1, 6)
    with worker_held(mem):
        for i, image in enumerate(images):
            mem.push(Frame(image, float(i), i, live=True))
        assert mem.stats().frames_dropped == 4
        blocked = threading.Thread(target=mem.push, args=(images[0], 10.0))
        blocked.start()
        time.sleep(0.2)
        assert blocked.is_alive()  # a plain array: block is the default
    blocked.join(30)
    mem.wait()
    assert mem.stats().frames_seen == 3
    mem.close()


def test_questions_jump_the_backlog_unless_told_to_wait(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint)
    frames = scenes(3, 9, seed=3)
    answers: dict[str, object] = {}
    with worker_held(mem):
        for i, f in enumerate(frames):
            mem.push(f, timestamp=float(i))
        asks = [threading.Thread(target=lambda w=w: answers.__setitem__(
            w, mem.ask(QUESTION, max_new_tokens=2, wait=w))) for w in (False, True)]
        for t in asks:
            t.start()
        time.sleep(0.2)  # both questions queued behind the step in progress
    for t in asks:
        t.join(60)
    now, later = answers[False], answers[True]
    assert now.intervals == []  # served before any of the 27 queued frames
    assert sum(s.num_frames for s in later.intervals) == len(frames)
    assert later.timings.wait > now.timings.wait
    mem.close()


def test_question_storm_from_threads_and_asyncio(tiny_checkpoint) -> None:
    """Questions from four threads and an event loop while frames stream in: nothing
    deadlocks, every question is answered, and the memory equals the same frames pushed with
    no questions at all (no frame lost or reordered under ``block``)."""
    mem = memory(tiny_checkpoint, queue_frames=4)
    frames = scenes(4, 9, seed=6)
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = [0] * 4

    def asker(k: int) -> None:
        try:
            while not stop.is_set():
                a = mem.ask(QUESTION, max_new_tokens=2, wait=k % 2 == 1)
                assert a.token_ids
                counts[k] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    async def pieces_and_answer(stream):
        pieces = [p async for p in stream]
        return pieces, stream.answer

    async def async_askers() -> int:
        done = 0
        while not stop.is_set():
            answer, (pieces, streamed) = await asyncio.gather(
                mem.aask(QUESTION, max_new_tokens=3),
                pieces_and_answer(mem.aask_stream(QUESTION, max_new_tokens=3)))
            assert "".join(pieces) == streamed.text and answer.token_ids
            done += 2
        return done

    threads = [threading.Thread(target=asker, args=(k,)) for k in range(4)]
    loop_result: list[int] = []
    loop_thread = threading.Thread(target=lambda: loop_result.append(asyncio.run(
        async_askers())))
    for t in [*threads, loop_thread]:
        t.start()
    try:
        for i, f in enumerate(frames):
            mem.push(f, timestamp=float(i))
        mem.flush()
    finally:
        stop.set()
        for t in [*threads, loop_thread]:
            t.join(120)
    assert not any(t.is_alive() for t in [*threads, loop_thread]), "deadlock"
    assert not errors, errors
    assert all(counts) and loop_result and loop_result[0] > 0
    quiet = memory(tiny_checkpoint, background=False)
    quiet.extend(frames, timestamps=[float(i) for i in range(len(frames))])
    quiet.flush()
    assert mem.intervals == quiet.intervals
    a, b = kv(mem), kv(quiet)
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=0)
    mem.close()


def test_a_failing_question_fails_alone(tiny_checkpoint, monkeypatch) -> None:
    mem = memory(tiny_checkpoint)
    mem.extend(scenes(1, 5))
    mem.wait()  # the same memory for every question below
    real = mem.runtime.start_answer
    calls = []

    def flaky(state, question, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated decode failure")
        return real(state, question, *args, **kwargs)

    monkeypatch.setattr(mem.runtime, "start_answer", flaky)
    first = mem.ask(QUESTION, max_new_tokens=2)
    with pytest.raises(RuntimeError, match="simulated decode failure"):
        mem.ask(QUESTION, max_new_tokens=2)
    assert mem.ask(QUESTION, max_new_tokens=2).token_ids == first.token_ids
    mem.push(scenes(1, 1)[0])  # the stream is not marked failed by a question's error
    mem.close()


def test_close_drains_then_refuses(tiny_checkpoint) -> None:
    frames = scenes(2, 6)
    with memory(tiny_checkpoint) as mem, worker_held(mem):
        for f in frames:
            mem.push(f)
    assert mem.stats().frames_seen == len(frames)  # close waited for the queue
    with pytest.raises(ClosedError):
        mem.push(frames[0])
    with pytest.raises(ClosedError):
        mem.ask(QUESTION)
    mem.close()  # idempotent


def test_close_without_waiting_fails_what_was_pending(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint)
    results: list[BaseException | object] = []

    def wait_for_all() -> None:
        try:
            results.append(mem.ask(QUESTION, wait=True))
        except BaseException as e:  # noqa: BLE001 - inspected below
            results.append(e)

    with worker_held(mem):
        for f in scenes(1, 4):
            mem.push(f)
        waiter = threading.Thread(target=wait_for_all)
        waiter.start()
        time.sleep(0.2)
        closer = threading.Thread(target=mem.close, kwargs={"wait": False})
        closer.start()
        time.sleep(0.2)
    closer.join(30)
    waiter.join(30)
    assert not closer.is_alive() and not waiter.is_alive()
    assert len(results) == 1 and isinstance(results[0], ClosedError)


def test_a_dead_worker_fails_every_call_instead_of_hanging(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint)
    scheduler = mem._hub._scheduler

    def broken(slots):
        raise AssertionError("a scheduler bug")

    scheduler._vision_step = broken  # the next loop iteration dies
    mem.push(scenes(1, 1)[0])
    mem._hub._thread.join(30)
    assert not mem._hub._thread.is_alive()
    with pytest.raises(WorkerError, match="scheduler bug"):
        mem.ask(QUESTION)
    with pytest.raises(WorkerError):
        mem.push(scenes(1, 1)[0])
    mem.close(wait=False)


def test_reset_forgets_queued_frames_too(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint)
    mem.extend(scenes(2, 9))
    mem.wait()
    with worker_held(mem):
        for f in scenes(1, 5, seed=9):
            mem.push(f)
        resetter = threading.Thread(target=mem.reset)
        resetter.start()
        time.sleep(0.1)
    resetter.join(30)
    mem.wait()
    s = mem.stats()
    assert (s.frames_seen, s.frames_pushed, s.intervals_closed, s.queue_depth) == (0, 0, 0, 0)
    assert s.memory_tokens == s.sink_tokens
    mem.close()


def test_a_question_does_not_wait_for_another_answer(tiny_checkpoint) -> None:
    """Answers decode in pieces: a second question's first token comes before a long first
    answer is done, and both are what they would be alone."""
    mem = memory(tiny_checkpoint)
    mem.extend(scenes(2, 9))
    mem.wait()
    long_alone = mem.ask(QUESTION, max_new_tokens=48)
    short_alone = mem.ask("How many boxes are there?", max_new_tokens=2)
    assert len(long_alone.token_ids) > 9  # several pieces (the random model rarely stops)
    got: dict[str, tuple[object, float]] = {}

    def ask(key: str, question: str, n: int) -> None:
        answer = mem.ask(question, max_new_tokens=n)
        got[key] = (answer, time.perf_counter())

    threads = []
    with worker_held(mem):
        for key, q, n in (("long", QUESTION, 48), ("short", "How many boxes are there?", 2)):
            threads.append(threading.Thread(target=ask, args=(key, q, n)))
            threads[-1].start()
            time.sleep(0.1)  # queued in this order, behind the step in progress
    for t in threads:
        t.join(60)
    (long, long_done), (short, short_done) = got["long"], got["short"]
    assert long.token_ids == long_alone.token_ids and short.token_ids == short_alone.token_ids
    assert short_done < long_done  # asked second, answered first
    mem.close()


def test_a_stream_fed_faster_than_it_compresses_keeps_a_bounded_backlog(
        tiny_checkpoint, monkeypatch) -> None:
    """Frames may be taken in between two windows, but never while a stream already has two
    closed intervals waiting: an overloaded stream's raw backlog stays bounded (one interval
    in compression plus what one vision batch of 16 frames closes), far below the intervals
    its frames make."""
    mem = memory(tiny_checkpoint, queue_frames=16)
    real = mem.runtime.compress_next

    def slow(state):
        time.sleep(0.02)  # a model slower than the frames come
        return real(state)

    monkeypatch.setattr(mem.runtime, "compress_next", slow)
    frames = scenes(12, 10, seed=5)
    feeder = threading.Thread(target=mem.extend, args=(frames,))
    feeder.start()
    most = 0
    while feeder.is_alive():
        most = max(most, mem.stats().intervals_pending)
        time.sleep(0.002)
    mem.wait()
    s = mem.stats()
    assert 1 <= most <= 4 < s.intervals_closed
    assert s.frames_seen == len(frames) and s.intervals_pending == 0
    mem.close()
