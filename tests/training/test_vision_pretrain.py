"""Vision pre-training: its labels are the world's truth, and a short run learns from them.

- `patch_labels` marks exactly the patches that hold an object colour or ink.
- `frame_content` lists the objects and sign characters visible on a frame, per the episode.
- A short CPU run beats the untrained tower on held-out frames (counts).
- The tower it writes loads into streamvxl-tiny's build (`build_default_model(tower_state=)`).
- `patch_objects` marks the shapes each patch shows (per `object_map`) and flags held-out
  pairings; `pairing_scores` tells a shape read right on held-out pairings from one read as
  another.
- The reading labels spell every visible sign (by hand and on random frames), and wrong
  readings score below 1; a run can start from an exported delta's tower.
- ``heads_first`` keeps the given tower frozen (no gradient, learning rate 0) while the fresh
  heads learn, then trains it from its own warm-up; ``keep_ink`` holds its features on sign ink
  nearer the given tower's than a run without it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from streamvxl.world import WorldConfig, object_map, sample_episode
from streamvxl.world.scene import COLOURS, HELD_OUT_COMBOS, INK, SHAPES
from training.vision_pretrain import (
    CHARS,
    COLOUR_NAMES,
    COMBOS,
    READ_SLOTS,
    FrameBatches,
    PretrainConfig,
    draw_frames,
    frame_content,
    load_tower_state,
    pairing_scores,
    patch_labels,
    patch_objects,
    pretrain,
    read_text,
    reading_scores,
    save_tower,
)


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


def test_patch_objects_mark_the_shapes_each_patch_shows() -> None:
    rng = np.random.default_rng(5)
    world = WorldConfig(num_frames=24, height=64, width=64, max_objects=3)
    held_out_seen = 0
    for _ in range(6):
        episode = sample_episode(rng, world, split="eval")
        for t in range(0, episode.num_frames, 4):
            owner = object_map(episode, t)
            shapes, held_out = patch_objects(episode, owner, patch=8)  # 8 x 8 patches of 8 px
            owner = owner.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3)
            owner = owner.reshape(64, 64)  # (P, pixels of the patch)
            for p in range(64):
                shown = [episode.objects[k] for k in set(owner[p].tolist()) - {-1}]
                assert set(np.flatnonzero(shapes[p])) == {SHAPES.index(o.shape) for o in shown}
                assert held_out[p] == any(o.combo in HELD_OUT_COMBOS for o in shown)
            held_out_seen += int(held_out.sum())
    assert held_out_seen > 0  # the eval split drew held-out pairings


def test_pairing_scores_tell_a_held_out_shape_read_as_another() -> None:
    _, y = draw_frames(np.random.default_rng(2), WorldConfig(max_objects=3), 48, 8, split="eval")
    assert y.patch_held_out.any() and (~y.patch_held_out & y.patch_shapes.any(-1)).any()
    right = {"patch_shapes": y.patch_shapes.float(), "colours": y.colours.float()}
    row = pairing_scores(right, y)
    assert row["held_out_shape_acc"] == row["trained_shape_acc"] == 1.0
    assert row["held_out_colour_acc"] == row["trained_colour_acc"] == 1.0
    # a reader that names the next shape wherever a held-out pairing shows
    wrong = y.patch_shapes.float().clone()
    wrong[y.patch_held_out] = wrong[y.patch_held_out].roll(1, dims=-1)
    row = pairing_scores({**right, "patch_shapes": wrong}, y)
    assert row["held_out_shape_acc"] < 0.1 and row["trained_shape_acc"] == 1.0


def test_recoloured_objects_keep_their_shape_and_lose_colour_and_pairing() -> None:
    world = WorldConfig(max_objects=3, sign_prob=0.0)
    px, y = draw_frames(np.random.default_rng(4), world, 64, 8, recolour=1.0)
    assert not y.combos.any() and not y.colours.any()  # no object shows a named colour
    palette = np.array([COLOURS[c] for c in COLOUR_NAMES])
    assert not (px[..., None, :] == palette).all(-1).any()
    assert y.patch_shapes.any() and (y.shapes.any(-1) == (y.count > 0)).all()
    assert (y.patch_shapes.any(1) <= y.shapes).all()  # a patch's shape is a visible object's
    with pytest.raises(ValueError, match="recolour"):  # its labels take colours from objects
        PretrainConfig(world={"unnamed_prob": 0.3})


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
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    assert not np.array_equal(batches.example(1)[0], batches.example(2)[0])


def test_reading_labels_spell_each_visible_sign_in_raster_order() -> None:
    """The labels put each glyph centre in its own (cell, column) slot, and `read_text` on
    one-hot logits of them gives back exactly the visible text, on many random frames."""
    world = WorldConfig(height=64, width=64, sign_prob=1.0, max_signs=2)
    pixels, y = draw_frames(np.random.default_rng(5), world, 96, per_episode=8)
    assert y.reading.shape == (96, 16, READ_SLOTS)
    assert sum(bool(t) for t in y.text) >= 10
    one_hot = torch.nn.functional.one_hot(y.reading, 1 + len(CHARS)).float()
    assert read_text(one_hot) == list(y.text)
    scores = reading_scores(one_hot, y)
    assert scores == {"reading_f1": 1.0, "sign_read_acc": 1.0}


def test_wrong_readings_score_below_one() -> None:
    world = WorldConfig(height=64, width=64, sign_prob=1.0)
    _, y = draw_frames(np.random.default_rng(6), world, 64, per_episode=8)
    dropped = y.reading.clone()
    first = (y.reading > 0).flatten(1).int().argmax(1)  # each frame's first read slot
    signed = y.reading.flatten(1).gather(1, first[:, None])[:, 0] > 0
    dropped.flatten(1)[signed.nonzero()[:, 0], first[signed]] = 0  # its first character missed
    s = reading_scores(torch.nn.functional.one_hot(dropped, 1 + len(CHARS)).float(), y)
    assert s["sign_read_acc"] == 0.0 and 0.5 < s["reading_f1"] < 1.0
    swapped = y.reading.clone()
    swapped[y.reading > 0] = 1 + (y.reading[y.reading > 0] % len(CHARS))  # ...other letters
    s = reading_scores(torch.nn.functional.one_hot(swapped, 1 + len(CHARS)).float(), y)
    assert s["sign_read_acc"] == 0.0 and s["reading_f1"] == 0.0


def test_a_run_starts_from_an_exported_delta_tower(tmp_path) -> None:
    """``init_tower`` takes a tower file or a delta's ``model.vision_tower.*`` tensors."""
    from safetensors.torch import save_file

    from streamvxl.model.vision import VisionTower
    from training.default_model import tiny_vision_config

    torch.manual_seed(0)
    tower = VisionTower(tiny_vision_config(), -2)
    save_file({"model.vision_tower." + k: v.half() for k, v in tower.state_dict().items()},
              str(tmp_path / "delta.safetensors"))
    state = load_tower_state(tmp_path / "delta.safetensors")
    assert state.keys() == tower.state_dict().keys()
    for k, v in tower.state_dict().items():
        assert state[k].dtype == torch.float32
        torch.testing.assert_close(state[k], v.half().float(), rtol=0, atol=0)
    cfg = PretrainConfig(steps=1, batch=8, eval_frames=16, log_every=1, device="cpu",
                         init_tower=str(tmp_path / "delta.safetensors"), lr=1e-12, warmup_steps=0)
    trained, _ = pretrain(cfg)
    for k, v in trained.state_dict().items():  # a negligible step: still the given tower
        torch.testing.assert_close(v, state[k], rtol=0, atol=1e-6)


def test_a_probe_trains_the_heads_and_leaves_the_tower(tmp_path) -> None:
    from streamvxl.model.vision import VisionTower
    from training.default_model import tiny_vision_config

    torch.manual_seed(1)
    tower = VisionTower(tiny_vision_config(), -2)
    save_tower(tower, tmp_path / "t.safetensors", {})
    cfg = PretrainConfig(steps=20, batch=16, eval_frames=64, log_every=20, device="cpu",
                         lr=3e-3, warmup_steps=0, init_tower=str(tmp_path / "t.safetensors"),
                         probe=True)
    probed, history = pretrain(cfg)
    for k, v in probed.state_dict().items():
        assert torch.equal(v, tower.state_dict()[k]), k
    assert history[-1]["count_acc"] > history[0]["count_acc"] + 0.2  # the heads did learn
    with pytest.raises(ValueError, match="init_tower"):
        PretrainConfig(probe=True)


def test_a_probe_can_read_the_projector_output(tmp_path) -> None:
    from safetensors.torch import save_file

    from streamvxl.model.vision import VisionTower
    from training.default_model import tiny_vision_config
    from training.vision_pretrain import load_projector

    torch.manual_seed(2)
    vision = tiny_vision_config()
    tower = VisionTower(vision, -2)
    projector = torch.nn.Sequential(torch.nn.Linear(vision.hidden_size, 48), torch.nn.GELU(),
                                    torch.nn.Linear(48, 40))
    delta = tmp_path / "d.safetensors"
    save_file({**{"model.vision_tower." + k: v for k, v in tower.state_dict().items()},
               **{"model.mm_projector." + k: v.contiguous()
                  for k, v in projector.state_dict().items()}}, str(delta))
    loaded = load_projector(delta)
    x = torch.randn(3, vision.hidden_size)
    torch.testing.assert_close(loaded(x), projector(x))
    cfg = PretrainConfig(steps=20, batch=16, eval_frames=64, log_every=20, device="cpu",
                         lr=3e-3, warmup_steps=0, init_tower=str(delta), probe=True,
                         probe_projector=True)
    probed, history = pretrain(cfg)
    for k, v in probed.state_dict().items():
        assert torch.equal(v, tower.state_dict()[k]), k
    assert history[-1]["count_acc"] > history[0]["count_acc"] + 0.2  # heads on 40-d vectors
    tower_only = tmp_path / "t.safetensors"
    save_tower(tower, tower_only, {})
    with pytest.raises(ValueError, match="no model.mm_projector"):
        load_projector(tower_only)
    with pytest.raises(ValueError, match="set probe too"):
        PretrainConfig(init_tower=str(delta), probe_projector=True)


def test_side_by_side_cells_keep_each_patch_where_the_mean_mixes_them() -> None:
    from streamvxl.model.vision import pool_patches, stack_patches
    from training.vision_pretrain import Heads

    # a 4 x 4 grid of 2-d patches, patch (r, c) holding (r, c): two cells per side
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    patches = torch.stack((rows, cols), -1).reshape(1, 16, 2)  # (N=1, P=16, C=2)
    cells = stack_patches(patches, 2)  # (1, T=4, 8)
    assert cells.shape == (1, 4, 8)
    # cell 1 is the top-right one: patches (0,2) (0,3) (1,2) (1,3) in raster order
    assert cells[0, 1].tolist() == [0, 2, 0, 3, 1, 2, 1, 3]
    # the mean is what side by side averages to: same cells, same order
    torch.testing.assert_close(cells.view(1, 4, 4, 2).mean(2), pool_patches(patches, 2))
    with pytest.raises(ValueError, match="square grid"):
        stack_patches(torch.zeros(1, 12, 2), 2)
    heads = Heads(2, "side_by_side")
    assert heads(patches, torch.zeros(1, 2))["reading"].shape[:2] == (1, 4)
    with pytest.raises(ValueError, match="cells must be"):
        Heads(2, "max")
    with pytest.raises(ValueError, match="set probe too"):
        PretrainConfig(probe_cells="side_by_side")


def test_heads_first_freezes_the_given_tower_then_trains_it(tmp_path, monkeypatch) -> None:
    """During ``heads_first`` steps no gradient reaches the tower (its features carry none) and
    its learning rate is 0; afterwards it trains, with its own warm-up from that step."""
    import training.vision_pretrain as vp
    from streamvxl.model.vision import VisionTower
    from training.default_model import tiny_vision_config

    torch.manual_seed(2)
    tower = VisionTower(tiny_vision_config(), -2)
    save_tower(tower, tmp_path / "t.safetensors", {})
    cfg = PretrainConfig(steps=4, batch=8, eval_frames=16, log_every=4, device="cpu", lr=1e-3,
                         warmup_steps=1, init_tower=str(tmp_path / "t.safetensors"),
                         heads_first=2)
    assert [vp.lr_factor(cfg, s, start=2) for s in range(3)] == [0.0, 0.0, 0.5]
    assert [vp.lr_factor(cfg, s) for s in range(2)] == [0.5, 1.0]  # the heads: from step 0
    features_carry_grad = []
    real_forward = vp.Heads.forward

    def spying_forward(self, patches, cls):
        features_carry_grad.append(patches.requires_grad)
        return real_forward(self, patches, cls)

    monkeypatch.setattr(vp.Heads, "forward", spying_forward)
    trained, _ = pretrain(cfg)
    # the evaluation before step 1 (two frame sets), steps 1-2 frozen, steps 3-4 training, the
    # final evaluation
    assert features_carry_grad == [False] * 4 + [True] * 2 + [False] * 2
    moved = [not torch.equal(v, tower.state_dict()[k]) for k, v in trained.state_dict().items()]
    assert any(moved)  # it trained once unfrozen
    with pytest.raises(ValueError, match="heads_first"):
        PretrainConfig(heads_first=5, steps=5, init_tower="t")
    with pytest.raises(ValueError, match="init_tower"):
        PretrainConfig(heads_first=1)


def test_keep_ink_holds_the_given_towers_features_on_sign_ink(tmp_path) -> None:
    """With ``keep_ink`` the tower's features on patches holding sign ink move less from the
    given tower's than without it (same seed, same batches)."""
    from streamvxl.model.vision import VisionTower
    from streamvxl.preprocess import Preprocessor
    from training.default_model import tiny_vision_config

    torch.manual_seed(3)
    tower = VisionTower(tiny_vision_config(), -2)
    save_tower(tower, tmp_path / "t.safetensors", {})
    world = {"sign_prob": 1.0}
    frames, labels = draw_frames(np.random.default_rng(9), WorldConfig(
        height=tiny_vision_config().image_size, width=tiny_vision_config().image_size, **world),
        16, 4)
    x = Preprocessor(tiny_vision_config().image_size)(list(frames))
    assert labels.ink.any()
    with torch.no_grad():
        before = tower(x)[0][labels.ink]  # (K, Cv)

    def ink_change(keep_ink: float) -> float:
        cfg = PretrainConfig(steps=3, batch=16, eval_frames=16, log_every=3, device="cpu",
                             lr=3e-3, warmup_steps=0, world=world, keep_ink=keep_ink,
                             init_tower=str(tmp_path / "t.safetensors"))
        trained, _ = pretrain(cfg)
        with torch.no_grad():
            after = trained(x)[0][labels.ink]
        return float((after - before).square().sum(-1).mean() / before.square().sum(-1).mean())

    free, kept = ink_change(0.0), ink_change(100.0)
    assert kept < 0.5 * free, (kept, free)
    with pytest.raises(ValueError, match="keep_ink"):
        PretrainConfig(keep_ink=1.0)  # nothing given to keep
