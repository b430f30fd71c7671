"""Compression-ratio policies: how many raw visual tokens share one summary token, per interval.

A policy looks at a closed interval's internal adjacent similarities (s_t = cos(e_t, e_{t+1}) for
its consecutive frames, ``ClosedInterval.similarities``) and returns the ratio r for it:

- ``FixedRatio(r)``: always r.
- ``DensityRatio``: the information density mean(1 - s) decides; fast-changing intervals get a
  small r (fine memory), static ones a large r (cheap memory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from streamvxl.errors import ConfigError, FrameError


@runtime_checkable
class RatioPolicy(Protocol):
    """Chooses the compression ratio of one closed interval."""

    @property
    def ratios(self) -> tuple[int, ...]:
        """Every ratio ``choose`` may return, ascending."""
        ...

    def choose(self, similarities: Sequence[float]) -> int:
        """The ratio for an interval with these internal adjacent similarities (n_frames - 1)."""
        ...


def _check_ratio(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{name} must be a positive int (raw tokens per summary token), got {value!r}"
        )
    return value


def information_density(similarities: Sequence[float]) -> float:
    """mean(1 - s) over an interval's adjacent similarities; 0.0 for a single-frame interval.

    Ranges over [0, 2]: 0 for identical frames, about 1 for unrelated ones.

    Raises:
        FrameError: a similarity is NaN or infinite.
    """
    values = [float(s) for s in similarities]
    if not all(math.isfinite(s) for s in values):
        raise FrameError("similarities must be finite cosines in [-1, 1]; got NaN or inf")
    if not values:
        return 0.0
    return math.fsum(1.0 - s for s in values) / len(values)


@dataclass(frozen=True)
class FixedRatio:
    """The same ratio for every interval.

    Example:
        >>> FixedRatio(4).choose([0.1, 0.9])
        4
    """

    ratio: int
    """Raw visual tokens per summary token, >= 1."""

    def __post_init__(self) -> None:
        _check_ratio("ratio", self.ratio)

    @property
    def ratios(self) -> tuple[int, ...]:
        """The one ratio this policy returns."""
        return (self.ratio,)

    def choose(self, similarities: Sequence[float]) -> int:
        """Returns ``ratio`` whatever the interval holds."""
        return self.ratio


@dataclass(frozen=True)
class DensityRatio:
    """A ratio from the allowed set by information density d = mean(1 - s).

    d <= low gives the largest ratio, d >= high the smallest; in between, log2(r) moves linearly
    from the largest to the smallest and snaps to the nearest allowed ratio in log2 space (a tie
    goes to the smaller ratio, the finer memory). A single-frame interval has no similarities,
    so d = 0: it counts as static. The choice never increases as d grows.

    Example:
        >>> policy = DensityRatio(ratios=(2, 4, 8, 16), low=0.02, high=0.25)
        >>> policy.choose([0.99, 0.995]), policy.choose([0.5, 0.6]), policy.choose([0.86, 0.86])
        (16, 2, 4)
    """

    ratios: tuple[int, ...] = (2, 4, 8, 16)
    """Allowed ratios (stored sorted ascending, without duplicates)."""
    low: float = 0.02
    """Density at or below which the largest ratio is used (static content)."""
    high: float = 0.25
    """Density at or above which the smallest ratio is used (fast-changing content)."""

    def __post_init__(self) -> None:
        ratios = self.ratios
        if isinstance(ratios, (str, bytes)) or not isinstance(ratios, Sequence) or not ratios:
            raise ConfigError(
                f"ratios must be a non-empty sequence of positive ints, got {ratios!r}"
            )
        for r in ratios:
            _check_ratio("ratios", r)
        object.__setattr__(self, "ratios", tuple(sorted(set(ratios))))
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a float in [0, 2], got {value!r}")
            if not (math.isfinite(value) and 0.0 <= value <= 2.0):
                raise ConfigError(f"{name} must be a density in [0, 2], got {value}")
            object.__setattr__(self, name, float(value))
        if self.low >= self.high:
            raise ConfigError(
                f"low ({self.low}) must be < high ({self.high}); lower low or raise high"
            )

    def choose(self, similarities: Sequence[float]) -> int:
        """The ratio for an interval with these internal adjacent similarities."""
        density = information_density(similarities)
        frac = min(max((density - self.low) / (self.high - self.low), 0.0), 1.0)
        lo, hi = math.log2(self.ratios[0]), math.log2(self.ratios[-1])
        target = hi + frac * (lo - hi)  # log2 of the ideal ratio, falls as density grows
        return min(self.ratios, key=lambda r: (abs(math.log2(r) - target), r))


def as_ratio_policy(spec: int | RatioPolicy) -> RatioPolicy:
    """An int becomes ``FixedRatio(spec)``; a policy is returned as it is.

    Raises:
        ConfigError: ``spec`` is neither a positive int nor a ``RatioPolicy``.
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        return FixedRatio(spec)
    if isinstance(spec, RatioPolicy):
        return spec
    raise ConfigError(
        f"ratio must be a positive int or a RatioPolicy (FixedRatio, DensityRatio), got {spec!r}"
    )


__all__ = ["DensityRatio", "FixedRatio", "RatioPolicy", "as_ratio_policy", "information_density"]
