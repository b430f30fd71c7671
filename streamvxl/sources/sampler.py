"""Thinning a stream to a target frame rate without ever duplicating a frame."""

from __future__ import annotations

import math
import numbers

from streamvxl.errors import ConfigError


class FpsSampler:
    """Keeps a subsequence of frames whose rate is at most ``fps``, never duplicating any.

    The sampling instants are ``t0 + k / fps`` where ``t0`` is the first timestamp seen. A frame
    is kept when it is the first to reach the next instant not yet taken; so a faster source is
    thinned to about ``fps`` and a slower one passes unchanged. A frame counts as reaching an
    instant when it is less than half a source frame before it (capped at half a sampling
    period): without that slack, a jittery 30 fps camera sampled at ``fps=30`` would drop every
    frame that arrives a millisecond early.

    Args:
        fps: Target rate in frames per second, > 0.
        source_fps: The source's nominal rate, used to size the slack. If None, the last
            observed interval between timestamps is used instead.

    Raises:
        ConfigError: ``fps`` is not a positive finite number.

    Example:
        >>> sampler = FpsSampler(fps=5)
        >>> [t for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5) if sampler.keep(t)]
        [0.0, 0.2, 0.4]
    """

    def __init__(self, fps: float, source_fps: float | None = None) -> None:
        self.fps = check_fps(fps)
        self.source_fps = source_fps if source_fps and source_fps > 0 else None
        self._t0: float | None = None
        self._previous: float | None = None
        self._next_slot = 0  # index k of the next instant t0 + k / fps still to be taken

    def keep(self, timestamp: float) -> bool:
        """Whether the frame at ``timestamp`` (seconds) belongs to the thinned stream."""
        if self._t0 is None:
            self._t0 = self._previous = timestamp
            self._next_slot = 1
            return True
        if self.source_fps is not None:
            source_period = 1.0 / self.source_fps
        else:
            interval = timestamp - self._previous
            source_period = interval if interval > 0 else 0.0
        self._previous = timestamp
        slack = 0.5 * min(source_period, 1.0 / self.fps)  # seconds
        slot = (timestamp - self._t0 + slack) * self.fps  # position in sampling periods
        if slot < self._next_slot:
            return False
        # Index-based instants: t0 + k / fps never accumulates rounding drift.
        self._next_slot = math.floor(slot) + 1
        return True


def check_fps(fps: float) -> float:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps):
        raise ConfigError(f"fps must be a positive finite number, got {fps!r}.")
    if fps <= 0:
        raise ConfigError(
            f"fps must be > 0, got {fps!r}; pass fps=None to keep every frame of the source."
        )
    return float(fps)


__all__ = ["FpsSampler", "check_fps"]
