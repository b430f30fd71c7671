"""FSDP2 parity: 2 ranks (gloo, CPU) train exactly as 1 rank with twice the accumulation.

Rank r of 2 with ``batch=1`` takes example slot r of each step; 1 rank with ``batch=2`` takes
slots 0 and 1 -- the same examples, the same global batch. The per-step global loss (token mean
over the global batch) must agree to float32 rounding, through a curriculum stage change and a
checkpoint/resume of the 2-rank run in the middle (FSDP state gathered, saved without pickle,
loaded and re-sharded). The decoder layers are sharded one by one (ZeRO-3).

Ranks whose examples fall into different numbers of forward groups (a video and an image on
one, two videos on the other) must still finish: `balance_groups` evens the forwards out,
without which the per-layer collectives would hang.

Run as a script under ``torchrun`` this file is the 2-rank worker.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamvxl.preprocess import Preprocessor
from streamvxl.testing import make_tokenizer
from streamvxl.world import WorldConfig
from training.forward import group_examples
from training.parallel import DistInfo, close, init_distributed
from training.recipe import DataSource, train
from training.recipe_config import RecipeConfig, Stage, config_from_dict

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


# LoRA on every linear of the LLM, vision frozen: sharded layers then hold frozen base weights
# beside trainable adapters
LORA = {"lora_rank": 4, "train_llm": False, "train_vision": False,
        "lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                         "down_proj", "beacon_q_proj", "beacon_k_proj", "beacon_v_proj"]}
# name -> (recipe fields, examples per rank and step); the 1-rank reference takes twice as many
TRAINING = {"full": ({}, 1), "lora": (LORA, 1),
            # two forwards per rank and step, gradients reduce-scattered after each
            "full_reduce_each": ({"reduce_each_micro_batch": True}, 2)}


def _worker(output_dir: Path, mode: str) -> None:
    torch.set_num_threads(1)
    if mode == "unbalanced":
        train(_config(output_dir, batch=2, micro_batch=2))
    else:
        # interrupted after INTERRUPT steps, then resumed in the same processes
        kw, batch = TRAINING[mode]
        train(_config(output_dir, batch=batch, max_steps=INTERRUPT, **kw))
        train(_config(output_dir, batch=batch, resume=True, **kw))
    close(init_distributed("cpu"))


def _torchrun(output_dir: Path, mode: str) -> subprocess.Popen:
    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun not installed next to the interpreter")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
         __file__, str(output_dir), mode], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("training", sorted(TRAINING))
def test_two_ranks_match_one_rank_with_accumulation(tmp_path: Path, training: str) -> None:
    two = tmp_path / "two_ranks"
    proc = _torchrun(two, training)
    # the 1-rank reference runs meanwhile
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = tmp_path / "one_rank"
        kw, batch = TRAINING[training]
        train(_config(one, batch=2 * batch, **kw))
    finally:
        torch.set_num_threads(threads)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-4000:]
    ref, got = _losses(one), _losses(two)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=0, atol=1e-5)
    # the resumed 2-rank run re-sharded the checkpoint it wrote at the interruption
    trainer = json.loads((two / f"step_{STEPS:07d}" / "trainer.json").read_text())
    assert trainer["world_size"] == 2 and trainer["step"] == STEPS


@pytest.mark.slow
def test_ranks_with_different_group_counts_finish(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "unused", batch=2, micro_batch=2)
    world = WorldConfig(num_frames=cfg.frames, height=56, width=56, **cfg.world)
    data = DataSource(cfg, world, make_tokenizer(), Preprocessor(56), 512)
    ranks = [DistInfo(r, 2, r, torch.device("cpu")) for r in range(2)]
    counts = [[len(group_examples(data.step_examples(step, (2, 4), info), 2)) for info in ranks]
              for step in range(1, STEPS + 1)]
    assert any(a != b for a, b in counts), counts  # the run below needs balancing
    out = tmp_path / "unbalanced"
    proc = _torchrun(out, "unbalanced")
    log, _ = proc.communicate(timeout=120)  # a collective mismatch would hang here
    assert proc.returncode == 0, log[-4000:]
    assert all(math.isfinite(x) for x in _losses(out))


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2])
