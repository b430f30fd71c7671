"""The scheduler: what a runtime does next for the streams of a hub, one step at a time.

A step is one of, in this order of priority:

1. a control: add, reset or remove a stream (a few milliseconds);
2. a question, from the memory as it is: stored intervals plus every frame not yet compressed;
3. a marker reached at the head of a stream's queue (a flush, or a wait for the backlog);
4. one encoder window of a closed interval, streams taken round-robin, so no camera starves;
5. one vision batch of queued frames, taken round-robin across the streams' queues -- also
   between two windows, once a full batch is queued or a frame has waited `FRAME_WAIT`
   seconds, from the streams with at most one interval waiting: so a burst of intervals
   closing together (cameras started together) does not hold new frames back for its whole
   length, and a stream fed faster than it compresses holds, besides the interval being
   compressed, only those one vision batch closed.

An answer is decoded in pieces: its first step reads the memory and decodes the first token,
each later one a few more tokens, and a new question's first step goes before them -- so a
question does not wait for another answer to finish. While work (4 or 5) is waiting, answer
steps and work steps alternate: a question waits for the step in progress and the answer steps
ahead of it, never for the backlog, and a storm of questions slows ingest down but cannot stop
it. Intervals never pile up: frames are only taken in when
every closed interval is compressed. A step that fails records its error on its stream (or on
its question), which the stream's next call raises; the other streams go on.

Two drivers run the steps: `run_forever` on a background thread (the hub's worker, the only
thread that touches the runtime and the streams' states), or `run_until_idle` in the caller's
thread in synchronous mode. Everything else here -- submitting frames, questions and markers --
takes ``lock`` briefly and may come from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

from ..answer import MemoryStats
from ..config import MemoryConfig, OverflowPolicy
from ..errors import ClosedError, WorkerError
from ..memory.store import IntervalRecord
from .question import Question
from .queue import FrameQueue, Marker, QueuedFrame
from .retrieval import held
from .runtime import AnswerJob, Runtime
from .stream import StreamState

log = logging.getLogger(__name__)

FRAME_WAIT = 0.5
"""Seconds a queued frame may wait for the vision tower while intervals are being compressed."""

@dataclass(frozen=True)
class Step:
    """One unit of work for the driver, and its kind (for monitoring: `Scheduler.doing`)."""

    kind: str
    """"control", "answer", "compress" or "vision"."""
    run: Callable[[], None]


@dataclass(frozen=True)
class Published:
    """What readers of a stream see (`stats`, `intervals`), replaced after every step."""

    stats: MemoryStats
    records: tuple[IntervalRecord, ...]
    processed_time: float | None
    """Timestamp of the newest frame through the vision tower (in memory, or refused)."""


class StreamSlot:
    """A hub's bookkeeping for one stream: its state (created by the driver), its queue, the
    first error not yet reported, and what readers see."""

    def __init__(self, name: str, config: MemoryConfig) -> None:
        self.name, self.config = name, config
        self.state: StreamState | None = None
        self.queue = FrameQueue(config.queue_frames)
        self.error: BaseException | None = None
        self.barriers: list[Marker] = []
        """Markers reached, waiting (under the lock) until the stream has no closed interval
        left to compress."""
        self.closed = False
        self.processed_time: float | None = None
        self.published: Published | None = None

    def publish(self) -> None:
        """Replace what readers see by the state as it is now (driver thread only)."""
        state = self.state
        if state is None:
            return
        store, archive = state.store, state.archive
        stats = MemoryStats(
            frames_seen=state.frames_seen, intervals_closed=store.next_id,
            intervals_in_memory=len(store.records),
            intervals_evicted=store.evicted - len(archive or ()),
            open_frames=len(state.open), sink_tokens=store.sink_tokens,
            memory_tokens=store.num_tokens, token_budget=store.token_budget,
            memory_bytes=store.arena.used_bytes, allocated_bytes=store.arena.allocated_bytes,
            intervals_pending=len(state.pending),
            frames_pending=sum(job.num_frames for job in state.pending),
            gaps=tuple(state.gaps),
            intervals_on_host=archive.on_host if archive is not None else 0,
            intervals_on_disk=archive.on_disk if archive is not None else 0,
            host_bytes=archive.host_bytes if archive is not None else 0,
            digest_bytes=state.digests.nbytes if state.digests is not None else 0)
        self.published = Published(stats, tuple(held(state)), self.processed_time)


@dataclass
class _Ask:
    slot: StreamSlot
    question: Question
    on_token: Callable[[int], None] | None
    asked_at: float
    future: Future
    job: AnswerJob | None = None
    """Set once its first step ran: the answer in progress."""


class Scheduler:
    """Queues, priorities and the steps that serve them (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.lock = threading.Condition()
        self.slots: dict[str, StreamSlot] = {}
        self._controls: deque[tuple[Callable[[], Any], Future]] = deque()
        self._questions: deque[_Ask] = deque()
        """Questions not started yet."""
        self._answering: deque[_Ask] = deque()
        """Answers in progress, each waiting for its next piece."""
        self._worked = True
        """A work step ran since the last answer step (the next answer step may go first)."""
        self._next_compress = 0
        self._next_vision = 0
        self.stopping = False
        self.dead: BaseException | None = None
        self.doing: str | None = None
        """The kind of step the driver is running now (None: idle), for monitoring."""

    # -- submitting (any thread) ----------------------------------------------------------------
    def check(self, slot: StreamSlot) -> None:
        """Raise what a call on ``slot`` must raise first (lock held): a dead worker, a closed
        stream, or the stream's unreported error."""
        if self.dead is not None:
            raise WorkerError(f"the streamvxl worker stopped: {self.dead!r}; create a new "
                              "memory") from self.dead
        if slot.closed or self.stopping:
            raise ClosedError(f"stream {slot.name!r} is closed")
        if slot.error is not None:
            error, slot.error = slot.error, None
            raise error

    def control(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the driver before anything else; its result in the future."""
        future: Future = Future()
        with self.lock:
            if self.dead is not None or self.stopping:
                raise ClosedError("the hub is closed")
            self._controls.append((fn, future))
            self.lock.notify_all()
        return future

    def put(self, slot: StreamSlot, frame: QueuedFrame, policy: OverflowPolicy,
            wait_for_room: bool = True) -> None:
        """Queue one frame under ``policy`` (lock held by the caller; ``block`` waits on it
        unless ``wait_for_room`` is False, when the caller must make room itself)."""
        queue = slot.queue
        while queue.full and policy == "block" and wait_for_room:
            self.lock.wait()
            self.check(slot)
        if queue.full and policy == "drop_oldest":
            queue.drop_oldest()
        elif queue.full and policy == "drop_newest":
            queue.refuse(frame)
            return
        queue.append(frame)
        self.lock.notify_all()

    def ask(self, slot: StreamSlot, question: Question, wait: bool,
            on_token: Callable[[int], None] | None = None) -> Future:
        """Queue a question: at once (served at the next step), or with ``wait`` after every
        frame pushed so far is in memory."""
        job = _Ask(slot, question, on_token, time.perf_counter(), Future())
        with self.lock:
            self.check(slot)
            if wait:
                slot.queue.mark(Marker("drain", lambda: self._questions.appendleft(job),
                                       job.future))
            else:
                self._questions.append(job)
            self.lock.notify_all()
        return job.future

    def mark(self, slot: StreamSlot, kind: str) -> Future:
        """A future done when every frame pushed so far is in memory (``"drain"``), after
        closing the open interval there (``"flush"``)."""
        future: Future = Future()

        def reached() -> None:  # and, with a log, once its records are written
            state = slot.state
            if state is not None and state.log is not None:
                state.log.when_written(lambda: _resolve(future, None))
            else:
                _resolve(future, None)

        with self.lock:
            self.check(slot)
            slot.queue.mark(Marker(kind, reached, future))  # type: ignore[arg-type]
            self.lock.notify_all()
        return future

    # -- driving ----------------------------------------------------------------------------------
    def run_forever(self) -> None:
        """The worker thread's loop: steps until `stop`."""
        try:
            while True:
                step = self._next_step(block=True)
                if step is None:
                    break
                self._run(step)
        except BaseException as e:  # a bug in the scheduler itself: nothing may hang on it
            log.exception("the streamvxl worker stopped")
            self._abandon(e)
            return
        self._abandon(None)

    def run_until_idle(self) -> None:
        """Run steps in the caller's thread until none is left (synchronous mode)."""
        while (step := self._next_step(block=False)) is not None:
            self._run(step)

    def _run(self, step: Step) -> None:
        self.doing = step.kind
        try:
            step.run()
        finally:
            self.doing = None

    def stop(self) -> None:
        """Make `run_forever` return after the step in progress; queued work is abandoned."""
        with self.lock:
            self.stopping = True
            self.lock.notify_all()

    def _next_step(self, block: bool) -> Step | None:
        with self.lock:
            while True:
                if self.stopping:
                    return None
                if self._controls:
                    return self._control_step(*self._controls.popleft())
                slots = [s for s in self.slots.values() if s.state is not None]
                for slot in slots:
                    self._reach_markers(slot)
                answers = bool(self._questions or self._answering)
                if answers and self._worked:
                    return self._answer_step()
                step = self._early_vision_step(slots) or self._compress_step(slots) or \
                    self._vision_step(slots)
                if step is not None:
                    self._worked = True
                    return step
                if answers:  # nothing else to do: no need to wait for work
                    return self._answer_step()
                if not block:
                    return None
                self.lock.wait()

    def _answer_step(self) -> Step:
        """A new question's first piece, else the next piece of the oldest answer."""
        self._worked = False
        job = (self._questions or self._answering).popleft()
        return Step("answer", lambda: self._answer(job))

    def _control_step(self, fn: Callable[[], Any], future: Future) -> Step:
        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as e:  # reaches the caller
                future.set_exception(e)
        return Step("control", run)

    def _reach_markers(self, slot: StreamSlot) -> None:
        """Markers now at the head of the queue: a flush closes the open interval; each waits
        for the closed intervals (lock held)."""
        state = slot.state
        assert state is not None
        while (marker := slot.queue.take_marker()) is not None:
            if marker.kind == "flush":
                try:
                    state.flush()
                except BaseException as e:  # a custom ratio policy failing: report, go on
                    self._fail(slot, e, "closing the open interval")
            slot.barriers.append(marker)
        self._settle(slot)

    def _settle(self, slot: StreamSlot) -> None:
        """Run the barriers of a stream with nothing left to compress (lock held)."""
        if slot.state is not None and not slot.state.pending and slot.barriers:
            barriers, slot.barriers = slot.barriers, []
            for marker in barriers:
                marker.reached()
            slot.publish()

    def _compress_step(self, slots: list[StreamSlot]) -> Step | None:
        n = len(slots)
        for k in range(n):
            slot = slots[(self._next_compress + k) % n]
            if slot.state is not None and slot.state.pending:
                self._next_compress = (self._next_compress + k + 1) % n
                return Step("compress", lambda slot=slot: self._compress(slot))
        return None

    def _early_vision_step(self, slots: list[StreamSlot]) -> Step | None:
        """A vision batch before the next window: a full batch is queued, or the oldest queued
        frame has waited `FRAME_WAIT`; only streams with at most one interval waiting take
        part (lock held)."""
        if not any(s.state.pending for s in slots):  # type: ignore[union-attr]
            return None  # no window to go ahead of: the ordinary vision step runs
        ready = [s for s in slots
                 if s.queue.frames and len(s.state.pending) <= 1]  # type: ignore[union-attr]
        if not ready:
            return None
        full = sum(s.queue.frames for s in ready) >= self.runtime.config.vision_batch
        oldest = min(s.queue.oldest_queued_at() for s in ready)  # type: ignore[type-var]
        if full or time.monotonic() - oldest >= FRAME_WAIT:
            return self._vision_step(ready)
        return None

    def _vision_step(self, slots: list[StreamSlot]) -> Step | None:
        batch: list[tuple[StreamSlot, QueuedFrame]] = []
        cap, n = self.runtime.config.vision_batch, len(slots)
        took = True
        while took and len(batch) < cap:
            took = False
            for k in range(n):
                slot = slots[(self._next_vision + k) % n]
                frame = slot.queue.take_frame()
                if frame is not None:
                    batch.append((slot, frame))
                    took = True
                    if len(batch) == cap:
                        break
        if not batch:
            return None
        self._next_vision = (self._next_vision + 1) % max(n, 1)
        self.lock.notify_all()  # room in the queues
        return Step("vision", lambda: self._vision(batch))

    # -- steps (driver thread, lock not held) -----------------------------------------------------
    def _answer(self, ask: _Ask) -> None:
        if ask.job is None and not ask.future.set_running_or_notify_cancel():
            return
        try:
            if ask.job is None:
                state = ask.slot.state
                if state is None:
                    raise ClosedError(f"stream {ask.slot.name!r} was removed")
                ask.job = self.runtime.start_answer(state, ask.question, ask.on_token,
                                                    ask.asked_at)
            answer = ask.job.step()
        except BaseException as e:  # reaches the caller
            if ask.job is not None:
                ask.job.close()
            ask.future.set_exception(e)
            return
        if answer is not None:
            ask.future.set_result(answer)
            return
        with self.lock:
            self._answering.append(ask)

    def _compress(self, slot: StreamSlot) -> None:
        state = slot.state
        assert state is not None
        job = state.pending[0]
        try:
            self.runtime.compress_next(state)
        except BaseException as e:  # the interval is dropped; the store is as before it
            if state.pending and state.pending[0] is job:  # never retry a failing interval
                state.pending.popleft()
            self._fail(slot, e, "compressing an interval")
        with self.lock:
            self._settle(slot)
        slot.publish()
        if state.stored:  # listeners and watch conditions hear of it once it is published
            try:
                self.runtime.announce(state)
            except BaseException as e:
                self._fail(slot, e, "checking watch conditions")

    def _vision(self, batch: list[tuple[StreamSlot, QueuedFrame]]) -> None:
        groups: dict[str, list[int]] = {}
        for i, (slot, _) in enumerate(batch):
            groups.setdefault(slot.name, []).append(i)
        slots = {slot.name: slot for slot, _ in batch}
        try:
            frames = self.runtime.encode_images([f.image for _, f in batch])
        except BaseException as e:  # these frames are lost; each stream hears of it
            for slot in slots.values():
                self._fail(slot, e, "running the vision tower")
            return
        for name, rows in groups.items():
            slot = slots[name]
            index = torch.tensor(rows, device=frames.tokens.device)
            # a copy per stream: a view would keep the whole batch alive while any one of its
            # frames waits in some stream's open interval
            tokens = frames.tokens.index_select(0, index)  # (f, T, C)
            slot.processed_time = batch[rows[-1]][1].timestamp
            try:
                looks = self.runtime.looks(slot.state.settings.looks_wanted,  # type: ignore[union-attr]
                                           [batch[i][1].image for i in rows])
                stamps = [batch[i][1].timestamp for i in rows]
                tokens = self.runtime.stamped(slot.state, tokens, stamps)  # type: ignore[arg-type]
                slot.state.admit(tokens, frames.embeddings[rows], stamps,  # type: ignore[union-attr]
                                 [batch[i][1].gap for i in rows],
                                 [batch[i][1].dropped_before for i in rows], looks=looks)
            except BaseException as e:  # the refused frame and those after it are lost
                self._fail(slot, e, "adding frames")
            slot.publish()

    def _fail(self, slot: StreamSlot, error: BaseException, what: str) -> None:
        if hasattr(error, "add_note"):
            error.add_note(f"(raised by the streamvxl runtime while {what} for stream "
                           f"{slot.name!r})")
        log.warning("stream %r: %s failed: %r (reported at the stream's next call)", slot.name,
                    what, error)
        if slot.error is None:  # the first one is the cause; later ones follow from it
            slot.error = error

    def _abandon(self, error: BaseException | None) -> None:
        """Fail everything still waiting, so no caller hangs (worker stopped or died)."""
        with self.lock:
            self.dead = error
            self.stopping = True
            cause = WorkerError(f"the streamvxl worker stopped: {error!r}") if error \
                else ClosedError("the hub was closed before this was done")
            for _fn, future in self._controls:
                _fail_future(future, cause)
            for ask in (*self._questions, *self._answering):
                if ask.job is not None:
                    ask.job.close()
                _fail_future(ask.future, cause)
            self._controls.clear()
            self._questions.clear()
            self._answering.clear()
            for slot in self.slots.values():
                for marker in slot.queue.clear() + slot.barriers:
                    _fail_future(marker.future, cause)
                slot.barriers.clear()
            self.lock.notify_all()


def _resolve(future: Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail_future(future: Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
