"""What a live source is doing and has done: its states, their events, its counters, and how it
reconnects."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from streamvxl.errors import ConfigError

SourceState = Literal["connecting", "streaming", "stalled", "reconnecting", "ended", "failed"]
"""connecting: opening for the first time. streaming: frames are coming. stalled: no frame for
`Reconnect.stall_timeout` (a reconnect follows). reconnecting: waiting to open again after a
drop, an end of stream or a failed open. ended: closed by its reader or ``max_frames`` reached.
failed: the attempts ran out (`Reconnect.max_attempts`); iteration then raises `SourceError`."""


@dataclass(frozen=True)
class SourceEvent:
    """One change of a source's state."""

    state: SourceState
    at: float
    """Seconds on the source's clock (those of its frames' timestamps)."""
    detail: str = ""
    """What happened, for logs ("connection refused; retry in 2.0 s")."""


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of a source's counters."""

    state: SourceState
    frames_decoded: int
    """Frames the decoder produced (before fps thinning)."""
    frames_delivered: int
    """Frames the reader took."""
    frames_dropped: int
    """Frames dropped because the reader fell behind (the buffer was full)."""
    reconnects: int
    """Times the source was opened again after it had streamed or failed to open."""
    stalls: int
    """Times no frame came for `Reconnect.stall_timeout` seconds."""
    seconds_offline: float
    """Seconds spent not streaming, since it first streamed (the current outage included)."""
    fps: float
    """Frames delivered per second over the last few seconds."""
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Reconnect:
    """How a live source is reopened when it drops, stalls or fails to open.

    The n-th wait is ``initial_delay * multiplier ** (n - 1)``, scaled by a random factor in
    ``[1 - jitter, 1 + jitter]`` so that many cameras of one site do not all knock at once, and
    never longer than ``max_delay``; it starts again from ``initial_delay`` once frames come.

    Example:
        >>> Reconnect(initial_delay=1.0, jitter=0.0).delay(3)
        4.0
    """

    initial_delay: float = 0.5
    """Seconds before the first retry."""
    max_delay: float = 30.0
    """Longest wait between two attempts."""
    multiplier: float = 2.0
    jitter: float = 0.2
    """Relative spread of each wait, in [0, 1)."""
    max_attempts: int | None = None
    """Failed attempts in a row before the source gives up (state ``failed``); None: never."""
    stall_timeout: float = 10.0
    """Seconds without a frame that count as a stall (the connection is dropped and reopened)."""

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "stall_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value <= 0:
                raise ConfigError(f"Reconnect.{name} must be a positive number of seconds, "
                                  f"got {value!r}")
        if not (isinstance(self.multiplier, (int, float)) and self.multiplier >= 1):
            raise ConfigError(f"Reconnect.multiplier must be >= 1, got {self.multiplier!r}")
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter < 1):
            raise ConfigError(f"Reconnect.jitter must be in [0, 1), got {self.jitter!r}")
        if self.max_attempts is not None and (isinstance(self.max_attempts, bool) or not
                                              isinstance(self.max_attempts, int)
                                              or self.max_attempts < 1):
            raise ConfigError(f"Reconnect.max_attempts must be a positive int or None, got "
                              f"{self.max_attempts!r}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt`` (1 = the first retry)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        if not self.jitter:
            return base
        return min(self.max_delay, base * (1 + self.jitter * (2 * (rng or random).random() - 1)))


__all__ = ["Reconnect", "SourceEvent", "SourceState", "SourceStats"]
