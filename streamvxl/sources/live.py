"""`LiveSource`: a camera or network stream read on its own thread and reopened when it drops.

The capture thread opens the stream, decodes it, and puts frames into a bounded buffer (full:
the oldest frame is dropped, counted, so the reader always gets the freshest ones and a slow
reader never stalls the connection). When the stream ends, errors, or stalls (no data for
`Reconnect.stall_timeout`), the thread closes it and opens it again after a backoff with
jitter; the first frame after an outage carries a `Gap` from the last frame before it. Every
open and read has a timeout, so a dead host, a dead port or a silent server never blocks.

Timestamps are seconds on the source's own clock (monotonic, from when it was opened), not the
stream's presentation times: a camera that restarts its pts at 0 cannot make time go backwards,
and an outage shows as the time it really lasted. A new resolution or codec after a reconnect
needs nothing: every frame is converted on its own.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from typing import Literal

from streamvxl.errors import SourceError
from streamvxl.frames import Frame, Gap, to_rgb_uint8

from .sampler import FpsSampler
from .status import Reconnect, SourceEvent, SourceState, SourceStats
from .uri import Target

logger = logging.getLogger(__name__)

BufferPolicy = Literal["drop_oldest", "drop_newest"]
FPS_WINDOW = 5.0
"""Seconds over which `SourceStats.fps` is measured."""


class LiveSource:
    """A live source: iterate it for `Frame`s; ``close()`` it (or use ``with``) when done.

    Created by `open_source` for network streams and cameras; see the module docstring.

    Args:
        target: what to open.
        fps: thin to at most this rate (by arrival time); None keeps every frame.
        max_frames: end after delivering this many frames.
        timeout: seconds an open may take.
        reconnect: how to reopen; None: never (a drop ends the source, an error fails it).
        buffer: frames held for a slow reader.
        overflow: which frame a full buffer drops.
        on_event: called on the capture thread with every `SourceEvent` (keep it quick).
    """

    def __init__(self, target: Target, *, fps: float | None = None,
                 max_frames: int | None = None, timeout: float = 10.0,
                 reconnect: Reconnect | None = None, buffer: int = 8,
                 overflow: BufferPolicy = "drop_oldest",
                 on_event: Callable[[SourceEvent], None] | None = None) -> None:
        self._target, self._fps, self._max_frames = target, fps, max_frames
        self._timeout, self._reconnect, self._capacity = timeout, reconnect, buffer
        self._overflow, self._on_event = overflow, on_event
        self._clock0 = time.monotonic()
        self._cv = threading.Condition()
        self._frames: deque[Frame] = deque()
        self._events: list[SourceEvent] = []
        self._state: SourceState = "connecting"
        self._error: SourceError | None = None
        self._closed = False
        self._wake = threading.Event()
        self._decoded = self._delivered = self._dropped = 0
        self._reconnects = self._stalls = 0
        self._offline = 0.0
        self._outage_start: float | None = None  # stream time the current outage began
        self._recent: deque[float] = deque()  # delivery times within FPS_WINDOW
        self._size: tuple[int | None, int | None] = (None, None)
        self._thread = threading.Thread(target=self._capture, daemon=True,
                                        name=f"streamvxl-capture {target.uri}")
        self._emit("connecting", f"opening {target.kind} {target.uri}")
        self._thread.start()

    # -- reading ------------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return self._target.uri

    @property
    def live(self) -> bool:
        return True

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._closed

    def now(self) -> float:
        """The source's clock: seconds since it was opened (its frames' timestamps)."""
        return time.monotonic() - self._clock0

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        with self._cv:
            while not self._frames and self._state not in ("ended", "failed"):
                self._cv.wait()
            if self._frames:
                frame = self._frames.popleft()
                self._delivered += 1
                now = self.now()
                self._recent.append(now)
                while self._recent and self._recent[0] < now - FPS_WINDOW:
                    self._recent.popleft()
                return frame
            if self._state == "failed" and self._error is not None:
                raise self._error
            raise StopIteration

    def events(self, timeout: float | None = None) -> Iterator[SourceEvent]:
        """Every state change, from the first, as it happens; ends when the source has ended
        or failed, or when ``timeout`` seconds pass with no new event."""
        seen = 0
        while True:
            with self._cv:
                if seen >= len(self._events):
                    if self._state in ("ended", "failed"):
                        return
                    if not self._cv.wait_for(partial(self._news, seen), timeout):
                        return
                new = self._events[seen:]
            yield from new
            seen += len(new)

    def _news(self, seen: int) -> bool:
        return seen < len(self._events) or self._state in ("ended", "failed")

    def stats(self) -> SourceStats:
        with self._cv:
            offline = self._offline
            if self._outage_start is not None:
                offline += self.now() - self._outage_start
            window = min(FPS_WINDOW, max(self.now(), 1e-9))
            recent = sum(1 for t in self._recent if t >= self.now() - FPS_WINDOW)
            return SourceStats(self._state, self._decoded, self._delivered, self._dropped,
                               self._reconnects, self._stalls, offline, recent / window,
                               *self._size)

    def close(self) -> None:
        """Stop capturing; the thread ends after its current read (bounded by the timeouts)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._wake.set()
        if self._state not in ("ended", "failed"):
            self._set_state("ended", "closed by its reader")

    def join(self, timeout: float | None = None) -> None:
        """Wait for the capture thread to finish (after `close`, or at the end)."""
        self._thread.join(timeout)

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveSource({self.uri!r}, {self._state})"

    # -- the capture thread ---------------------------------------------------------------------
    def _capture(self) -> None:
        try:
            self._run()
        except BaseException as e:  # a bug here must not leave the reader waiting forever
            logger.exception("%s: the capture thread stopped", self.uri)
            self._fail(SourceError(f"capturing {self.uri!r} stopped on an unexpected error: "
                                   f"{e!r}"))

    def _run(self) -> None:
        import av

        rng = random.Random()
        sampler = FpsSampler(self._fps) if self._fps is not None else None
        failures = 0  # failed attempts in a row
        streamed = False  # frames came at least once
        last_ts: float | None = None
        cause = outage_cause = ""
        index = 0
        while not self._closed:
            try:
                container = self._open()
            except Exception as e:  # noqa: BLE001 - any failure to open is a reason to retry
                failures += 1
                cause = _describe(e, self._target)
                if not self._retry(failures, cause, rng):
                    return
                continue
            try:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for av_frame in container.decode(stream):
                    if self._closed:
                        break
                    ts = self.now()
                    with self._cv:
                        self._decoded += 1
                    if sampler is not None and not sampler.keep(ts):
                        continue
                    image = to_rgb_uint8(av_frame)  # any size: a resolution change just passes
                    gap = None
                    with self._cv:
                        if self._outage_start is not None:
                            gap = Gap(self._outage_start, ts, outage_cause)
                            self._offline += ts - self._outage_start
                            self._outage_start = None
                            self._reconnects += 1
                        self._size = (image.shape[1], image.shape[0])
                    if self._state != "streaming":
                        failures = 0
                        streamed = True
                        self._set_state("streaming", f"{image.shape[1]}x{image.shape[0]}")
                    self._put(Frame(image, ts, index, live=True, gap=gap))
                    index += 1
                    last_ts = ts
                    if self._max_frames is not None and index >= self._max_frames:
                        self._set_state("ended", f"{index} frames delivered (max_frames)")
                        return
                cause = "the stream ended"
            except av.ExitError:  # the read timeout's interrupt: no data for that long
                cause = f"no frame for {self._stall_timeout():g} s"
                with self._cv:
                    self._stalls += 1
                self._set_state("stalled", cause)
            except Exception as e:  # noqa: BLE001 - a broken stream is a reason to reconnect
                cause = _describe(e, self._target)
            finally:
                container.close()
            if self._closed:
                return
            if streamed:
                with self._cv:
                    if self._outage_start is None:
                        self._outage_start = last_ts if last_ts is not None else self.now()
                        outage_cause = cause
            if self._reconnect is None:  # no reconnect: an end is an end, an error a failure
                if cause == "the stream ended":
                    self._set_state("ended", cause)
                else:
                    self._fail(SourceError(f"{self._target.kind} {self.uri!r} dropped: {cause}"))
                return
            failures += 1
            if not self._retry(failures, cause, rng):
                return

    def _open(self):
        import av

        t = self._target
        container = av.open(t.target, format=t.format, options=t.options,
                            timeout=(self._timeout, self._stall_timeout() / 2))
        if not container.streams.video:
            found = ", ".join(s.type for s in container.streams) or "no streams"
            container.close()
            raise SourceError(f"{self.uri!r} has no video stream (found: {found})")
        return container

    def _stall_timeout(self) -> float:
        return (self._reconnect or Reconnect()).stall_timeout

    def _retry(self, failures: int, cause: str, rng: random.Random) -> bool:
        """Wait before the next attempt; False when the source gives up (it has failed)."""
        policy = self._reconnect
        if policy is None or (policy.max_attempts is not None and failures >= policy.max_attempts):
            tries = f" after {failures} attempts" if failures > 1 else ""
            self._fail(SourceError(f"cannot read {self._target.kind} {self.uri!r}{tries}: "
                                   f"{cause}; {_hint(self._target, self._timeout)}"))
            return False
        delay = policy.delay(failures, rng)
        self._set_state("reconnecting", f"{cause}; attempt {failures + 1} in {delay:.1f} s")
        self._wake.wait(delay)
        return not self._closed

    def _put(self, frame: Frame) -> None:
        with self._cv:
            if len(self._frames) >= self._capacity:
                self._dropped += 1
                if self._overflow == "drop_newest":
                    return
                self._frames.popleft()
            self._frames.append(frame)
            self._cv.notify_all()

    def _fail(self, error: SourceError) -> None:
        with self._cv:
            self._error = error
        self._set_state("failed", str(error))

    def _set_state(self, state: SourceState, detail: str = "") -> None:
        with self._cv:
            if self._state in ("ended", "failed") and state != self._state:
                return  # final
            self._state = state
            self._cv.notify_all()
        self._emit(state, detail)

    def _emit(self, state: SourceState, detail: str) -> None:
        event = SourceEvent(state, self.now(), detail)
        with self._cv:
            self._events.append(event)
            if len(self._events) > 10_000:  # a camera flapping for days: keep the recent ones
                del self._events[:5_000]
            self._cv.notify_all()
        level = logging.WARNING if state in ("stalled", "failed") else logging.INFO
        logger.log(level, "%s: %s%s", self.uri, state, f" ({detail})" if detail else "")
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the capture
                logger.exception("%s: the on_event callback failed", self.uri)


def _describe(error: BaseException, target: Target) -> str:
    """FFmpeg's reason, without the URI it repeats."""
    text = str(error).replace(f": {target.target!r}", "").replace(f": '{target.target}'", "")
    return text or type(error).__name__


def _hint(target: Target, timeout: float) -> str:
    if target.kind == "camera":
        return "check that the camera is connected and not in use by another program"
    return (f"check the URL, the credentials, and that the server answers within {timeout:g} s "
            "(for RTSP, options={'rtsp_transport': 'udp'} helps behind some firewalls)")


__all__ = ["BufferPolicy", "LiveSource"]
