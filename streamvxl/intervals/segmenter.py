"""Online segmentation of a frame stream into intervals of [min_frames, max_frames] frames.

The ``BoundaryDetector`` proposes cuts; the segmenter turns them into closed intervals:

- A boundary after frame t closes the open interval [start, t] only if it holds at least
  ``min_frames`` frames (t - start + 1 >= min_frames); a boundary that would make a shorter
  interval is ignored and its frames stay in the open interval.
- When the open interval reaches ``max_frames`` frames it is closed at once (forced), whatever
  gaps are still undecided; a boundary decided later that lies before the new start is ignored.
  Since a boundary after frame t is known only at frame t + 1 + w, a scene is cut at its true end
  only if it holds at most ``max_frames - w - 1`` frames; a longer one is split by force first.
- ``flush`` (end of stream) decides the pending gaps, taking a boundary only if it leaves at least
  ``min_frames`` frames on both sides, then closes what is left. That last piece may still be
  shorter than ``min_frames`` (a stream shorter than ``min_frames``, or a stream that ended just
  after a cut or a forced close): it is closed anyway, because no frame may be lost.

After ``flush`` every pushed frame belongs to exactly one closed interval, and the intervals come
out in frame order. A boundary after frame t is returned by the push of frame t + 1 +
``delay_frames``; a forced close by the push of the interval's last frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from streamvxl.errors import FrameError
from streamvxl.intervals.boundary import BoundaryConfig, BoundaryDetector, Embedding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClosedInterval:
    """A closed interval of frames with its internal adjacent similarities."""

    start: int
    """Index of the first frame (inclusive)."""
    end: int
    """Index of the last frame (inclusive)."""
    similarities: tuple[float, ...]
    """s_t = cos(e_t, e_{t+1}) for t = start .. end - 1 (num_frames - 1 values)."""

    @property
    def num_frames(self) -> int:
        """Number of frames, end - start + 1."""
        return self.end - self.start + 1


class IntervalSegmenter:
    """Cuts a stream of frame embeddings into intervals online (rules in the module docstring).

    Frame indices are the caller's: the first push may use any index >= 0, later pushes must
    follow it consecutively.

    Example:
        >>> import numpy as np
        >>> seg = IntervalSegmenter(BoundaryConfig(window=2, min_frames=2, max_frames=8))
        >>> a, b = np.eye(4)[0], np.eye(4)[1]
        >>> closed = []
        >>> for i, e in enumerate([a] * 5 + [b] * 12):
        ...     closed += [(i, c.start, c.end) for c in seg.push(i, e)]
        >>> closed                                 # (pushed frame, start, end)
        [(7, 0, 4), (12, 5, 12)]
        >>> seg.open_start, seg.pending
        (13, 4)
        >>> [(c.start, c.end, c.num_frames) for c in seg.flush()]
        [(13, 16, 4)]
    """

    def __init__(self, config: BoundaryConfig | None = None) -> None:
        self._detector = BoundaryDetector(config)
        self._offset: int | None = None  # caller's index of the detector's frame 0
        self._next: int | None = None  # index the next push must carry
        self._start = 0  # first frame of the open interval (open = [_start, _next - 1])
        self._sims: list[float] = []  # _sims[i] = s of gap _start + i, inside the open interval

    @property
    def config(self) -> BoundaryConfig:
        """The boundary and length configuration."""
        return self._detector.config

    @property
    def delay_frames(self) -> int:
        """w: a boundary after frame t is returned by the push of frame t + 1 + w."""
        return self._detector.delay_frames

    @property
    def next_index(self) -> int | None:
        """The index the next push must carry, or None before the first frame (any index)."""
        return self._next

    @property
    def open_start(self) -> int | None:
        """First frame of the open interval, or None while it is empty."""
        return self._start if self.pending else None

    @property
    def pending(self) -> int:
        """Number of frames in the open interval (always < max_frames between calls)."""
        return 0 if self._next is None else self._next - self._start

    def reset(self) -> None:
        """Drops the open interval and the detector state; the next push may use any index."""
        self._detector.reset()
        self._offset = None
        self._next = None
        self._start = 0
        self._sims = []

    def push(self, frame_index: int, embedding: Embedding) -> list[ClosedInterval]:
        """Adds one frame and returns the intervals it closed, in frame order (usually 0 or 1).

        Raises:
            FrameError: ``frame_index`` is not the expected consecutive int, or the embedding is
                invalid (see ``BoundaryDetector.update``). The state is unchanged.
        """
        index = self._check_index(frame_index)
        gaps = self._detector.update(embedding)  # validates before changing anything
        if self._offset is None:
            self._offset = self._start = index
        elif index - 1 >= self._start:  # the gap into this frame is inside the open interval
            self._sims.append(self._detector.last_similarity)
        self._next = index + 1
        closed: list[ClosedInterval] = []
        for gap in gaps:
            self._cut(self._offset + gap, closed, min_tail=0)
        if self.pending >= self.config.max_frames:
            logger.debug("forced close of frames %d..%d (max_frames)", self._start, index)
            closed.append(self._close(index))
        return closed

    def flush(self) -> list[ClosedInterval]:
        """Ends the stream: decides pending gaps, closes every remaining frame, then resets."""
        closed: list[ClosedInterval] = []
        if self._offset is not None:
            for gap in self._detector.flush():
                self._cut(self._offset + gap, closed, min_tail=self.config.min_frames)
            if self.pending:
                closed.append(self._close(self._next - 1))
        self.reset()
        return closed

    def _check_index(self, frame_index: object) -> int:
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise FrameError(f"frame_index must be an int, got {frame_index!r}")
        index = int(frame_index)
        if index < 0:
            raise FrameError(f"frame_index must be >= 0, got {index}")
        if self._next is not None and index != self._next:
            raise FrameError(
                f"frame_index {index} does not follow frame {self._next - 1}: push frames with "
                f"consecutive indices (expected {self._next}), or flush()/reset() to start anew"
            )
        return index

    def _cut(self, t: int, closed: list[ClosedInterval], min_tail: int) -> None:
        """Applies a boundary after frame t, if the length rules allow it."""
        if t < self._start:
            logger.debug("boundary after frame %d ignored: before the open interval", t)
            return
        if t - self._start + 1 < self.config.min_frames or self._next - 1 - t < min_tail:
            logger.debug("boundary after frame %d ignored: interval under min_frames", t)
            return
        closed.append(self._close(t))

    def _close(self, end: int) -> ClosedInterval:
        """Closes the open interval's frames _start .. end; later frames stay open."""
        n = end - self._start  # internal similarities of the closed part
        interval = ClosedInterval(self._start, end, tuple(self._sims[:n]))
        self._sims = self._sims[n + 1 :]  # s_end crosses the cut: it belongs to neither side
        self._start = end + 1
        return interval


def segment(
    embeddings: Iterable[Embedding],
    config: BoundaryConfig | None = None,
    first_index: int = 0,
) -> list[ClosedInterval]:
    """Segments a whole sequence at once: the same result as pushing every frame, then flush.

    Example:
        >>> import numpy as np
        >>> a, b = np.eye(4)[0], np.eye(4)[1]
        >>> [(c.start, c.end) for c in segment([a] * 6 + [b] * 6)]
        [(0, 5), (6, 11)]
    """
    seg = IntervalSegmenter(config)
    out: list[ClosedInterval] = []
    for i, e in enumerate(embeddings):
        out += seg.push(first_index + i, e)
    return out + seg.flush()


__all__ = ["ClosedInterval", "IntervalSegmenter", "segment"]
