"""`Hub`: many streams on one model, and `StreamHandle`, the API of one of them.

A hub owns a `Runtime` (the model and its device resources) and a `Scheduler`, driven by one
background worker thread -- the only thread that touches the model -- or, with
``background=False``, by the caller's thread. Each stream (one camera) is a `StreamHandle` with
the `VideoMemory` API: ``push`` validates and copies a frame, queues it and returns; questions
jump the queue; answers can stream. Streams are added and removed while the others run; each
stream's memory is allocated at its budget when it starts, so device memory is the model plus the
sum of the budgets, flat over time.

Example:
    >>> from streamvxl import Hub, MemoryConfig                      # doctest: +SKIP
    >>> with Hub.default() as hub:                                   # doctest: +SKIP
    ...     gate = hub.stream("gate", MemoryConfig(token_budget=4096))
    ...     dock = hub.stream("dock")
    ...     gate.push(frame); dock.push(other_frame)
    ...     print(gate.ask("Did a truck arrive?").text)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import torch

from ..answer import Answer, MemoryStats
from ..config import MemoryConfig, OverflowPolicy
from ..errors import ClosedError, ConfigError, FrameError, QuestionError
from ..frames import Frame, frame_timestamp, to_rgb_uint8
from ..memory.store import IntervalRecord
from .conditions import Condition, WatchEvent, as_question, check_thresholds
from .config import RuntimeConfig
from .events import IntervalListener
from .question import prepare_question
from .queue import QueuedFrame
from .runtime import Runtime
from .scheduler import Scheduler, StreamSlot
from .stream import StreamState
from .streaming import AnswerStream, AsyncAnswerStream

log = logging.getLogger(__name__)

_LIVE_SCHEDULERS: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    # a worker mid-forward at interpreter exit would otherwise be frozen halfway
    for scheduler in list(_LIVE_SCHEDULERS):
        scheduler.stop()


class Hub:
    """Streams sharing one runtime (see the module docstring).

    Args:
        runtime: the model and its resources; None loads the embedded default model.
        background: serve the streams from a worker thread (``push`` returns at once); False
            runs every step in the calling thread (scripts, tests).
    """

    def __init__(self, runtime: Runtime | None = None, *, background: bool = True) -> None:
        self.runtime = runtime if runtime is not None else Runtime.default()
        self.background = bool(background)
        self._scheduler = Scheduler(self.runtime)
        self._drive_lock = threading.RLock()
        self._closed = False
        self._thread: threading.Thread | None = None
        if self.background:
            self._thread = threading.Thread(target=self._scheduler.run_forever,
                                            name="streamvxl-worker", daemon=True)
            self._thread.start()
            _LIVE_SCHEDULERS.add(self._scheduler)
        # a hub dropped without close() must not leave its worker spinning
        weakref.finalize(self, self._scheduler.stop)

    @classmethod
    def default(cls, config: RuntimeConfig | None = None, *,
                device: str | torch.device | None = None, background: bool = True) -> Hub:
        """A hub over the embedded default model, streamvxl-tiny."""
        return cls(Runtime.default(config, device), background=background)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, config: RuntimeConfig | None = None,
                        device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, background: bool = True) -> Hub:
        """A hub over a Video-XL checkpoint folder."""
        return cls(Runtime.from_pretrained(path, config=config, device=device, dtype=dtype),
                   background=background)

    # -- streams --------------------------------------------------------------------------------
    def stream(self, name: str, config: MemoryConfig | None = None) -> StreamHandle:
        """Start a stream; returns once its memory is allocated (and its log created, with
        `MemoryConfig.log_dir`).

        Raises:
            ConfigError: the name is taken or empty, or the config does not fit the model.
            MemoryFileError: ``config.log_dir`` holds a log already (`open_stream` it), or
                cannot be written.
            ClosedError: the hub is closed.
        """
        config = config if config is not None else MemoryConfig()
        if not isinstance(config, MemoryConfig):
            raise ConfigError(f"config must be a MemoryConfig, got {type(config).__name__}")
        settings = self.runtime.settings(config)  # bad configs fail here, in the caller
        return self._start(name, lambda: self.runtime.new_stream(config, settings))

    def open_stream(self, name: str, path: str | os.PathLike,
                    config: MemoryConfig | None = None) -> StreamHandle:
        """Start a stream from a memory log directory (it goes on appending there) or a
        snapshot file (`StreamHandle.save`): the intervals it held, exactly.

        Args:
            config: None keeps the recorded settings; otherwise only how the stream is served
                may change (queue, overflow, durability, ...), not what made its K/V.

        Raises:
            MemoryFileError: nothing readable there (damaged records are skipped and logged).
            ModelMismatchError: it was written under another model, dtype or prompt.
            ConfigError: the name is taken, or ``config`` changes recorded settings.
        """
        return self._start(name, lambda: self.runtime.open_stream(path, config))

    def _start(self, name: str, make_state: Callable[[], StreamState]) -> StreamHandle:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a stream name must be a non-empty str, got {name!r}")
        scheduler = self._scheduler

        def start() -> StreamSlot:
            with scheduler.lock:
                if name in scheduler.slots:
                    raise ConfigError(f"a stream named {name!r} exists; pick another name or "
                                      "remove it first")
            state = make_state()
            slot = StreamSlot(name, state.settings.config)  # a reopened stream's: recorded
            if state.resumed_wall is not None and state.last_time is not None:
                slot.queue.resume(state.last_time, state.resumed_wall)
            with scheduler.lock:
                slot.state = state
                slot.publish()
                scheduler.slots[name] = slot
            return slot

        slot = self._wait(scheduler.control(start))
        log.info("stream %r started (budget %s tokens%s)", name, slot.config.token_budget,
                 f", log {slot.config.log_dir}" if slot.config.log_dir else "")
        return StreamHandle(self, slot)

    def __getitem__(self, name: str) -> StreamHandle:
        with self._scheduler.lock:
            slot = self._scheduler.slots.get(name)
        if slot is None:
            raise KeyError(f"no stream named {name!r}; streams: {self.names}")
        return StreamHandle(self, slot)

    @property
    def names(self) -> list[str]:
        """The streams, in the order they started."""
        with self._scheduler.lock:
            return list(self._scheduler.slots)

    def close(self, wait: bool = True) -> None:
        """Close every stream (``wait``: after their queued frames are in memory) and stop the
        worker. Idempotent."""
        if self._closed:
            return
        for name in self.names:
            self[name].close(wait=wait)
        self._closed = True
        self._scheduler.stop()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(wait=exc[0] is None)

    # -- for handles ----------------------------------------------------------------------------
    def _drive(self) -> None:
        """Synchronous mode: run every queued step in this thread."""
        with self._drive_lock:
            self._scheduler.run_until_idle()

    def _wait(self, future: Future, timeout: float | None = None) -> Any:
        if not self.background:
            self._drive()
        return future.result(timeout)


class StreamHandle:
    """One stream of a hub, with the `VideoMemory` API."""

    def __init__(self, hub: Hub, slot: StreamSlot) -> None:
        self._hub, self._slot = hub, slot

    # -- what it is -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._slot.name

    @property
    def config(self) -> MemoryConfig:
        return self._slot.config

    @property
    def runtime(self) -> Runtime:
        return self._hub.runtime

    @property
    def model(self) -> Any:
        return self._hub.runtime.model

    @property
    def tokenizer(self) -> Any:
        return self._hub.runtime.tokenizer

    @property
    def state(self) -> StreamState:
        """The stream's state. Read it only while nothing runs on it (after `wait` or `flush`,
        or in synchronous mode): the worker changes it in place."""
        assert self._slot.state is not None
        return self._slot.state

    # -- ingest ---------------------------------------------------------------------------------
    def push(self, frame: object, timestamp: float | None = None) -> None:
        """Add one frame; returns at once (background mode) after validating and copying it.

        Args:
            frame: H x W x 3 RGB as a uint8/float numpy array or torch tensor, a PIL image, an
                ``av.VideoFrame`` or a `Frame` from `open_source`.
            timestamp: seconds; defaults to the frame's own time (``Frame``, ``av.VideoFrame``),
                else the time since the first push. Must not decrease.

        A full queue applies the stream's overflow policy (`MemoryConfig.overflow`): ``block``
        waits for room, ``drop_oldest`` / ``drop_newest`` drop a frame and count it.

        Raises:
            FrameError: the frame or timestamp is invalid; nothing is changed.
            ClosedError: the stream is closed.
            Any error the runtime met since the last call on this stream (with its traceback).
        """
        image = to_rgb_uint8(frame).copy()  # a capture loop may reuse one buffer for every frame
        given = timestamp if timestamp is not None else frame_timestamp(frame)
        gap = frame.gap if isinstance(frame, Frame) else None
        scheduler, slot = self._hub._scheduler, self._slot
        with scheduler.lock:
            scheduler.check(slot)
            ts = slot.queue.stamp(given)
            scheduler.put(slot, QueuedFrame(image, ts, gap=gap), self._policy(frame),
                          wait_for_room=self._hub.background)
        self._settle()

    def extend(self, frames: Iterable[object], timestamps: Sequence[float] | None = None) -> None:
        """Add many frames, in order, never dropping any (a full queue makes this wait).

        Equivalent to pushing them one by one; all are validated before any is queued.
        """
        frames = list(frames)
        if timestamps is not None and len(timestamps) != len(frames):
            raise FrameError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        images = [to_rgb_uint8(f).copy() for f in frames]
        given = [timestamps[i] if timestamps is not None else frame_timestamp(f)
                 for i, f in enumerate(frames)]
        gaps = [f.gap if isinstance(f, Frame) else None for f in frames]
        scheduler, slot = self._hub._scheduler, self._slot
        with scheduler.lock:
            scheduler.check(slot)
            stamps = slot.queue.stamps(given)
        for image, ts, gap in zip(images, stamps, gaps, strict=True):
            if not self._hub.background and slot.queue.full:
                self._settle()  # synchronous mode: make room by running what is queued
            with scheduler.lock:
                scheduler.check(slot)
                scheduler.put(slot, QueuedFrame(image, ts, gap=gap), "block",
                              wait_for_room=self._hub.background)
        self._settle()

    def flush(self) -> None:
        """End of stream: once every queued frame is in memory, close and compress the open
        interval. Blocks until done; the memory stays usable."""
        self._hub._wait(self._hub._scheduler.mark(self._slot, "flush"))
        self._raise_error()

    def wait(self, timeout: float | None = None) -> None:
        """Block until every frame pushed so far is in memory (closed intervals compressed).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        self._hub._wait(self._hub._scheduler.mark(self._slot, "drain"), timeout)
        self._raise_error()

    # -- questions ------------------------------------------------------------------------------
    def ask(self, question: str, max_new_tokens: int = 64, *, temperature: float = 0.0,
            top_p: float = 1.0, seed: int | None = None, output_logits: bool = False,
            wait: bool = False, timeout: float | None = None, cite: bool = True,
            retrieve: bool = True) -> Answer:
        """Answer a question from everything in memory now (the memory is not changed).

        A question jumps the queue: it is served after the step in progress (one encoder window
        or one vision batch), from the compressed intervals plus every frame not yet
        compressed, raw. ``wait=True`` first waits until every frame pushed so far is in memory.

        Args:
            question: the question text.
            max_new_tokens: most tokens to generate.
            temperature: 0 for greedy decoding, else sampling temperature.
            top_p: nucleus sampling mass.
            seed: seed for sampled answers.
            output_logits: also return the logits each token was picked from.
            wait: drain the backlog first.
            timeout: seconds to wait for the answer (None: no limit).
            cite: rank the spans the answer drew on (`Answer.cited`), by the attention its
                tokens paid them: one more forward pass over the context after the answer.
            retrieve: with `MemoryConfig.retrieval`, let the question choose what it reads
                from every tier; False reads the intervals on the GPU only (the newest: what
                ``drop_oldest`` would have kept), which is the fastest answer.

        Raises:
            QuestionError: the question is empty, not text, or too long.
            ConfigError: ``max_new_tokens``, ``temperature``, ``top_p`` or ``seed`` is out of
                range.
        """
        q = self._question(question, max_new_tokens, temperature, top_p, seed, output_logits,
                           cite, retrieve)
        return self._hub._wait(self._hub._scheduler.ask(self._slot, q, wait), timeout)

    async def aask(self, question: str, max_new_tokens: int = 64, *, temperature: float = 0.0,
                   top_p: float = 1.0, seed: int | None = None, output_logits: bool = False,
                   wait: bool = False, cite: bool = True, retrieve: bool = True) -> Answer:
        """`ask` for asyncio: awaits the answer without blocking the event loop."""
        q = self._question(question, max_new_tokens, temperature, top_p, seed, output_logits,
                           cite, retrieve)
        future = self._hub._scheduler.ask(self._slot, q, wait)
        if not self._hub.background:
            await asyncio.to_thread(self._hub._drive)
        return await asyncio.wrap_future(future)

    def ask_stream(self, question: str, max_new_tokens: int = 64, *, temperature: float = 0.0,
                   top_p: float = 1.0, seed: int | None = None, wait: bool = False
                   ) -> AnswerStream:
        """`ask`, yielding text pieces as tokens decode; joined they are ``ask``'s text, and
        the iterator's ``answer`` holds the whole `Answer` at the end."""
        q = self._question(question, max_new_tokens, temperature, top_p, seed, False)
        stream = AnswerStream(self.tokenizer, self.state.settings.stop_ids)
        stream.attach(self._hub._scheduler.ask(self._slot, q, wait, stream.on_token))
        if not self._hub.background:  # decode on a helper thread, so pieces arrive as they come
            threading.Thread(target=self._hub._drive, daemon=True).start()
        return stream

    def aask_stream(self, question: str, max_new_tokens: int = 64, *, temperature: float = 0.0,
                    top_p: float = 1.0, seed: int | None = None, wait: bool = False
                    ) -> AsyncAnswerStream:
        """`ask_stream` for asyncio: ``async for piece in mem.aask_stream(q)`` (call it from a
        coroutine)."""
        loop = asyncio.get_running_loop()
        q = self._question(question, max_new_tokens, temperature, top_p, seed, False)
        stream = AsyncAnswerStream(self.tokenizer, self.state.settings.stop_ids, loop)
        stream.attach(self._hub._scheduler.ask(self._slot, q, wait, stream.on_token))
        if not self._hub.background:
            loop.run_in_executor(None, self._hub._drive)
        return stream

    # -- watch conditions -----------------------------------------------------------------------
    def watch(self, condition: str, callback: Callable[[WatchEvent], None] | None = None, *,
              threshold: float = 0.0, hysteresis: float = 1.0) -> None:
        """Check a yes/no condition on every interval from now on, as it is stored.

        Each stored interval is asked ``condition`` alone (`streamvxl.runtime.conditions`: one
        prefill, no generation); its score is ``log p(yes) - log p(no)``. The condition turns
        on when the score rises above ``threshold + hysteresis / 2`` and off when it falls
        below ``threshold - hysteresis / 2``; each turn calls ``callback`` with a `WatchEvent`
        (the interval's time span and the score) on the worker thread: keep it quick (hand
        the event to a queue). `watching` shows every condition's state and recent scores.

        Args:
            condition: a statement ("a person is at the door") or a yes/no question.

        Raises:
            QuestionError: the condition is empty or too long, or yes / no are not single
                tokens of the model's vocabulary.
            ConfigError: a bad threshold or hysteresis, or the condition is watched already.
        """
        check_thresholds(threshold, hysteresis)
        if not isinstance(condition, str) or not condition.strip(" .?\n\t"):
            raise QuestionError(f"a watch condition must be a non-empty statement or yes/no "
                                f"question, got {condition!r}")
        q = self._question(as_question(condition), 1, 0.0, 1.0, None, False)
        self.runtime.yes_no_ids  # noqa: B018 - refuse a vocabulary without yes / no now
        watched = Condition(condition, q.ids, float(threshold), float(hysteresis), callback)

        def add() -> None:
            state = self.state
            if any(c.text == condition for c in state.conditions):
                raise ConfigError(f"{condition!r} is watched already; unwatch it first")
            state.conditions.append(watched)

        self._hub._wait(self._hub._scheduler.control(add))

    def unwatch(self, condition: str) -> None:
        """Stop checking ``condition``.

        Raises:
            KeyError: it is not watched.
        """
        def remove() -> None:
            state = self.state
            kept = [c for c in state.conditions if c.text != condition]
            if len(kept) == len(state.conditions):
                raise KeyError(f"{condition!r} is not watched; watched: "
                               f"{[c.text for c in state.conditions]}")
            state.conditions = kept

        self._hub._wait(self._hub._scheduler.control(remove))

    def on_interval(self, listener: IntervalListener) -> Callable[[], None]:
        """Call ``listener`` with an `IntervalEvent` for every interval stored from now on
        (on the worker thread, before the interval's watch conditions are checked: keep it
        quick). Returns a function that removes it."""
        self._hub._wait(self._hub._scheduler.control(lambda: self.state.listeners.append(listener)))

        def remove() -> None:
            def drop() -> None:
                if listener in self.state.listeners:
                    self.state.listeners.remove(listener)

            with contextlib.suppress(ClosedError):
                self._hub._wait(self._hub._scheduler.control(drop))

        return remove

    @property
    def watching(self) -> dict[str, tuple[bool, list[tuple[int, float]]]]:
        """Each watched condition: whether it is on, and its recent (interval id, score)."""
        return self._hub._wait(self._hub._scheduler.control(
            lambda: {c.text: (c.on, list(c.scores)) for c in self.state.conditions}))

    # -- state ----------------------------------------------------------------------------------
    @property
    def intervals(self) -> list[IntervalRecord]:
        """The compressed intervals the memory holds, oldest first: those on the GPU, and
        with ``eviction="offload"`` those offloaded to host memory and disk before them."""
        published = self._slot.published
        return list(published.records) if published is not None else []

    def stats(self) -> MemoryStats:
        """Size, history and backlog of the memory (never raises the stream's errors)."""
        scheduler, slot = self._hub._scheduler, self._slot
        with scheduler.lock:
            published, queue = slot.published, slot.queue
            pushed, dropped, depth = queue.pushed, queue.dropped, queue.frames
            newest_pushed, first = queue.newest_time, queue.first_time
        assert published is not None
        seen = published.processed_time if published.processed_time is not None else first
        lag = newest_pushed - seen if newest_pushed is not None and seen is not None else 0.0
        state = slot.state
        logged = state.log.logged if state is not None and state.log is not None else None
        return MemoryStats(**{**published.stats.__dict__, "frames_pushed": pushed,
                              "frames_dropped": dropped, "queue_depth": depth,
                              "lag": max(0.0, lag), "intervals_logged": logged})

    def save(self, path: str | os.PathLike) -> int:
        """Write the memory as it is now (every interval in it, compacted) to the file
        ``path``, atomically: a crash mid-save leaves the previous file intact. Runs between two
        steps of the stream (frames pushed but not yet in memory are not in it; `wait` first to
        include them). `Hub.open_stream` / `VideoMemory.open` read it. Returns its size in
        bytes.

        Raises:
            MemoryFileError: the file cannot be written.
        """
        from .durable import snapshot

        assert self._slot.state is not None
        return self._hub._wait(self._hub._scheduler.control(
            lambda: snapshot(self.runtime, self.state, path)))

    def reset(self) -> None:
        """Forget everything seen and queued (an unreported error too); the model and the
        configuration stay."""
        scheduler, slot = self._hub._scheduler, self._slot

        def reset() -> None:
            with scheduler.lock:
                markers = slot.queue.clear()
                slot.error = None
                slot.processed_time = None
            assert slot.state is not None
            slot.state.reset()
            with scheduler.lock:
                slot.barriers += markers
                scheduler._settle(slot)
            slot.publish()

        with scheduler.lock:
            if slot.closed:
                scheduler.check(slot)
        self._hub._wait(scheduler.control(reset))

    def close(self, wait: bool = True) -> None:
        """Remove the stream from its hub (``wait``: after its queued frames are in memory).
        Idempotent; later calls raise `ClosedError`."""
        scheduler, slot = self._hub._scheduler, self._slot
        if slot.closed:
            return
        if wait:
            try:
                self.wait()
            except Exception as e:  # noqa: BLE001 - closing anyway; the error is logged
                log.warning("stream %r: %r while draining before close", slot.name, e)

        def remove() -> None:
            if slot.state is not None:
                slot.state.close_files()
            with scheduler.lock:
                slot.closed = True
                scheduler.slots.pop(slot.name, None)
                for marker in slot.queue.clear() + slot.barriers:
                    if not marker.future.done():
                        marker.future.set_exception(
                            ClosedError(f"stream {slot.name!r} was closed"))
                slot.barriers.clear()
                scheduler.lock.notify_all()

        try:
            self._hub._wait(scheduler.control(remove))
        except Exception:  # noqa: BLE001 - the hub is gone: the stream is closed with it
            slot.closed = True

    def __enter__(self) -> StreamHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(wait=exc[0] is None)

    # -- internals ------------------------------------------------------------------------------
    def _policy(self, frame: object) -> OverflowPolicy:
        if self.config.overflow is not None:
            return self.config.overflow
        return "drop_oldest" if isinstance(frame, Frame) and frame.live else "block"

    def _question(self, question: object, max_new_tokens: int, temperature: float,
                  top_p: float, seed: int | None, output_logits: bool, cite: bool = True,
                  retrieve: bool = True):
        return prepare_question(self.tokenizer, self.config.prompt,
                                self.config.max_question_tokens, question, max_new_tokens,
                                temperature, top_p, seed, output_logits, cite, retrieve)

    def _settle(self) -> None:
        """Synchronous mode: run what was queued, then raise what it hit."""
        if not self._hub.background:
            self._hub._drive()
            self._raise_error()

    def _raise_error(self) -> None:
        with self._hub._scheduler.lock:
            if self._slot.error is not None:
                self._hub._scheduler.check(self._slot)
