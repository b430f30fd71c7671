"""Ratio policies: fixed, density-driven (monotone, endpoints, allowed set), validation."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import streamvxl.intervals.ratio as ratio_module
from streamvxl.errors import ConfigError, FrameError
from streamvxl.intervals import (
    BoundaryConfig,
    DensityRatio,
    FixedRatio,
    RatioPolicy,
    as_ratio_policy,
    information_density,
    segment,
)
from tests.intervals.synthetic import scene_sequence


def sims_with_density(d: float, n: int = 5) -> list[float]:
    return [1.0 - d] * n


@pytest.mark.parametrize("r", [1, 2, 7, 16])
def test_fixed_ratio_always_returns_r(r):
    policy = FixedRatio(r)
    rng = np.random.default_rng(r)
    for n in range(6):
        assert policy.choose(rng.uniform(-1, 1, size=n).tolist()) == r
    assert policy.ratios == (r,)
    assert isinstance(policy, RatioPolicy)


@pytest.mark.parametrize(
    ("ratios", "low", "high"),
    [
        ((2, 4, 8, 16), 0.02, 0.25),
        ((1, 3, 32), 0.0, 1.0),
        ((5,), 0.1, 0.2),
        ((16, 2, 4, 2), 0.05, 0.5),
    ],
)
def test_density_ratio_is_monotone_hits_endpoints_and_stays_in_the_set(ratios, low, high):
    policy = DensityRatio(ratios=ratios, low=low, high=high)
    allowed = tuple(sorted(set(ratios)))
    assert policy.ratios == allowed
    densities = np.linspace(0.0, 2.0, 801)
    chosen = [policy.choose(sims_with_density(d)) for d in densities]
    assert set(chosen) <= set(allowed)
    assert (np.diff(chosen) <= 0).all()  # more change, never a larger r
    assert set(chosen) == set(allowed)  # every allowed ratio is reachable
    # endpoints: static (and exactly low) -> largest, fast (and exactly high) -> smallest
    for d in (0.0, low / 2, low):
        assert policy.choose(sims_with_density(d)) == allowed[-1]
    for d in (high, (high + 2.0) / 2, 2.0):
        assert policy.choose(sims_with_density(d)) == allowed[0]


def test_density_ratio_interpolates_in_log2_space_and_snaps_to_nearest():
    policy = DensityRatio()  # (2, 4, 8, 16), low 0.02, high 0.25
    span = 0.25 - 0.02
    # log2 target falls linearly from 4 to 1: at 1/3 of the span the target is exactly 8
    assert policy.choose(sims_with_density(0.02 + span / 3)) == 8
    assert policy.choose(sims_with_density(0.02 + 2 * span / 3)) == 4
    # just either side of the midpoint between 8 and 4 (target log2 = 2.5)
    assert policy.choose(sims_with_density(0.02 + span / 2 - 1e-6)) == 8
    assert policy.choose(sims_with_density(0.02 + span / 2 + 1e-6)) == 4


def test_single_frame_interval_counts_as_static():
    assert information_density([]) == 0.0
    assert DensityRatio().choose([]) == 16
    assert DensityRatio().choose(()) == 16


def test_information_density_is_mean_of_one_minus_s():
    assert information_density([1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert information_density(np.array([0.9, 0.7], dtype=np.float32)) == pytest.approx(0.2)
    assert information_density([-1.0]) == 2.0
    with pytest.raises(FrameError, match="finite"):
        information_density([0.5, math.nan])
    with pytest.raises(FrameError):
        DensityRatio().choose([math.inf])


def test_density_ratio_on_segmented_streams_gives_fast_scenes_small_ratios():
    rng = np.random.default_rng(0)
    still, _ = scene_sequence(rng, [40], noise=0.005)
    busy, _ = scene_sequence(rng, [40], noise=0.5)
    cfg = BoundaryConfig(threshold=10.0, max_frames=20)  # no detected cuts: two 20s each
    policy = DensityRatio()
    still_r = [policy.choose(c.similarities) for c in segment(still, cfg)]
    busy_r = [policy.choose(c.similarities) for c in segment(busy, cfg)]
    assert still_r == [16, 16] and busy_r == [2, 2]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ratios": ()}, "ratios"),
        ({"ratios": (0, 2)}, "ratios"),
        ({"ratios": (-4,)}, "ratios"),
        ({"ratios": (2.5, 4)}, "ratios"),
        ({"ratios": (True, 4)}, "ratios"),
        ({"ratios": "248"}, "ratios"),
        ({"ratios": 4}, "ratios"),
        ({"low": 0.3, "high": 0.2}, "low"),
        ({"low": 0.2, "high": 0.2}, "low"),
        ({"low": -0.1}, "low"),
        ({"high": 2.5}, "high"),
        ({"high": math.nan}, "high"),
        ({"low": "0.1"}, "low"),
    ],
)
def test_density_ratio_validation_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        DensityRatio(**kwargs)


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "4", None])
def test_fixed_ratio_validation_names_the_field(bad):
    with pytest.raises(ConfigError, match="ratio"):
        FixedRatio(bad)


def test_as_ratio_policy():
    assert as_ratio_policy(8) == FixedRatio(8)
    density = DensityRatio(ratios=[4, 2])
    assert as_ratio_policy(density) is density and density.ratios == (2, 4)
    for bad in (0, "density", 2.0, True, None):
        with pytest.raises(ConfigError, match="ratio"):
            as_ratio_policy(bad)


def test_docstring_examples_run():
    assert doctest.testmod(ratio_module, raise_on_error=True).attempted > 0
