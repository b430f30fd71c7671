"""training/train_default.sh's tower gate, run for real: a continued run whose pre-trained tower
falls short of VISION_GATE stops with exit 3 and WORK/FAILED before it builds or trains
anything, a gate naming a score the tower has not got with exit 2 and a message that lists the
ones it has; one that passes goes on (here to STOP_AFTER=vision, which needs no base model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "streamvxl" / "weights" / "streamvxl-tiny.safetensors"


def _run(work: Path, gate: dict[str, float], stop_after: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "QUICK": "1", "PYTHON": sys.executable, "CONTINUE": str(SHIPPED),
           "VISION_STEPS": "2", "VISION_GATE": json.dumps(gate), "STOP_AFTER": stop_after,
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", "training/train_default.sh", str(work), "1"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_tower_short_of_the_gate_stops_the_run(tmp_path: Path) -> None:
    if not SHIPPED.is_file():
        pytest.skip("the shipped delta is not in this checkout")
    short = _run(tmp_path / "short", {"sign_read_acc": 2.0, "held_out_shape_acc": 0.0})
    log = (tmp_path / "short" / "log").read_text()
    assert short.returncode == 3, log[-2000:]
    assert (tmp_path / "short" / "FAILED").exists()
    assert "tower short of the gate: {'sign_read_acc'" in log
    assert "held_out_shape_acc" not in log.split("tower short of the gate:")[1].splitlines()[0]
    assert not (tmp_path / "short" / "init").exists()

    # the same tower (WORK's tower is reused), a gate naming a score it does not have
    (tmp_path / "short" / "FAILED").unlink()
    typo = _run(tmp_path / "short", {"sign_read_accuracy": 0.9})
    log = (tmp_path / "short" / "log").read_text()
    assert typo.returncode == 2, log[-2000:]
    assert "VISION_GATE names ['sign_read_accuracy'], which tower.json does not score" in log
    assert (tmp_path / "short" / "FAILED").exists()

    passes = _run(tmp_path / "passes", {"sign_read_acc": 0.0}, stop_after="vision")
    log = (tmp_path / "passes" / "log").read_text()
    assert passes.returncode == 0, log[-2000:]
    assert "tower passes the gate" in log and "stopped after the vision pre-training" in log
    assert not (tmp_path / "passes" / "FAILED").exists()
