"""training/train_binding.sh, run for real on the shipped delta (QUICK=1, a few CPU steps): the
raw run trains on uncompressed memories of binding stills only, the compress run starts from
the raw run's export at the compressed ratios, the export keeps the start's tower and projector
tensor for tensor while its language-model adapters moved, and a call stopped by MAX_MINUTES
resumes instead of going on from a half-trained start, at 64 tokens a frame too (docs/results.md,
"What the candidates after run 8 found", items 10-11); the raw run takes its own stills (RAW_MIX)
and can stop alone (STOP_AFTER=raw) for the compress run to be sized afterwards; TRAIN_PROJECTOR
trains the projector and still holds the tower."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from streamvxl.model.default import read_delta_metadata
from training.default_model import group_of

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "streamvxl" / "weights" / "streamvxl-tiny.safetensors"


def _run(work: Path, **extra: str) -> str:
    env = {**os.environ, "QUICK": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "2",
           **extra}
    done = subprocess.run(["bash", "training/train_binding.sh", str(work), str(SHIPPED)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = (work / "log").read_text()
    assert done.returncode == 0, log[-3000:]
    return log


@pytest.mark.slow
def test_binding_runs_raw_then_compressed_and_holds_the_tower(tmp_path: Path) -> None:
    if not SHIPPED.is_file():
        pytest.skip("the shipped delta is not in this checkout")
    work = tmp_path / "bind"
    raw_mix = {"video": 0, "image": 1, "multi_image": 0}
    mix = {"video": 0, "image": 0.4, "multi_image": 0, "reading": 0.3, "exist_stills": 0.3}
    both = {"RAW_MIX": json.dumps(raw_mix), "MIX": json.dumps(mix)}
    # the raw run alone first (STOP_AFTER=raw), then the same WORK goes on to compress
    log = _run(work, STOP_AFTER="raw", **both)
    assert "stopped after the raw run" in log
    assert (work / "raw.safetensors").is_file() and not (work / "compress").exists()
    assert not (work / "BIND_DONE").exists()
    _run(work, **both)
    assert (work / "BIND_DONE").is_file()

    raw = json.loads((work / "raw" / "config.json").read_text())
    compress = json.loads((work / "compress" / "config.json").read_text())
    assert raw["uncompressed_share"] == 1.0 and compress["uncompressed_share"] == 0.15
    assert compress["lora_init"] == str(work / "raw.safetensors")
    assert compress["seed"] == raw["seed"] + 2  # fresh stills, not the raw run's again
    # the raw run on binding stills alone (RAW_MIX), the compress run on MIX's stills
    assert {k: raw["mix"][k] for k in raw_mix} == raw_mix and raw["mix"].get("reading", 0) == 0
    assert {k: compress["mix"][k] for k in mix} == mix
    for cfg in (raw, compress):
        assert cfg["world"] == {"min_objects": 2, "max_objects": 3, "sign_prob": 0.0}
        assert cfg["train_projector"] is False and cfg["train_vision"] is False
    assert [s["ratios"] for s in compress["stages"]] == [[8, 12, 16]]
    for run in ("raw", "compress"):  # each step once: the second call did not train raw again
        steps = [json.loads(line)["step"] for line in
                 (work / run / "metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2], run

    start = load_file(str(SHIPPED))
    export = load_file(str(work / "binding.safetensors"))
    held = sorted(k for k in start if group_of(k) in ("projector", "vision"))
    assert held and held == sorted(k for k in export if group_of(k) in ("projector", "vision"))
    for name in held:
        assert torch.equal(start[name].float(), export[name].float()), name
    llm = [k for k in start if group_of(k) == "llm" and k in export]
    assert llm and any(not torch.equal(start[k], export[k]) for k in llm)


@pytest.mark.slow
def test_a_raw_run_stopped_early_resumes_before_anything_compresses(tmp_path: Path) -> None:
    if not SHIPPED.is_file():
        pytest.skip("the shipped delta is not in this checkout")
    work = tmp_path / "bind"
    # a call with no time to train: the raw run stops at its first step's end, with a checkpoint
    # (64 tokens a frame here, as the next run may train: the finer pool through the recipe)
    log = _run(work, RAW_STEPS="3", COMPRESS_STEPS="1", MAX_MINUTES="0.0001", POOL_STRIDE="1")
    assert "raw stopped early" in log
    assert not (work / "raw.safetensors").exists() and not (work / "compress").exists()
    assert not (work / "BIND_DONE").exists()
    log = _run(work, RAW_STEPS="3", COMPRESS_STEPS="1", POOL_STRIDE="1")
    assert "resume: true" in log.split("raw stopped early")[1]
    steps = [json.loads(line)["step"] for line in
             (work / "raw" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # each step once: the second call took up where the first stopped
    assert (work / "BIND_DONE").is_file()
    assert read_delta_metadata(work / "binding.safetensors")["visual"]["pool_stride"] == 1


@pytest.mark.slow
def test_raw_steps_zero_compresses_from_the_delta_with_the_given_stills(tmp_path: Path) -> None:
    if not SHIPPED.is_file():
        pytest.skip("the shipped delta is not in this checkout")
    work = tmp_path / "bind"
    mix = {"video": 0, "image": 0.4, "multi_image": 0, "reading": 0.3, "exist_stills": 0.3}
    world = {"min_objects": 2, "max_objects": 3, "sign_prob": 0.0, "number_prob": 0.8}
    # the projector trained too (TRAIN_PROJECTOR), as under a tower put in by swap_tower
    _run(work, RAW_STEPS="0", COMPRESS_STEPS="2", UNCOMPRESSED="0.3", MIX=json.dumps(mix),
         WORLD=json.dumps(world), TRAIN_PROJECTOR="true")
    assert (work / "BIND_DONE").is_file()
    assert not (work / "raw").exists() and not (work / "raw.safetensors").exists()
    compress = json.loads((work / "compress" / "config.json").read_text())
    assert compress["lora_init"] == str(SHIPPED)  # the delta itself, no raw run before it
    assert compress["uncompressed_share"] == 0.3
    assert compress["world"] == world
    assert {k: compress["mix"][k] for k in mix} == mix
    assert compress["train_projector"] is True and compress["train_vision"] is False
    start = load_file(str(SHIPPED))
    export = load_file(str(work / "binding.safetensors"))
    projector = [k for k in start if group_of(k) == "projector"]
    assert projector and any(not torch.equal(start[k].float(), export[k].float())
                             for k in projector)
    for k in (k for k in start if group_of(k) == "vision"):
        assert torch.equal(start[k].float(), export[k].float()), k


@pytest.mark.slow
def test_an_unknown_stop_after_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "QUICK": "1", "PYTHON": sys.executable, "STOP_AFTER": "compress"}
    done = subprocess.run(["bash", "training/train_binding.sh", str(tmp_path / "w"), str(SHIPPED)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "only raw" in (tmp_path / "w" / "log").read_text()
