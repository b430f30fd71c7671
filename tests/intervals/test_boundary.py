"""BoundaryDetector: exact cut recovery, timing, equivalence to an offline reference, bad input."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import streamvxl.intervals.boundary as boundary_module
from streamvxl.errors import ConfigError, FrameError
from streamvxl.intervals import BoundaryConfig, BoundaryDetector
from tests.intervals.synthetic import (
    drift_sequence,
    reference_boundaries,
    scene_sequence,
    similarities,
)

SEEDS = range(6)


def run(emb, cfg: BoundaryConfig) -> list[tuple[int, int | None]]:
    """Streams emb through a fresh detector: (gap, index of the frame whose update reported it)."""
    det = BoundaryDetector(cfg)
    out = [(t, i) for i, e in enumerate(emb) for t in det.update(e)]
    return out + [(t, None) for t in det.flush()]


def random_lengths(rng, n_scenes: int, lo: int, hi: int) -> list[int]:
    return [int(x) for x in rng.integers(lo, hi + 1, size=n_scenes)]


@pytest.mark.parametrize("threshold", [0.15, "adaptive"])
@pytest.mark.parametrize("window", [1, 3, 5])
@pytest.mark.parametrize("seed", SEEDS)
def test_recovers_every_cut_exactly_and_on_time(seed, window, threshold):
    rng = np.random.default_rng(seed)
    # scenes longer than the window, so every cut is decided by update (not flush)
    emb, cuts = scene_sequence(rng, random_lengths(rng, 12, window + 2, 3 * window + 12))
    cfg = BoundaryConfig(window=window, threshold=threshold)
    found = run(emb, cfg)
    assert [t for t, _ in found] == cuts  # every cut, exact gap, no false positive
    assert all(frame == t + 1 + cfg.window for t, frame in found)
    assert BoundaryDetector(cfg).delay_frames == window


def noisy_case(seed: int) -> np.ndarray:
    """Noisy scenes of any length: true cuts, noise minima, cuts near the stream's edges."""
    rng = np.random.default_rng(100 + seed)
    noise = [0.02, 0.15, 0.4][seed % 3]
    emb, _ = scene_sequence(rng, random_lengths(rng, 10, 1, 12), noise=noise)
    return emb


CONFIGS = [
    BoundaryConfig(window=w, threshold=th, adaptive_history=8)
    for w in (1, 2, 4)
    for th in (0.15, "adaptive", 0.0, 0.6)
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"w{c.window}-{c.threshold}")
@pytest.mark.parametrize("seed", SEEDS)
def test_streaming_equals_offline_reference(seed, cfg):
    emb = noisy_case(seed)
    assert run(emb, cfg) == reference_boundaries(emb, cfg)


def test_reference_comparison_is_not_vacuous():
    found = [
        x for seed in SEEDS for cfg in CONFIGS for x in reference_boundaries(noisy_case(seed), cfg)
    ]
    assert len(found) > 100
    assert any(frame is None for _, frame in found)  # some are decided by flush
    assert any(t == 0 for t, _ in found)  # some at the very first gap


def test_equal_minima_cut_once_at_the_first_gap():
    # frames a a a a b c d e e e: s = 1 1 1 0 0 0 0 1 1 -- a plateau of exact zeros
    eye = np.eye(8)
    emb = [eye[0]] * 4 + [eye[1], eye[2], eye[3]] + [eye[4]] * 3
    assert run(emb, BoundaryConfig(window=3)) == [(3, 7)]


def test_stream_edges_use_the_neighbours_that_exist():
    a, b = np.eye(4)[0], np.eye(4)[1]
    cfg = BoundaryConfig(window=3)
    # gap 0: no left neighbour, the right max stands in for both terms (d = 2)
    assert run([a] + [b] * 6, cfg) == [(0, 4)]
    # gap 1: one left neighbour of the three
    assert run([a] * 2 + [b] * 6, cfg) == [(1, 5)]
    # last gap: no right neighbour, decided by flush
    assert run([a] * 6 + [b], cfg) == [(5, None)]
    # fewer than w right neighbours at the end
    assert run([a] * 6 + [b] * 2, cfg) == [(5, None)]
    # a single gap in the whole stream has no context: no cut
    assert run([a, b], cfg) == []
    assert run([a], cfg) == [] and run([], cfg) == []


@pytest.mark.parametrize("threshold", [0.15, "adaptive"])
@pytest.mark.parametrize("seed", SEEDS)
def test_gradual_drift_never_cuts(seed, threshold):
    emb = drift_sequence(np.random.default_rng(seed), 400)  # 8 radians in total
    assert similarities(emb).min() > 0.99
    assert run(emb, BoundaryConfig(threshold=threshold)) == []


def test_static_scene_never_cuts_with_adaptive_threshold():
    rng = np.random.default_rng(0)
    cfg = BoundaryConfig(threshold="adaptive")
    still = np.tile(rng.normal(size=32), (300, 1))
    assert run(still, cfg) == []
    emb, _ = scene_sequence(rng, [300], noise=0.005)
    det = BoundaryDetector(cfg)
    assert [t for e in emb for t in det.update(e)] == []
    assert det.threshold == cfg.min_threshold  # noise depths sit far below the floor


def test_adaptive_threshold_is_mean_plus_k_std_of_recent_depths():
    rng = np.random.default_rng(3)
    emb, _ = scene_sequence(rng, [200], noise=0.3)
    cfg = BoundaryConfig(threshold="adaptive", adaptive_k=1.0, adaptive_history=16, window=2)
    det = BoundaryDetector(cfg)
    for e in emb:
        det.update(e)
    assert det.threshold > cfg.min_threshold
    # rebuild the last 16 non-boundary depth scores offline
    s, w = similarities(emb), cfg.window
    cuts = {t for t, _ in reference_boundaries(emb, cfg)}
    depths = []
    for t in range(det.num_decided):
        left, right = s[max(0, t - w) : t], s[t + 1 : t + w + 1]
        max_left = left.max() if len(left) else right.max()
        if t not in cuts:
            depths.append(max(max_left + right.max() - 2 * s[t], 0.0))
    recent = np.array(depths[-16:])
    assert det.threshold == pytest.approx(recent.mean() + recent.std(), rel=1e-12)


def test_deterministic_across_runs_dtypes_devices_and_scale():
    rng = np.random.default_rng(11)
    emb, _ = scene_sequence(rng, random_lengths(rng, 10, 1, 12), noise=0.15)
    cfg = BoundaryConfig(window=2)
    expected = run(emb, cfg)
    assert expected and run(emb, cfg) == expected
    assert run(emb.astype(np.float32), cfg) == expected
    assert run(torch.from_numpy(emb).float(), cfg) == expected
    assert run(torch.from_numpy(emb), cfg) == expected
    assert run(3.5 * emb, cfg) == expected  # cosine: the scale of an embedding does not matter


def test_memory_is_bounded_by_the_window():
    rng = np.random.default_rng(0)
    emb, _ = scene_sequence(rng, [50] * 10, noise=0.1)
    det = BoundaryDetector(BoundaryConfig(window=3))
    for i, e in enumerate(emb):
        det.update(e)
        assert len(det.similarities) == min(i, 7)
    s = similarities(emb)
    np.testing.assert_allclose(det.similarities, s[-7:], rtol=0, atol=1e-12)
    assert det.last_similarity == det.similarities[-1]
    assert det.num_frames == len(emb) and det.num_decided == len(emb) - 1 - 3


def test_flush_and_reset_start_a_fresh_stream():
    rng = np.random.default_rng(5)
    emb, _ = scene_sequence(rng, [7, 9, 5], noise=0.1)
    other, _ = scene_sequence(rng, [6, 6], dim=16)
    cfg = BoundaryConfig(window=2)
    det = BoundaryDetector(cfg)
    first = [(t, i) for i, e in enumerate(emb) for t in det.update(e)] + [
        (t, None) for t in det.flush()
    ]
    assert first == run(emb, cfg)
    assert det.num_frames == 0 and det.similarities == () and det.last_similarity is None
    # a new stream may use another embedding size
    assert [(t, i) for i, e in enumerate(other) for t in det.update(e)] == [
        x for x in run(other, cfg) if x[1] is not None
    ]
    det.reset()
    assert det.num_frames == 0 and det.num_decided == 0
    assert [(t, i) for i, e in enumerate(emb) for t in det.update(e)] == [
        x for x in first if x[1] is not None
    ]


@pytest.mark.parametrize(
    "bad",
    [
        np.full(32, np.nan),
        np.r_[np.ones(31), np.inf],
        np.zeros(32),
        np.ones((1, 32)),
        np.ones(0),
        np.ones(16),  # size differs from the stream's
        np.ones(32) + 1j,
        torch.ones(32, dtype=torch.complex64),
        "frame",
        None,
    ],
    ids=["nan", "inf", "zeros", "2d", "empty", "dim", "complex", "complex-torch", "str", "none"],
)
def test_bad_embedding_raises_frame_error_and_changes_nothing(bad):
    rng = np.random.default_rng(2)
    emb, _ = scene_sequence(rng, [8, 8])
    cfg = BoundaryConfig(window=2)
    det = BoundaryDetector(cfg)
    out = [(t, i) for i, e in enumerate(emb[:5]) for t in det.update(e)]
    with pytest.raises(FrameError):
        det.update(bad)
    assert det.num_frames == 5
    out += [(t, i + 5) for i, e in enumerate(emb[5:]) for t in det.update(e)]
    assert out + [(t, None) for t in det.flush()] == run(emb, cfg)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window": 0}, "window"),
        ({"window": 2.0}, "window"),
        ({"window": True}, "window"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": "auto"}, "threshold"),
        ({"adaptive_k": -1.0}, "adaptive_k"),
        ({"adaptive_history": 1}, "adaptive_history"),
        ({"min_threshold": -0.01}, "min_threshold"),
        ({"min_frames": 0}, "min_frames"),
        ({"max_frames": 0}, "max_frames"),
        ({"min_frames": 8, "max_frames": 4}, "max_frames"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        BoundaryConfig(**kwargs)


def test_config_accepts_ints_as_floats_and_rejects_a_foreign_config():
    cfg = BoundaryConfig(threshold=0, min_frames=3, max_frames=3)
    assert cfg.threshold == 0.0 and isinstance(cfg.threshold, float) and not cfg.adaptive
    assert BoundaryConfig(threshold="adaptive").adaptive
    with pytest.raises(ConfigError, match="config"):
        BoundaryDetector({"window": 3})  # type: ignore[arg-type]


def test_docstring_examples_run():
    assert doctest.testmod(boundary_module, raise_on_error=True).attempted > 0
