"""Is one method really better than another on the same questions? Paired bootstrap intervals.

Every method of an evaluation answers the same questions about the same videos, so the fair
comparison is per question: d = correct(reference) - correct(baseline) in {-1, 0, 1}. The mean
of d is the accuracy difference; resampling the questions (with replacement) gives its sampling
spread, summarised as a percentile interval. Pairing removes the variance the two methods share
(hard videos are hard for both), which independent per-method intervals would count twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["paired_differences"]


def _paired(predictions: Iterable[Mapping[str, Any]], reference: str
            ) -> dict[tuple[str, int], dict[tuple, dict[str, bool]]]:
    """(method, ratio) -> question key -> {"ref": ..., "other": ...} for every baseline.

    A method run once for all ratios (``ratio`` None: the uncompressed ``full``) is paired
    with the reference at every ratio."""
    seen: Counter = Counter()
    by_question: dict[tuple, dict[str, bool]] = {}
    every_ratio: dict[tuple, dict[str, bool]] = {}
    for p in predictions:
        base = (p["video"], p["ratio"], p["question"], p["method"])
        seen[base] += 1  # the same text asked twice about one video stays two questions
        question = (p["video"], p["question"], seen[base])
        if p["ratio"] is None:
            every_ratio.setdefault(question, {})[p["method"]] = bool(p["correct"])
        else:
            by_question.setdefault((p["ratio"], *question), {})[p["method"]] = \
                bool(p["correct"])
    pairs: dict[tuple[str, int], dict[tuple, dict[str, bool]]] = {}
    for key, answers in by_question.items():
        if reference not in answers:
            continue
        for method, correct in {**every_ratio.get(key[1:], {}), **answers}.items():
            if method != reference:
                pairs.setdefault((method, key[0]), {})[key] = {
                    "ref": answers[reference], "other": correct}
    return pairs


def paired_differences(predictions: Iterable[Mapping[str, Any]], reference: str = "vst",
                       resamples: int = 2000, level: float = 0.95, seed: int = 0,
                       by_video: bool = False) -> list[dict[str, Any]]:
    """``reference`` minus each other method, per ratio, over the questions both answered.

    Args:
        predictions: rows with ``video``, ``method``, ``ratio``, ``question``, ``correct``
            (what `training.evaluate.evaluate` records).
        reference: the method compared against all others.
        resamples: bootstrap resamples of the questions.
        level: the interval's coverage.
        seed: seeds the resampling (the intervals are reproducible).
        by_video: resample whole videos instead of questions: the questions about one video
            may move together (a video that is hard is hard for all of them), which a
            question bootstrap would not see. The same draws as the question bootstrap when
            every video has one question.

    Returns:
        One row per (method, ratio): ``diff``, ``low``, ``high`` (accuracy fractions) and
        ``n`` (paired questions), sorted by method then ratio.

    Example:
        >>> rows = [{"video": "v", "ratio": 16, "question": f"q{i}", "method": m,
        ...          "correct": m == "vst"} for i in range(4) for m in ("vst", "avg_pool")]
        >>> paired_differences(rows)[0]["diff"]
        1.0
    """
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    out = []
    for (method, ratio), questions in sorted(_paired(predictions, reference).items()):
        d = np.array([int(a["ref"]) - int(a["other"]) for a in questions.values()], dtype=float)
        # the resampled units: whole videos, or each question its own unit
        index: dict[Any, int] = {}
        unit = np.array([index.setdefault(key[1] if by_video else key, len(index))
                         for key in questions])
        sums = np.bincount(unit, weights=d)  # (units,)
        counts = np.bincount(unit).astype(float)  # (units,)
        picks = rng.integers(0, len(sums), size=(resamples, len(sums)))  # (resamples, units)
        means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
        out.append({"reference": reference, "method": method, "ratio": ratio, "n": len(d),
                    "diff": float(d.mean()), "low": float(np.quantile(means, tail)),
                    "high": float(np.quantile(means, 1 - tail))})
    return out
