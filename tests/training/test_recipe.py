"""The curriculum recipe on the tiny random model: it learns, and it resumes exactly.

- Smoke run: 200 steps over two curriculum stages on fresh synthetic examples; the loss falls
  clearly (the mean of the last 10 steps < 0.7 x the mean of the first 10).
- Resume: a run interrupted after the stage change and resumed from its checkpoint gives the
  same per-step losses, bit for bit, and the same final weights as an uninterrupted run.
- Checkpoints hold no pickle: safetensors and JSON only.
- Flags and JSON config files make the same `RecipeConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.batch import TaskMix
from training.recipe import parse_args, train
from training.recipe_config import RecipeConfig, Stage, config_from_dict


def tiny_run(output_dir: Path, **kw) -> RecipeConfig:
    base = {
        "model": "tiny-random", "device": "cpu", "output_dir": str(output_dir), "seed": 0,
        "stages": [[100, [2, 4]], [100, [8, 12, 16]]], "lr": 2e-3, "warmup_steps": 10,
        "batch": 1, "questions": 2, "frames": 12,
        "mix": {"video_tasks": ["attribute", "count"]},
        "boundary": {"window": 1, "min_frames": 2, "max_frames": 6}, "window": 16,
        "log_every": 50,
    }
    return config_from_dict({**base, **kw})


@pytest.mark.slow
def test_smoke_run_loss_falls(tmp_path: Path) -> None:
    rows = train(tiny_run(tmp_path))
    losses = [r["loss"] for r in rows]
    assert len(losses) == 200
    assert [r["stage"] for r in rows[99:101]] == [0, 1]  # the curriculum moved on
    assert rows[0]["ratios"] == [2, 4] and rows[-1]["ratios"] == [8, 12, 16]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, f"loss {first:.3f} -> {last:.3f}"
    assert all(r["intervals"] >= 1 and r["windows"] >= r["intervals"] for r in rows)
    assert (tmp_path / "step_0000200" / "model" / "model.safetensors").is_file()


def _losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    stages = [[4, [2, 4]], [4, [8, 16]]]
    straight = tmp_path / "straight"
    train(tiny_run(straight, stages=stages, warmup_steps=2))
    broken = tmp_path / "broken"
    first = train(tiny_run(broken, stages=stages, warmup_steps=2, max_steps=5))
    assert [r["step"] for r in first] == [1, 2, 3, 4, 5]
    second = train(tiny_run(broken, stages=stages, warmup_steps=2, resume=True))
    assert [r["step"] for r in second] == [6, 7, 8]
    assert _losses(broken) == _losses(straight)  # exactly, step for step
    a = load_file(str(straight / "step_0000008" / "model" / "model.safetensors"))
    b = load_file(str(broken / "step_0000008" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    lr = [json.loads(line)["lr"] for line in (broken / "metrics.jsonl").read_text().splitlines()]
    assert lr == [json.loads(line)["lr"]
                  for line in (straight / "metrics.jsonl").read_text().splitlines()]


def test_an_uncompressed_run_resumes_with_its_vst_parameters_never_stepped(tmp_path: Path) -> None:
    """Every memory uncompressed (training/train_binding.sh's first run): no gradient reaches
    the VST parameters, so the optimizer has no state for them to save; the resumed run still
    gives the uninterrupted run's losses and weights exactly, the VST ones untouched."""
    kw = {"stages": [[6, [8, 16]]], "warmup_steps": 2, "uncompressed_share": 1.0}
    straight = tmp_path / "straight"
    train(tiny_run(straight, **kw))
    broken = tmp_path / "broken"
    train(tiny_run(broken, max_steps=3, **kw))
    unstepped = load_file(str(broken / "step_0000003" / "optimizer.safetensors"))
    assert not any("beacon_embed_tokens" in k for k in unstepped)  # what a resume must tolerate
    train(tiny_run(broken, resume=True, **kw))
    assert _losses(broken) == _losses(straight)
    a = load_file(str(straight / "step_0000006" / "model" / "model.safetensors"))
    b = load_file(str(broken / "step_0000006" / "model" / "model.safetensors"))
    start = load_file(str(broken / "step_0000003" / "model" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    vst = [k for k in a if "beacon_embed_tokens" in k]
    assert vst and all(torch.equal(a[k], start[k]) for k in vst)


def test_a_checkpoint_of_another_configuration_is_refused_on_resume(tmp_path: Path) -> None:
    """Optimizer state for a parameter this run does not train: a checkpoint of another run
    configuration, refused by name rather than loaded into the wrong places."""
    out = tmp_path / "run"
    train(tiny_run(out, stages=[[2, [2, 4]]], warmup_steps=1))
    with pytest.raises(ValueError, match="does not train"):
        train(tiny_run(out, stages=[[4, [2, 4]]], warmup_steps=1, resume=True,
                       train_vision=False))


def test_a_resumed_run_follows_its_curriculum_sized_again(tmp_path: Path) -> None:
    """A call that resumes with fewer steps left (`training.curriculum fit`) anneals within
    them: each resumed step's rate is the cosine of the new total, not the saved schedule's."""
    from training.curriculum import fit
    from training.recipe import lr_factor

    stages = [[4, [2, 4]], [8, [8, 16]]]
    first = train(tiny_run(tmp_path, stages=stages, warmup_steps=2, max_steps=5))
    resized = fit(stages, done=5, steps_left=3)
    assert resized == [[4, [2, 4]], [4, [8, 16]]]
    cfg = tiny_run(tmp_path, stages=resized, warmup_steps=2, resume=True)
    second = train(cfg)
    assert [r["step"] for r in second] == [6, 7, 8]
    assert first[-1]["lr"] == pytest.approx(cfg.lr * lr_factor(4, tiny_run(
        tmp_path, stages=stages, warmup_steps=2)))  # the first call's own schedule
    for row in second:  # a row's rate is the one its step ran at: after step - 1 steps
        assert row["lr"] == pytest.approx(cfg.lr * lr_factor(row["step"] - 1, cfg))
    assert second[-1]["lr"] < first[-1]["lr"] * 0.5  # bent down to end at step 8, not 12


def test_metrics_hold_each_step_once(tmp_path: Path) -> None:
    """A fresh run in a folder an earlier run wrote to replaces that run's rows; a run resumed
    from its checkpoint drops the rows a killed call logged after it (the last cut mid-line)
    and logs those steps again -- `training.curriculum` measures step times from this file."""
    stages = [[4, [2, 4]]]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in (1, 2, 3)))
    train(tiny_run(tmp_path, stages=stages, warmup_steps=1, max_steps=2))
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] != 9.0 for r in rows)

    with metrics.open("a") as fh:  # a call killed after its checkpoint at step 2
        fh.write(json.dumps({"step": 3, "loss": 9.0}) + "\n" + '{"step": 4, "lo')
    train(tiny_run(tmp_path, stages=stages, warmup_steps=1, resume=True))
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["loss"] != 9.0 for r in rows)


def test_resume_without_checkpoint_starts_afresh(tmp_path: Path) -> None:
    rows = train(tiny_run(tmp_path, stages=[[2, [2]]], resume=True))
    assert [r["step"] for r in rows] == [1, 2]


def test_checkpoint_is_pickle_free(tmp_path: Path) -> None:
    train(tiny_run(tmp_path, stages=[[2, [2, 4]]]))
    folder = tmp_path / "step_0000002"
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".json", ".safetensors", ".jinja", ".txt"}
    for p in files:
        assert not p.read_bytes()[:2].startswith(b"\x80"), f"{p} looks like a pickle"
    trainer = json.loads((folder / "trainer.json").read_text())
    assert trainer["step"] == 2 and trainer["scheduler"]["last_epoch"] == 2
    optim = load_file(str(folder / "optimizer.safetensors"))
    assert any(k.endswith("/exp_avg") and "beacon_k_proj" in k for k in optim)


def test_flags_and_json_config_agree(tmp_path: Path) -> None:
    spec = {"stages": [[3, [2, 4]], [5, [8, 12, 16]]], "lr": 1e-3,
            "mix": {"video": 1.0, "image": 0.0, "multi_image": 0.0,
                    "video_tasks": ["count"]},
            "boundary": {"window": 2, "min_frames": 3, "max_frames": 9},
            "output_dir": "runs/x", "resume": True, "max_minutes": 1.5}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(spec))
    from_file = parse_args(["--config", str(path)])
    from_flags = parse_args(["--stages", json.dumps(spec["stages"]), "--lr", "1e-3",
                             "--mix", json.dumps(spec["mix"]),
                             "--boundary", json.dumps(spec["boundary"]),
                             "--output-dir", "runs/x", "--resume", "--max-minutes", "1.5"])
    assert from_file == from_flags
    assert from_file.stages == (Stage(3, (2, 4)), Stage(5, (8, 12, 16)))
    assert from_file.mix == TaskMix(1.0, 0.0, 0.0, ("count",))
    assert from_file.stage_at(3) == (0, from_file.stages[0])
    assert from_file.stage_at(4) == (1, from_file.stages[1])
    assert parse_args(["--config", str(path), "--lr", "0.5"]).lr == 0.5  # flags win
    # a config round-trips through its JSON form (what checkpoints store)
    assert config_from_dict(json.loads(json.dumps(from_file.to_dict()))) == from_file


def test_random_shape_is_the_same_model_for_every_process(tmp_path: Path) -> None:
    from training.recipe import load_model

    cfg = tiny_run(tmp_path, model="random:tiny", seed=5)
    a, _, pre = load_model(cfg, None)
    b, _, _ = load_model(cfg, None)
    c, _, _ = load_model(tiny_run(tmp_path, model="random:tiny", seed=6), None)
    assert pre.image_size == a.image_size == 56
    for (name, p), q, r in zip(a.state_dict().items(), b.state_dict().values(),
                               c.state_dict().values(), strict=True):
        assert torch.equal(p, q), name  # each rank builds the same weights before sharding
        if p.numel() > 16 and "norm" not in name:
            assert not torch.equal(p, r), name
    with pytest.raises(ValueError, match="unknown model shape 'huge'; known: videoxl-7b, tiny"):
        load_model(tiny_run(tmp_path, model="random:huge"), None)


def test_no_checkpoints_writes_none(tmp_path: Path) -> None:
    train(tiny_run(tmp_path, stages=[[3, [2]]], checkpoints=False))
    assert not list(tmp_path.glob("step_*"))
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_world_of_wide_frames_trains_on_padded_frames(tmp_path: Path, monkeypatch) -> None:
    """``fit`` reaches every training frame's preprocessing, and the run records it (the
    evaluation of its checkpoints reads it back)."""
    from streamvxl.preprocess import Preprocessor
    from training.evaluate import training_settings

    fits: list[tuple[str, tuple[int, ...]]] = []
    one = Preprocessor._one
    monkeypatch.setattr(Preprocessor, "_one", lambda self, frame: fits.append(
        (self.fit, tuple(frame.shape[:2]))) or one(self, frame))
    cfg = tiny_run(tmp_path, stages=[[2, [2]]], fit="pad",
                   world={"max_objects": 2, "sizes": [[40, 72], [40, 40]]})
    train(cfg)
    assert fits and {f for f, _ in fits} == {"pad"}
    assert {size for _, size in fits} <= {(40, 72), (40, 40)}
    step = sorted(tmp_path.glob("step_*"))[-1]
    assert training_settings(step / "model")["fit"] == "pad"
    # what the export records, and the evaluations read back
    from training import niah
    from training.default_model import trained_preprocess_of
    from training.evaluate import load_model_folder

    assert trained_preprocess_of(step / "model") == {"fit": "pad"}
    assert load_model_folder(step / "model", device="cpu")[2].fit == "pad"
    # a haystack is one camera: the run's sizes are left out of it, not refused
    niah.main(["--model", str(step / "model"), "--frames", "16", "--depths", "0.5",
               "--ratio", "2", "--device", "cpu", "--max-new-tokens", "2",
               "--out", str(tmp_path / "niah")])
    assert (tmp_path / "niah" / "niah.json").is_file()
