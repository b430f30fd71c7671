"""training/train_default.sh's TRAIN_PROJECTOR=false, run for real: a continuation of the shipped
delta trains a few CPU steps (QUICK=1) and exports a delta whose projector is the shipped one's,
tensor for tensor, while its language-model adapters moved -- the recipe the CPU arms found
keeps the shipped model's numbers (docs/results.md, "What the candidates after run 8 found",
item 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.default_model import group_of

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "streamvxl" / "weights" / "streamvxl-tiny.safetensors"


@pytest.mark.slow
def test_a_held_projector_leaves_the_export_with_the_start_projector(tmp_path: Path) -> None:
    if not SHIPPED.is_file():
        pytest.skip("the shipped delta is not in this checkout")
    work = tmp_path / "held"
    env = {**os.environ, "QUICK": "1", "PYTHON": sys.executable, "CONTINUE": str(SHIPPED),
           "TRAIN_PROJECTOR": "false", "LR": "1e-3", "WARMUP": "1", "STEP_S": "60",
           "EVAL_PARTS": "", "OMP_NUM_THREADS": "2", "OPEN_TAIL": "0.5"}
    done = subprocess.run(["bash", "training/train_default.sh", str(work), "1"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    log = (work / "log").read_text()
    assert done.returncode == 0, log[-3000:]
    config = json.loads((work / "run" / "config.json").read_text())
    assert config["train_projector"] is False
    assert config["open_tail_share"] == 0.5  # OPEN_TAIL reaches the recipe (live questions)

    start, export = load_file(str(SHIPPED)), load_file(str(work / "streamvxl-tiny.safetensors"))
    projector = sorted(k for k in start if group_of(k) == "projector")
    assert projector and projector == sorted(k for k in export if group_of(k) == "projector")
    for name in projector:
        assert torch.equal(start[name], export[name]), name
    # the steps did train: some of the language model's adapters are no longer the start's
    llm = [k for k in start if group_of(k) == "llm" and k in export]
    assert llm
    assert any(not torch.equal(start[k], export[k]) for k in llm)
