"""`benchmarks.recall_eval`'s kept logs: a run that would meet an earlier run's log (or, with
``--reopen``, miss one) is refused before any haystack is fed, not in a worker half an hour in."""

from __future__ import annotations

from pathlib import Path

from benchmarks.recall_eval import Case, check_keep, log_folder


def case(seed: int) -> Case:
    return Case(1.0, 0.1, seed, (0.1, 0.01), 0.2, 1, 0, (), None, ("frames",))


def test_feeding_needs_an_empty_keep_and_reopening_a_full_one(tmp_path: Path) -> None:
    cases = [case(0), case(1)]
    assert check_keep(tmp_path, cases, reopen=False) is None
    assert "no kept log" in (check_keep(tmp_path, cases, reopen=True) or "")
    for c in cases:
        for f in c.fractions:
            log_folder(tmp_path, c.hours, c.seed, f).mkdir(parents=True)
    assert check_keep(tmp_path, cases, reopen=False) is None  # empty folders hold no log
    (log_folder(tmp_path, 1.0, 1, 0.01) / "memory.svxl").write_bytes(b"x")
    assert "already holds a log" in (check_keep(tmp_path, cases, reopen=False) or "")
    assert "no kept log" in (check_keep(tmp_path, cases, reopen=True) or "")
    for c in cases:
        for f in c.fractions:
            (log_folder(tmp_path, c.hours, c.seed, f) / "memory.svxl").write_bytes(b"x")
    assert check_keep(tmp_path, cases, reopen=True) is None
