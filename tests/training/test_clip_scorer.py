"""The world CLIP's recipe: what a text names is read back from it, labels follow the episode's
ground truth, and a run writes weights the product loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamvxl.memory import clip_scorer
from streamvxl.world.scene import WorldConfig, sample_episode
from training.clip_scorer import SIGN, batch, episode_texts, main, named_in, shows

pytest.importorskip("open_clip")


def test_what_a_text_names() -> None:
    assert named_in("When did the red star appear?") == [("star", "red")]
    assert named_in("How many crosses were there?") == [("cross", None)]
    assert named_in("the blue one and the circle") == [(None, "blue"), ("circle", None)]
    assert named_in("What happened after the cut?") == []
    assert shows(("star", None), "star", "red") and not shows(("star", "blue"), "star", "red")


def test_labels_follow_what_each_frame_shows() -> None:
    rng = np.random.default_rng(3)
    frames, texts, labels = batch(rng, 6, 8, 8, "train", WorldConfig(sign_prob=0.5))
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


def test_a_run_writes_weights_the_product_loads(tmp_path, monkeypatch) -> None:
    out = tmp_path / "world-clip.safetensors"
    assert main(["--steps", "2", "--episodes", "2", "--frames", "4", "--texts", "4",
                 "--eval-every", "2", "--threads", "1", "--out", str(out)]) == 0
    monkeypatch.setattr(clip_scorer.resources, "files", lambda _: tmp_path / "pkg")
    (tmp_path / "pkg" / "weights").mkdir(parents=True)
    (tmp_path / "pkg" / "weights" / clip_scorer.WORLD_CLIP_FILE).write_bytes(out.read_bytes())
    scorer = clip_scorer.ClipScorer.default()
    assert scorer.embed_text(["a red star"]).shape == (1, 128)
    (tmp_path / "pkg" / "weights" / clip_scorer.WORLD_CLIP_FILE).write_bytes(b"torn")
    with pytest.raises(clip_scorer.CheckpointError, match="reinstall"):
        clip_scorer.ClipScorer.default()
