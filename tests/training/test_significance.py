"""Paired bootstrap differences between evaluation methods on the same questions."""

from __future__ import annotations

import numpy as np
import pytest

from training.accuracy_report import markdown_report
from training.significance import paired_differences


def _rows(outcomes: dict[str, list[bool]], ratio: int | None = 16, video: str = "v") -> list[dict]:
    return [{"video": video, "ratio": ratio if m != "full" else None, "question": f"q{i}",
             "method": m, "correct": c} for m, cs in outcomes.items() for i, c in enumerate(cs)]


def test_certain_differences_have_degenerate_intervals() -> None:
    (row,) = paired_differences(_rows({"vst": [True] * 5, "avg_pool": [False] * 5}))
    assert (row["method"], row["ratio"], row["n"]) == ("avg_pool", 16, 5)
    assert row["diff"] == row["low"] == row["high"] == 1.0
    (same,) = paired_differences(_rows({"vst": [True, False] * 4, "last_n": [True, False] * 4}))
    assert same["diff"] == same["low"] == same["high"] == 0.0


def test_the_interval_covers_the_difference_and_narrows_with_more_questions() -> None:
    rng = np.random.default_rng(0)

    def width(n: int) -> tuple[float, dict]:
        ref, other = rng.random(n) < 0.6, rng.random(n) < 0.4
        (row,) = paired_differences(_rows({"vst": list(ref), "avg_pool": list(other)}))
        assert row["low"] <= row["diff"] <= row["high"]
        assert row["diff"] == pytest.approx(ref.mean() - other.mean())
        return row["high"] - row["low"], row

    small, row = width(50)
    large, _ = width(2000)
    assert large < small / 3  # ~ 1 / sqrt(n)
    again = paired_differences(_rows({"vst": [True, False, True], "avg_pool": [False] * 3}))
    assert again == paired_differences(
        _rows({"vst": [True, False, True], "avg_pool": [False] * 3}))  # seeded


def test_a_method_run_once_is_paired_at_every_ratio_and_repeats_stay_separate() -> None:
    rows = _rows({"vst": [True, True]}, ratio=2) + _rows({"vst": [True, False]}, ratio=16) + \
        _rows({"full": [False, False]})
    got = {(r["method"], r["ratio"]): r for r in paired_differences(rows)}
    assert set(got) == {("full", 2), ("full", 16)}
    assert got[("full", 2)]["diff"] == 1.0 and got[("full", 16)]["diff"] == 0.5
    twice = [{"video": "v", "ratio": 4, "question": "same?", "method": m, "correct": c}
             for m, c in (("vst", True), ("vst", False), ("avg_pool", False),
                          ("avg_pool", False))]
    (row,) = paired_differences(twice)
    assert row["n"] == 2 and row["diff"] == 0.5


def test_the_report_shows_the_differences() -> None:
    preds = _rows({"vst": [True] * 3, "avg_pool": [False] * 3})
    rows = [{"method": m, "ratio": 16, "task": "all", "n": 3, "correct": c, "accuracy": c / 3,
             "memory_tokens": 24.0} for m, c in (("vst", 3), ("avg_pool", 0))]
    md = markdown_report(rows, differences=paired_differences(preds))
    assert "vst minus each method" in md and "| avg_pool | +100.0 (+100.0 ... +100.0) |" in md


def test_resampling_videos_widens_the_interval_only_when_their_questions_move_together() -> None:
    rng = np.random.default_rng(1)
    ref, other = rng.random(80) < 0.6, rng.random(80) < 0.4
    one_each = _rows({"vst": list(ref), "avg_pool": list(other)})
    for r in one_each:
        r["video"] = r["question"]  # one question per video: the same draws either way
    assert paired_differences(one_each, by_video=True) == paired_differences(one_each)
    # 20 videos of 4 questions each, every question of a video answered alike
    together = [{"video": f"v{i // 4}", "ratio": 16, "question": f"q{i}", "method": m,
                 "correct": bool(ref[i // 4]) if m == "vst" else bool(other[i // 4])}
                for i in range(80) for m in ("vst", "avg_pool")]
    (by_question,) = paired_differences(together)
    (by_video,) = paired_differences(together, by_video=True)
    assert by_video["diff"] == by_question["diff"]
    assert by_video["high"] - by_video["low"] > 1.5 * (by_question["high"] - by_question["low"])
