"""Vision pre-training: its labels are the world's truth, and a short run learns from them.

- `patch_labels` marks exactly the patches that hold an object colour or ink.
- `frame_content` lists the objects and sign characters visible on a frame, per the episode.
- A short CPU run beats the untrained tower on held-out frames (counts).
- The tower it writes loads into streamvxl-tiny's build (`build_default_model(tower_state=)`).
"""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file

from training.vision_pretrain import (
    CHARS,
    COLOUR_NAMES,
    COMBOS,
    FrameBatches,
    PretrainConfig,
    frame_content,
    patch_labels,
    pretrain,
    save_tower,
)
from training.world import WorldConfig, sample_episode
from training.world.scene import COLOURS, INK


def test_patch_labels_mark_exactly_the_painted_patches() -> None:
    frames = np.full((2, 16, 16, 3), 120, dtype=np.uint8)  # muted grey: no label
    frames[0, 8:10, 0:3] = COLOURS["red"]  # patch (1, 0) of a 2x2 grid of 8-px patches
    frames[0, 7, 9] = COLOURS["cyan"]  # one pixel in patch (0, 1)
    frames[1, 15, 15] = INK  # patch (1, 1)
    colours, ink = patch_labels(frames, patch=8)
    assert colours.shape == (2, 4, len(COLOUR_NAMES)) and ink.shape == (2, 4)
    want = np.zeros_like(colours)
    want[0, 2, COLOUR_NAMES.index("red")] = True
    want[0, 1, COLOUR_NAMES.index("cyan")] = True
    assert np.array_equal(colours, want)
    assert ink.tolist() == [[False] * 4, [False, False, False, True]]


def test_frame_content_follows_the_episode() -> None:
    rng = np.random.default_rng(3)
    world = WorldConfig(num_frames=24, height=64, width=64, sign_prob=1.0, max_objects=3)
    episode = sample_episode(rng, world)
    assert episode.signs
    for t in range(episode.num_frames):
        combos, count, chars = frame_content(episode, t)
        visible = {o.combo for o in episode.objects if o.visible(t)}
        assert {COMBOS[i] for i in np.flatnonzero(combos)} == visible
        assert count == len(visible)
        text = {ch for s in episode.signs if s.visible(t) for ch in s.text.upper()}
        assert {CHARS[i] for i in np.flatnonzero(chars)} == text - {" "}


def test_a_short_run_learns_and_its_tower_loads(tmp_path) -> None:
    torch.set_num_threads(1)
    cfg = PretrainConfig(steps=60, batch=32, lr=1e-3, warmup_steps=5, eval_frames=128,
                         log_every=60, device="cpu")
    tower, history = pretrain(cfg)
    before, after = history[0], history[-1]
    assert before["step"] == 0 and after["step"] == 60
    assert after["count_acc"] > before["count_acc"] + 0.1, history
    path = save_tower(tower, tmp_path / "tower.safetensors", {"held_out": after})
    state = load_file(str(path))
    assert state.keys() == tower.state_dict().keys()
    from streamvxl.model.vision import VisionTower
    from training.default_model import tiny_vision_config

    fresh = VisionTower(tiny_vision_config(), -2)
    fresh.load_state_dict(state)  # the shape streamvxl-tiny builds
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(fresh(x)[0], tower(x)[0])


def test_worker_processes_render_the_same_batches() -> None:
    from training.prefetch import Prefetcher

    batches = FrameBatches(WorldConfig(height=64, width=64, sign_prob=0.5), batch=12,
                           per_episode=4, seed=3)
    with Prefetcher(batches, 2, lambda s: (range(s, s + 1), ()) if s <= 3 else None) as pool:
        for step in (1, 2, 3):
            (pixels, labels), = pool.get(step)
            here_pixels, here_labels = batches.example(step)
            assert np.array_equal(pixels, here_pixels)
            for a, b in zip(vars(labels).values(), vars(here_labels).values(), strict=True):
                assert torch.equal(a, b)
    assert not np.array_equal(batches.example(1)[0], batches.example(2)[0])
