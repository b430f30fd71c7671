"""IntervalSegmenter: coverage, length rules, timing, streaming equals offline, bad input."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import streamvxl.intervals.segmenter as segmenter_module
from streamvxl.errors import FrameError
from streamvxl.intervals import BoundaryConfig, ClosedInterval, IntervalSegmenter, segment
from tests.intervals.synthetic import scene_sequence, similarities

SEEDS = range(8)


def stream(emb, cfg: BoundaryConfig, first_index: int = 0):
    """Pushes every frame, then flushes: [(frame whose push returned it or None, interval)]."""
    seg = IntervalSegmenter(cfg)
    out = []
    for i, e in enumerate(emb):
        closed = seg.push(first_index + i, e)
        assert seg.pending < cfg.max_frames
        assert seg.open_start == (seg.next_index - seg.pending if seg.pending else None)
        out += [(first_index + i, c) for c in closed]
    return out + [(None, c) for c in seg.flush()]


def random_case(seed: int):
    """A noisy scene stream and a random length configuration."""
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(1, 30, size=int(rng.integers(1, 12)))]
    emb, cuts = scene_sequence(rng, lengths, noise=[0.02, 0.2][seed % 2])
    min_frames = int(rng.integers(1, 10))
    cfg = BoundaryConfig(
        window=int(rng.integers(1, 5)),
        min_frames=min_frames,
        max_frames=int(rng.integers(min_frames, 40)),
        threshold=["adaptive", 0.15][seed % 2],
    )
    return emb, cuts, cfg


@pytest.mark.parametrize("seed", range(40))
def test_invariants_on_random_streams(seed):
    emb, _, cfg = random_case(seed)
    out = stream(emb, cfg)
    intervals = [c for _, c in out]
    # every frame in exactly one interval, in order
    covered = [f for c in intervals for f in range(c.start, c.end + 1)]
    assert covered == list(range(len(emb)))
    # lengths: never above max_frames; below min_frames only for the very last interval
    assert all(1 <= c.num_frames <= cfg.max_frames for c in intervals)
    assert all(c.num_frames >= cfg.min_frames for c in intervals[:-1])
    # the internal similarities are the adjacent cosines of the interval's frames
    s = similarities(emb)
    for c in intervals:
        assert isinstance(c, ClosedInterval) and len(c.similarities) == c.num_frames - 1
        np.testing.assert_allclose(c.similarities, s[c.start : c.end], rtol=0, atol=1e-12)
    # timing: a push returns a forced close at its own frame, a boundary delay_frames later
    for frame, c in out:
        if frame is not None:
            forced = frame == c.end and c.num_frames == cfg.max_frames
            assert forced or frame == c.end + 1 + cfg.window


def test_cut_positions_follow_the_scenes():
    # clean scenes of min_frames .. max_frames - w - 1 frames are cut exactly at their ends
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        lengths = [int(x) for x in rng.integers(6, 20, size=8)]
        emb, cuts = scene_sequence(rng, lengths)
        cfg = BoundaryConfig(window=3, min_frames=5, max_frames=19 + 3 + 1)
        out = stream(emb, cfg)
        assert [c.end for _, c in out[:-1]] == cuts
        assert [frame for frame, _ in out[:-1]] == [t + 1 + 3 for t in cuts]


@pytest.mark.parametrize("seed", SEEDS)
def test_streaming_equals_offline_and_reruns(seed):
    emb, _, cfg = random_case(seed)
    pushed = [c for _, c in stream(emb, cfg)]
    assert pushed == segment(emb, cfg)
    assert pushed == segment(list(emb), cfg)
    # the caller's indices only shift the intervals
    shifted = segment(emb, cfg, first_index=1000)
    assert [(c.start - 1000, c.end - 1000, c.similarities) for c in shifted] == [
        (c.start, c.end, c.similarities) for c in pushed
    ]


def test_cut_closer_than_min_frames_is_ignored():
    # scenes of 10, 4, 10, 6 frames: the cut after the 4-frame scene would close [10, 13]
    rng = np.random.default_rng(0)
    emb, cuts = scene_sequence(rng, [10, 4, 10, 6])
    cfg = BoundaryConfig(window=2, min_frames=5, max_frames=64)
    assert cuts == [9, 13, 23]
    assert [(c.start, c.end) for c in segment(emb, cfg)] == [(0, 9), (10, 23), (24, 29)]


def test_long_static_stream_is_split_at_max_frames_exactly():
    emb, _ = scene_sequence(np.random.default_rng(1), [3 * 16 + 5], noise=0.01)
    cfg = BoundaryConfig(window=3, min_frames=4, max_frames=16)
    out = stream(emb, cfg)
    assert [(frame, c.start, c.end) for frame, c in out] == [
        (15, 0, 15),
        (31, 16, 31),
        (47, 32, 47),
        (None, 48, 52),
    ]


def test_scene_longer_than_max_frames_minus_delay_is_closed_by_force():
    # a 17-frame scene: its cut (after frame 16) would be decided at frame 20, but the open
    # interval reaches 20 frames at frame 19 first
    a, b = np.eye(4)[0], np.eye(4)[1]
    cfg = BoundaryConfig(window=3, min_frames=2, max_frames=20)
    assert [(c.start, c.end) for c in segment([a] * 17 + [b] * 10, cfg)] == [(0, 19), (20, 26)]
    cfg = BoundaryConfig(window=3, min_frames=2, max_frames=21)
    assert [(c.start, c.end) for c in segment([a] * 17 + [b] * 10, cfg)] == [(0, 16), (17, 26)]


def test_boundary_decided_after_a_forced_close_is_ignored():
    cfg = BoundaryConfig(window=3, min_frames=2, max_frames=8)
    a, b = np.eye(4)[0], np.eye(4)[1]
    # the cut after frame 7 coincides with the forced close; its decision (frame 11) is moot
    assert [(c.start, c.end) for c in segment([a] * 8 + [b] * 8, cfg)] == [(0, 7), (8, 15)]
    # the cut after frame 6 is decided at frame 10, after the forced close at frame 7
    out = stream([a] * 7 + [b] * 9, cfg)
    assert [(frame, c.start, c.end) for frame, c in out] == [(7, 0, 7), (15, 8, 15)]


def test_flush_takes_a_boundary_only_with_min_frames_on_both_sides():
    a, b = np.eye(4)[0], np.eye(4)[1]
    cfg = BoundaryConfig(window=3, min_frames=3, max_frames=64)
    # the cut after frame 9 is still pending at the end; 3 frames follow it: taken by flush
    assert [(f, c.start, c.end) for f, c in stream([a] * 10 + [b] * 3, cfg)] == [
        (None, 0, 9),
        (None, 10, 12),
    ]
    # only 2 frames follow it: they join the open interval instead of making a short one
    assert [(f, c.start, c.end) for f, c in stream([a] * 10 + [b] * 2, cfg)] == [(None, 0, 11)]


def test_short_stream_and_empty_stream():
    cfg = BoundaryConfig(min_frames=4)
    a = np.ones(8)
    assert [(c.start, c.end, c.similarities) for c in segment([a, a], cfg)] == [
        (0, 1, (pytest.approx(1.0),))
    ]
    assert segment([], cfg) == []
    seg = IntervalSegmenter(cfg)
    assert seg.flush() == [] and seg.open_start is None and seg.pending == 0
    assert seg.next_index is None


def test_properties_track_the_open_interval():
    a, b = np.eye(4)[0], np.eye(4)[1]
    seg = IntervalSegmenter(BoundaryConfig(window=1, min_frames=2, max_frames=10))
    assert seg.delay_frames == 1 and seg.config.max_frames == 10
    for i, e in enumerate([a] * 4 + [b] * 2):
        seg.push(10 + i, e)
    assert (seg.open_start, seg.pending, seg.next_index) == (14, 2, 16)  # [10, 13] closed
    seg.reset()
    assert (seg.open_start, seg.pending, seg.next_index) == (None, 0, None)
    assert seg.push(3, a) == [] and seg.open_start == 3  # a new stream may start anywhere


@pytest.mark.parametrize(
    ("index", "message"),
    [(6, "expected 5"), (4, "expected 5"), (-1, ">= 0"), (5.0, "int"), (True, "int"), ("5", "int")],
)
def test_bad_frame_index_raises_frame_error_and_changes_nothing(index, message):
    rng = np.random.default_rng(4)
    emb, _ = scene_sequence(rng, [9, 9])
    cfg = BoundaryConfig(window=2, min_frames=2)
    seg = IntervalSegmenter(cfg)
    out = [c for i, e in enumerate(emb[:5]) for c in seg.push(i, e)]
    with pytest.raises(FrameError, match=message):
        seg.push(index, emb[5])
    with pytest.raises(FrameError):
        seg.push(5, np.full(32, np.nan))
    assert (seg.pending, seg.next_index) == (5, 5)
    out += [c for i, e in enumerate(emb[5:], start=5) for c in seg.push(np.int64(i), e)]
    assert out + seg.flush() == segment(emb, cfg)


def test_docstring_examples_run():
    assert doctest.testmod(segmenter_module, raise_on_error=True).attempted > 0
