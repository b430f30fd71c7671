"""A stream's frame queue: validated frames waiting for the vision tower, with ordering markers.

Bounded by a frame count; what happens when it is full is the stream's named overflow policy
(`streamvxl.config.OverflowPolicy`): the caller waits (``block``), the oldest queued frame is
dropped (``drop_oldest``: the memory sees the freshest frames), or the new one is
(``drop_newest``). Drops are counted. Markers (a flush, a wait for the backlog) keep their place
among the frames and take no room. The queue is not thread-safe itself: the scheduler's lock
guards it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from ..errors import FrameError
from ..frames import Gap

# Shapes: H, W frame height and width.


@dataclass(frozen=True)
class QueuedFrame:
    """One validated frame: (H, W, 3) uint8 RGB, owned by the queue (a copy), and its time."""

    image: np.ndarray
    timestamp: float
    """Stream time, seconds."""
    queued_at: float = field(default_factory=time.monotonic)
    """`time.monotonic()` when it was queued (how long it has waited)."""
    gap: Gap | None = None
    """An outage its source reported just before it (`Frame.gap`)."""
    dropped_before: int = 0
    """Frames of the stream dropped by the queue just before it."""


def _after(frame: QueuedFrame, dropped: QueuedFrame) -> QueuedFrame:
    """``frame`` as the successor of a dropped frame: the drop counted, an outage the dropped
    frame carried moved onto it (from where it began)."""
    gap = dropped.gap
    if gap is not None and frame.gap is not None:
        gap = Gap(gap.start, frame.gap.end, frame.gap.cause)
    return replace(frame, gap=gap or frame.gap,
                   dropped_before=frame.dropped_before + dropped.dropped_before + 1)


@dataclass
class Marker:
    """A point in the stream: when every frame before it is in memory, ``reached`` runs.

    ``kind`` ``"flush"`` also closes the open interval there (end of stream). ``future`` is
    what its caller waits on: `reached` completes it (or hands it on), and it is failed if the
    marker is abandoned.
    """

    kind: Literal["flush", "drain"]
    reached: Callable[[], None]
    future: Future


class FrameQueue:
    """Frames and markers in push order, at most ``capacity`` frames, with counters."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[QueuedFrame | Marker] = deque()
        self.frames = 0
        """Frames queued now (markers not counted)."""
        self.pushed = 0
        """Frames accepted over the stream's life (queued, dropped or in memory)."""
        self.dropped = 0
        self.newest_time: float | None = None
        """Timestamp of the newest frame pushed."""
        self.first_time: float | None = None
        """Timestamp of the first frame pushed."""
        self._clock0: float | None = None
        self._refused: QueuedFrame | None = None
        self._resume: tuple[float, float] | None = None
        self._offset = 0.0

    @property
    def full(self) -> bool:
        return self.frames >= self.capacity

    def resume(self, stream_time: float, wall: float) -> None:
        """A reopened memory's time goes on from ``stream_time``, the newest frame it knew of
        at `time.time()` ``wall``. If the next frame is stamped before it (a source whose clock
        started again at 0, or the default clock), it is moved to ``stream_time`` plus the
        wall-clock time that passed since, and every later frame by as much; timestamps that
        already go on (an absolute clock) are left as they are."""
        self._resume = (stream_time, wall)

    def stamp(self, given: float | None) -> float:
        """The timestamp of the next frame: ``given`` (checked), else seconds since the first
        frame pushed. Must not decrease.

        Raises:
            FrameError: not a finite number, or before the previous frame's.
        """
        return self.stamps([given])[0]

    def stamps(self, given: list[float | None]) -> list[float]:
        """`stamp` for several consecutive frames (nothing is recorded until they are
        appended)."""
        out: list[float] = []
        last = self.newest_time
        for ts in given:
            if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
                raise FrameError(f"timestamp must be a number of seconds, got {ts!r}")
            if ts is None:
                now = time.monotonic()
                if self._clock0 is None:
                    self._clock0 = now
                ts = now - self._clock0
            ts = float(ts)
            if not np.isfinite(ts):
                raise FrameError(f"timestamp must be a finite number of seconds, got {ts}")
            if self._resume is not None:  # the first frame since the memory was reopened
                stream_time, wall = self._resume
                if ts < stream_time:  # its clock started again: go on by the time that passed
                    self._offset = stream_time + max(0.0, time.time() - wall) - ts
                self._resume = None
            ts += self._offset
            if last is not None and ts < last:
                raise FrameError(f"timestamp {ts:.3f}s is before the previous frame's "
                                 f"{last:.3f}s; timestamps must not decrease")
            out.append(ts)
            last = ts
        return out

    def append(self, frame: QueuedFrame) -> None:
        if self._refused is not None:  # the frame before it was refused
            frame, self._refused = _after(frame, self._refused), None
        self.items.append(frame)
        self.frames += 1
        self._count(frame)

    def refuse(self, frame: QueuedFrame) -> None:
        """Count ``frame`` as pushed and dropped (``drop_newest`` on a full queue); the next
        frame queued says so."""
        self.dropped += 1
        self._refused = frame if self._refused is None else _after(frame, self._refused)
        self._count(frame)

    def _count(self, frame: QueuedFrame) -> None:
        self.pushed += 1
        self.newest_time = frame.timestamp
        if self.first_time is None:
            self.first_time = frame.timestamp

    def drop_oldest(self) -> None:
        """Drop the oldest queued frame (markers keep their place); the frame after it says
        so."""
        frames = [i for i, item in enumerate(self.items) if isinstance(item, QueuedFrame)]
        if not frames:
            return
        dropped = self.items[frames[0]]
        del self.items[frames[0]]
        self.frames -= 1
        self.dropped += 1
        if len(frames) > 1:
            at = frames[1] - 1  # its index after the deletion
            self.items[at] = _after(self.items[at], dropped)  # type: ignore[arg-type]
        else:  # its successor is the frame being pushed
            self._refused = dropped if self._refused is None else _after(dropped, self._refused)

    def mark(self, marker: Marker) -> None:
        self.items.append(marker)

    def oldest_queued_at(self) -> float | None:
        """When the oldest queued frame was queued (None: no frame queued)."""
        for item in self.items:
            if isinstance(item, QueuedFrame):
                return item.queued_at
        return None

    def take_frame(self) -> QueuedFrame | None:
        """The oldest item if it is a frame (removed), else None."""
        if self.items and isinstance(self.items[0], QueuedFrame):
            self.frames -= 1
            return self.items.popleft()  # type: ignore[return-value]
        return None

    def take_marker(self) -> Marker | None:
        """The oldest item if it is a marker (removed), else None."""
        if self.items and isinstance(self.items[0], Marker):
            return self.items.popleft()  # type: ignore[return-value]
        return None

    def clear(self) -> list[Marker]:
        """Forget every queued frame and reset the counters; returns the markers dropped."""
        markers = [m for m in self.items if isinstance(m, Marker)]
        self.items.clear()
        self.frames = self.pushed = self.dropped = 0
        self.newest_time = self.first_time = self._clock0 = self._refused = None
        self._resume, self._offset = None, 0.0
        return markers
