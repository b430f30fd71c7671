"""FrameQueue: overflow policies count exactly, markers keep their place, timestamps checked."""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np
import pytest

from streamvxl.errors import FrameError
from streamvxl.runtime.queue import FrameQueue, Marker, QueuedFrame

IMAGE = np.zeros((4, 4, 3), np.uint8)


def frame(t: float) -> QueuedFrame:
    return QueuedFrame(IMAGE, t)


def test_drop_oldest_keeps_the_newest_and_the_markers() -> None:
    q = FrameQueue(3)
    q.append(frame(0.0))
    marker = Marker("drain", lambda: None, Future())
    q.mark(marker)
    for t in (1.0, 2.0):
        q.append(frame(t))
    assert q.full
    for t in (3.0, 4.0):  # drop_oldest as the scheduler applies it
        q.drop_oldest()
        q.append(frame(t))
    assert (q.pushed, q.dropped, q.frames) == (5, 2, 3)
    # the marker stays where it was among the frames that remain
    kinds = [item.timestamp if isinstance(item, QueuedFrame) else "m" for item in q.items]
    assert kinds == ["m", 2.0, 3.0, 4.0]
    assert q.take_frame() is None and q.take_marker() is marker
    assert [q.take_frame().timestamp for _ in range(3)] == [2.0, 3.0, 4.0]
    assert q.take_frame() is None and q.frames == 0


def test_refused_frames_count_as_pushed_and_dropped() -> None:
    q = FrameQueue(1)
    q.append(frame(0.0))
    q.refuse(frame(1.0))
    assert (q.pushed, q.dropped, q.frames, q.newest_time, q.first_time) == (2, 1, 1, 1.0, 0.0)


def test_clear_forgets_frames_and_counters_and_returns_markers() -> None:
    q = FrameQueue(4)
    q.append(frame(5.0))
    marker = Marker("flush", lambda: None, Future())
    q.mark(marker)
    assert q.clear() == [marker]
    assert (q.pushed, q.dropped, q.frames, q.newest_time) == (0, 0, 0, None)
    assert q.stamp(1.0) == 1.0  # an earlier time is fine after a reset


@pytest.mark.parametrize(("given", "fragment"), [
    ([1.0, 0.5], "must not decrease"), (["1"], "number"), ([True], "number"),
    ([float("inf")], "finite"), ([float("nan")], "finite"),
])
def test_bad_timestamps(given, fragment) -> None:
    with pytest.raises(FrameError, match=fragment):
        FrameQueue(4).stamps(given)


def test_missing_timestamps_are_seconds_since_the_first_frame() -> None:
    q = FrameQueue(4)
    a, b = q.stamps([None, None])
    assert 0.0 == a <= b < 1.0
    q.append(frame(3.0))
    with pytest.raises(FrameError, match="must not decrease"):
        q.stamp(2.5)
