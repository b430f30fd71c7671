"""`training.compare_runs`: medians after warm-up, speed-up, peaks per rank, loss parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.compare_runs import loss_parity, main, summarise


def _run(folder: Path, ranks: int, losses: list[float], step_s: list[float],
         peaks: list[list[float]] | None = None) -> Path:
    folder.mkdir()
    rows = [{"step": i + 1, "loss": loss, "step_s": s, "tokens_per_s": 1000 / s, "ranks": ranks,
             **({"peak_gib": peaks[i]} if peaks else {})}
            for i, (loss, s) in enumerate(zip(losses, step_s, strict=True))]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_summary_and_parity(tmp_path: Path, capsys) -> None:
    one = _run(tmp_path / "one", 1, [5.0, 4.0, 3.0, 2.0], [9.0, 2.0, 2.2, 1.8])
    two = _run(tmp_path / "two", 2, [5.0, 4.001, 2.998, 2.0], [7.0, 1.0, 1.1, 0.9],
               peaks=[[10.0, 11.0], [12.0, 9.0], [8.0, 8.0], [8.0, 8.0]])
    s1, s2 = summarise(one, skip=1), summarise(two, skip=1)
    assert s1.step_s == 2.0 and s2.step_s == 1.0  # the warm-up step left out
    assert s2.peak_gib == [12.0, 11.0] and s1.peak_gib == []
    diff, rel, n = loss_parity(s2, s1)
    assert n == 4 and diff == pytest.approx(0.002) and rel == pytest.approx(0.002 / 3.0)
    main([str(one), str(two), "--skip", "1", "--markdown", str(tmp_path / "t.md")])
    printed = capsys.readouterr().out
    assert "| two | 2 | 4 | 1.000 | 1,000 | 2.00x | 12.0 / 11.0 |" in printed
    assert "2.00e-03" in printed and (tmp_path / "t.md").read_text().strip() == printed.strip()


def test_a_folder_without_metrics_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="recipe output_dir"):
        summarise(tmp_path, skip=0)
