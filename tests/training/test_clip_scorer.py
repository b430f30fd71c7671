"""The world CLIP's recipe: what a text names is read back from it, labels follow the episode's
ground truth, and a run writes weights the product loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamvxl.memory import clip_scorer
from streamvxl.world.scene import WorldConfig, sample_episode
from training.clip_scorer import SIGN, batch, episode_texts, looks_alike, main, named_in, shows

pytest.importorskip("open_clip")


def test_what_a_text_names() -> None:
    assert named_in("When did the red star appear?") == [("star", "red")]
    assert named_in("How many crosses were there?") == [("cross", None)]
    assert named_in("the blue one and the circle") == [(None, "blue"), ("circle", None)]
    assert named_in("What happened after the cut?") == []
    assert shows(("star", None), "star", "red") and not shows(("star", "blue"), "star", "red")
    assert looks_alike(("diamond", "yellow"), "circle", "yellow")
    assert looks_alike(("diamond", "yellow"), "diamond", "red")
    assert not looks_alike(("diamond", "yellow"), "diamond", "yellow")  # the thing itself
    assert not looks_alike(("diamond", "yellow"), "circle", "red")
    assert not looks_alike((None, "yellow"), "circle", "yellow")  # any yellow thing is it
    assert not looks_alike((SIGN, None), "circle", "yellow")


def test_labels_follow_what_each_frame_shows() -> None:
    rng = np.random.default_rng(3)
    frames, texts, labels, alike = batch(rng, 6, 8, 8, "train", WorldConfig(sign_prob=0.5))
    assert frames.shape[0] == labels.shape[0] == 48 and labels.shape[1] == len(texts.texts)
    assert 0 < labels.mean() < 0.5
    # every label is 1 exactly when some named thing is on that frame (recomputed here from
    # the same draw: the episodes come first in the generator, texts after each)
    again = np.random.default_rng(3)
    seen = []
    for _ in range(6):
        ep = sample_episode(again, WorldConfig(sign_prob=0.5), split="train")
        picks = again.choice(ep.num_frames, size=8, replace=False)
        for t in picks.tolist():
            seen.append({(o.shape, o.colour) for o in ep.objects if o.t_in <= t < o.t_out}
                        | ({(SIGN, "")} if any(s.visible(t) for s in ep.signs) else set()))
        episode_texts(ep, again, 8, "train")
    want = torch.tensor([[float(any(shows(n, s, c) for n in named for s, c in frame))
                          for named in texts.named] for frame in seen])
    assert torch.equal(labels, want)
    # a look-alike: not the thing, but something sharing one of its shape and colour
    similar = torch.tensor([[float(not any(shows(n, s, c) for n in named for s, c in frame)
                                   and any(n[0] not in (None, SIGN) and n[1] is not None
                                           and (n[0] == s) + (n[1] == c) == 1
                                           for n in named for s, c in frame))
                             for named in texts.named] for frame in seen])
    assert torch.equal(alike, similar) and alike.any()


def test_a_run_writes_weights_the_product_loads(tmp_path, monkeypatch) -> None:
    out = tmp_path / "world-clip.safetensors"
    assert main(["--steps", "2", "--episodes", "2", "--frames", "4", "--texts", "4",
                 "--eval-every", "2", "--threads", "1", "--lookalike-weight", "4",
                 "--out", str(out)]) == 0
    from safetensors import safe_open
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["lookalike_weight"] == "4.0"
    more = tmp_path / "more.safetensors"  # continued from the first run's weights
    assert main(["--steps", "1", "--episodes", "2", "--frames", "4", "--texts", "4",
                 "--eval-every", "1", "--threads", "1", "--init", str(out),
                 "--out", str(more)]) == 0
    monkeypatch.setattr(clip_scorer.resources, "files", lambda _: tmp_path / "pkg")
    (tmp_path / "pkg" / "weights").mkdir(parents=True)
    (tmp_path / "pkg" / "weights" / clip_scorer.WORLD_CLIP_FILE).write_bytes(out.read_bytes())
    scorer = clip_scorer.ClipScorer.default()
    assert scorer.embed_text(["a red star"]).shape == (1, 128)
    (tmp_path / "pkg" / "weights" / clip_scorer.WORLD_CLIP_FILE).write_bytes(b"torn")
    with pytest.raises(clip_scorer.CheckpointError, match="reinstall"):
        clip_scorer.ClipScorer.default()


def test_lookalike_pairs_weigh_as_asked(tmp_path, monkeypatch) -> None:
    """In a run, a look-alike pair's loss counts ``--lookalike-weight`` times, every other
    pair once (each step's weights held to that step's batch)."""
    from training import clip_scorer as recipe

    drawn, weighed = [], []
    draw, loss = recipe.batch, recipe.sigmoid_loss
    monkeypatch.setattr(recipe, "batch", lambda *a, **k: drawn.append(draw(*a, **k)) or
                        drawn[-1])
    monkeypatch.setattr(recipe, "sigmoid_loss", lambda model, images, ids, labels, weights:
                        weighed.append(weights) or loss(model, images, ids, labels, weights))
    assert main(["--steps", "3", "--episodes", "3", "--frames", "4", "--texts", "6",
                 "--eval-every", "100", "--threads", "1", "--lookalike-weight", "4",
                 "--out", str(tmp_path / "w.safetensors")]) == 0
    assert len(weighed) == 3
    for (_, _, labels, alike), weights in zip(drawn, weighed, strict=False):
        assert torch.equal(weights, torch.where(alike > 0, 4.0, 1.0))
        assert not (alike * labels).any()
    assert any(alike.any() for *_, alike in drawn[:3])

    model = clip_scorer.build_world_clip()  # and the loss is linear in the weights
    ids = clip_scorer.world_tokenizer()(["the red star", "a blue circle"])
    images = torch.randn(3, 3, 64, 64)
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    alike = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    with torch.no_grad():
        plain = loss(model, images, ids, labels)
        heavy = loss(model, images, ids, labels, 1 + 3 * alike)
        only = loss(model, images, ids, labels, alike)
    assert torch.allclose(heavy, plain + 3 * only)


def test_evaluate_scores_the_shipped_weights(caplog) -> None:
    import logging
    with caplog.at_level(logging.INFO, logger="training.clip_scorer"):
        assert main(["--evaluate", "--threads", "1"]) == 0
    line = next(r.getMessage() for r in caplog.records if "precision at 1" in r.getMessage())
    scores = json.loads(line.split("precision at 1: ", 1)[1])
    # the shipped scorer on the fixed evaluation draw (seed 0): 0.98 / 0.97 / 0.97 of 386
    assert scores["held_out"][0] > 0.9 and scores["trained"][0] > 0.9
    assert scores["over_lookalikes"][0] > 0.9 and scores["over_lookalikes"][1] > 100


def test_unloadable_weights_are_refused_by_name(tmp_path) -> None:
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes(b"torn")
    with pytest.raises(SystemExit):
        main(["--evaluate", "--init", str(torn)])
