"""The curriculum's size: minutes at a step time, and the rest of a resumed run fitted into the
minutes a call has left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.curriculum import fit, main, measured_step_s, size, steps_done


def test_size_splits_minutes_into_reading_small_and_large_ratios() -> None:
    assert size(11, 13, 0.15) == [[8, [2, 4]], [42, [8, 12, 16]]]  # 50 steps
    mix = {"reading": 0.5}
    assert size(10, 10, 0.5, reading_steps=20, reading_mix=mix) == \
        [[20, [2, 4], mix], [20, [2, 4]], [20, [8, 12, 16]]]
    assert sum(s[0] for s in size(0.1, 60, 0.35)) == 4  # never fewer than four steps
    with pytest.raises(ValueError, match="step_s"):
        size(10, 0, 0.1)


def test_fit_keeps_the_steps_taken_and_shares_the_rest_out() -> None:
    stages = [[8, [2, 4]], [42, [8, 12, 16]]]
    assert fit(stages, done=27, steps_left=14) == [[8, [2, 4]], [41 - 8, [8, 12, 16]]]
    # inside the first stage: both stages shrink in proportion (4 of 46 left in the first)
    assert fit(stages, done=4, steps_left=23) == [[4 + 2, [2, 4]], [21, [8, 12, 16]]]
    # more time than planned stretches the rest alike
    assert fit(stages, done=27, steps_left=46) == [[8, [2, 4]], [19 + 46, [8, 12, 16]]]
    # a stage that had not begun and gets no step is dropped; the last keeps one
    three = [[2, [2]], [10, [4]], [10, [8]]]
    assert fit(three, done=2, steps_left=1) == [[2, [2]], [1, [8]]]
    assert fit(stages, done=50, steps_left=9) == stages  # an ended curriculum stays ended
    with pytest.raises(ValueError, match="steps_left"):
        fit(stages, done=3, steps_left=0)


def test_fit_from_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": i + 1, "step_s": 45.0 if i < 9 else 30.0} for i in range(27)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "latest.json").write_text(json.dumps({"checkpoint": "step_0000027", "step": 27}))
    assert measured_step_s(run / "metrics.jsonl") == 30.0  # past the slow first steps
    main(["step-s", str(run / "metrics.jsonl")])
    assert capsys.readouterr().out.strip() == "30.0"
    assert steps_done(run) == 27 and steps_done(tmp_path) == 0
    main(["steps-done", str(run)])  # what train_binding.sh asks before it moves on
    main(["steps-done", str(tmp_path)])
    assert capsys.readouterr().out.split() == ["27", "0"]
    main(["fit", "--stages", "[[8, [2, 4]], [42, [8, 12, 16]]]", "--run", str(run),
          "--minutes", "7"])
    out = capsys.readouterr()
    assert json.loads(out.out) == [[8, [2, 4]], [33, [8, 12, 16]]]
    assert "27 steps taken at 30.0 s a step; 14 more" in out.err


def test_size_gives_a_reading_stage_its_mix_on_both_ratio_stages() -> None:
    """`train_reading.sh`: stills only, half the steps at ratios 2, 4, never fewer than two."""
    stills = {"video": 0, "image": 0, "multi_image": 0, "reading": 1}
    assert size(7, 1.4, 0.5, mix=stills, min_steps=2) == \
        [[150, [2, 4], stills], [150, [8, 12, 16], stills]]
    assert size(0.01, 1.4, 0.5, mix=stills, min_steps=2) == \
        [[1, [2, 4], stills], [1, [8, 12, 16], stills]]
    assert size(1, 1, 1.0)[-1][0] == 1  # a share of 1 still leaves the large ratios a step
