"""How the memory finds a gap between two frames that no source reported.

A live source says when it lost its camera (`streamvxl.frames.Frame.gap`); frames pushed by hand
only carry timestamps, so the memory calls two consecutive frames further apart than a
threshold a gap, told before every question (`streamvxl.prompt.PromptTemplate.gap`). The
threshold is `MemoryConfig.gap_seconds`, else ``GAP_FACTOR`` times the median of the last
``GAP_HISTORY`` intervals between frames, at least ``GAP_MIN_SECONDS`` (none before three
intervals are known): a camera's own rate decides, so a 1-fps camera's 3 s stall is not a gap
and a 30-fps camera's is.

The rule lives here, apart from the stream state, because what trains and evaluates the model
(`training.batch`, `training.evaluate`) must tell the model the gaps the memory would tell it
(`found_gaps`), and the synthetic world must draw outages the rule finds.

Example:
    >>> found_gaps([0.0, 0.5, 1.0, 1.5, 2.0, 6.0, 6.5])
    [Gap(start=2.0, end=6.0, cause='no frames came')]
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Sequence

from .frames import Gap

GAP_HISTORY = 16
"""Intervals between frames the automatic gap threshold looks at."""
GAP_FACTOR = 4.0
"""A gap is this many times longer than the median interval between frames..."""
GAP_MIN_SECONDS = 2.0
"""... and longer than this."""
GAP_MIN_INTERVALS = 3
"""Intervals between frames the rule needs before it finds a gap (the camera's rate)."""
NO_FRAMES_CAME = "no frames came"
"""The cause of a gap the rule finds (`Gap.cause`)."""


def gap_threshold(spacing: Sequence[float], gap_seconds: float | None = None) -> float | None:
    """Seconds between two frames that make a gap, given the last (at most ``GAP_HISTORY``)
    intervals between frames (``gap_seconds`` set: that; None while fewer than
    ``GAP_MIN_INTERVALS`` are known)."""
    if gap_seconds is not None:
        return gap_seconds
    if len(spacing) < GAP_MIN_INTERVALS:
        return None
    return max(GAP_MIN_SECONDS, GAP_FACTOR * statistics.median(spacing))


def step_gap(last: float | None, ts: float, spacing: deque[float],
             gap_seconds: float | None = None, dropped: int = 0) -> Gap | None:
    """The gap between the frame at ``last`` (None: ``ts`` is the first) and the next at
    ``ts`` by the rule (None: none), then ``ts - last`` joins ``spacing`` (a deque of at most
    ``GAP_HISTORY``). ``dropped``: frames the memory's queue dropped in between (the cause)."""
    if last is None:
        return None
    threshold = gap_threshold(spacing, gap_seconds)
    spacing.append(ts - last)
    if threshold is None or ts - last <= threshold:
        return None
    cause = f"{dropped} frames dropped: the memory fell behind" if dropped else NO_FRAMES_CAME
    return Gap(last, ts, cause)


def found_gaps(stamps: Iterable[float], gap_seconds: float | None = None) -> list[Gap]:
    """Every gap the memory finds between frames with these timestamps, oldest first (what a
    fresh `VideoMemory` fed them tells before a question)."""
    spacing: deque[float] = deque(maxlen=GAP_HISTORY)
    gaps, last = [], None
    for ts in stamps:
        gap = step_gap(last, float(ts), spacing, gap_seconds)
        if gap is not None:
            gaps.append(gap)
        last = float(ts)
    return gaps


__all__ = ["GAP_FACTOR", "GAP_HISTORY", "GAP_MIN_INTERVALS", "GAP_MIN_SECONDS", "NO_FRAMES_CAME",
           "found_gaps", "gap_threshold", "step_gap"]
