"""FSDP2 parity: 2 ranks (gloo, CPU) train exactly as 1 rank with twice the accumulation.

Rank r of 2 with ``batch=1`` takes example slot r of each step; 1 rank with ``batch=2`` takes
slots 0 and 1 -- the same examples, the same global batch. The per-step global loss (token mean
over the global batch) must agree to float32 rounding, through a curriculum stage change and a
checkpoint/resume of the 2-rank run in the middle (FSDP state gathered, saved without pickle,
loaded and re-sharded).

Run as a script under ``torchrun`` this file is the 2-rank worker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.parallel import close, init_distributed
from training.recipe import RecipeConfig, Stage, config_from_dict, train

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6
INTERRUPT = 3


def _config(output_dir: Path, batch: int, **kw) -> RecipeConfig:
    return config_from_dict({
        "model": "tiny-random", "device": "cpu", "output_dir": str(output_dir), "seed": 3,
        "stages": [Stage(3, (2, 4)), Stage(3, (8, 12, 16))], "lr": 3e-3, "warmup_steps": 0,
        "grad_clip": 1.0, "batch": batch, "frames": 12, "questions": 2,
        "mix": {"video": 0.6, "image": 0.2, "multi_image": 0.2,
                "video_tasks": ["attribute", "count", "order"]},
        "boundary": {"window": 1, "min_frames": 2, "max_frames": 6, "threshold": 0.0},
        "window": 16, "log_every": 1, **kw})


def _losses(output_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    return [r["loss"] for r in rows]


def _worker(output_dir: Path) -> None:
    torch.set_num_threads(1)
    # interrupted after INTERRUPT steps, then resumed in the same processes
    train(_config(output_dir, batch=1, max_steps=INTERRUPT))
    train(_config(output_dir, batch=1, resume=True))
    close(init_distributed("cpu"))


@pytest.mark.slow
def test_two_ranks_match_one_rank_with_accumulation(tmp_path: Path) -> None:
    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun not installed next to the interpreter")
    two = tmp_path / "two_ranks"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
         __file__, str(two)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    # the 1-rank reference runs meanwhile
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = tmp_path / "one_rank"
        train(_config(one, batch=2))
    finally:
        torch.set_num_threads(threads)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-4000:]
    ref, got = _losses(one), _losses(two)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=0, atol=1e-5)
    # the resumed 2-rank run re-sharded the checkpoint it wrote at the interruption
    trainer = json.loads((two / f"step_{STEPS:07d}" / "trainer.json").read_text())
    assert trainer["world_size"] == 2 and trainer["step"] == STEPS


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
