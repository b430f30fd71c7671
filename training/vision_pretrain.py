"""Vision-only pre-training of streamvxl-tiny's tower on the synthetic world's exact labels.

The first trained streamvxl-tiny (docs/results.md) learned answer forms, not what frames show:
its tower, trained from scratch, got its only signal through the answer loss, back through
30 frozen LLM layers and the VST compression. The world knows every frame's content exactly,
so the tower can first learn to see directly, with no LLM in the loop (thousands of frames per
second), and the recipe then starts from it (``training.default_model init --vision-weights``).

Labels per frame, all computed from the episode and the rendered pixels (the world's colours
identify their source exactly: a pixel equal to an object colour comes from an object of that
colour, ink pixels come from a sign's text):

- per patch: which object colours it holds (8, multi-label), which shapes drew its pixels (8,
  multi-label, from `streamvxl.world.render.object_map`) and whether it holds sign ink;
- per frame: which (shape, colour) objects are visible (56, multi-label), which shapes (8), how many
  (softmax over 0 .. `MAX_COUNT`), and which characters the visible sign shows (multi-label
  over the font's character set);
- per pooled cell (the 2 x 2 patches one LLM token averages): the sign reading -- for each of
  `READ_SLOTS` columns of the cell, the character whose glyph centre lies there, or none
  (softmax). A column (4 px) is narrower than the glyph pitch (6 px), so it holds at most one
  centre, and the slots in raster order spell the sign. The bag-of-characters head above could
  not say "657" from "576", and it read the mean of all patches; the needle answers need the
  characters in order from the very tokens the LLM gets (the first streamvxl-tiny read 0 signs).

The shape labels are there for held-out pairings: with only the per-pair head, a tower learns
a detector per (shape, colour) pair and nothing of shape apart from colour, so an object of a
pair training never drew has no detector of its own. Shape and colour labelled apart, patch by
patch, ask for features that compose. The scores say whether they do: on episodes of the
*eval* split, the shape and colour read from the patches of held-out-pair objects against
those of trained-pair ones (``held_out_*`` and ``trained_*``).

Heads are linear: on the selected layer's patch features (what the projector reads), on their
2 x 2 average (what one LLM token is made of) and on their mean with the CLS. Only the tower is
kept. A probe (``--probe``) trains the heads alone on a given tower or projector; with
``--probe-cells side_by_side`` its reading head sees each cell's four patches concatenated, so
comparing the two tells what the average loses (docs/results.md, "What is still wrong").

Run it::

    python -m training.vision_pretrain --steps 2000 --out runs/tower.safetensors

Letters: N frames, P patches per frame, Cv tower width, K labels.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from streamvxl.model.config import VisualConfig
from streamvxl.model.vision import VisionTower, pool_patches, stack_patches
from streamvxl.preprocess import Preprocessor
from streamvxl.world import WorldConfig, object_map, render, sample_episode, sample_still
from streamvxl.world.scene import (
    COLOURS,
    HELD_OUT_COMBOS,
    INK,
    SHAPES,
    Episode,
    unnamed_colour,
)
from training.default_model import tiny_vision_config
from training.prefetch import Prefetcher
from training.reading import CHARS, READ_SLOTS, read_text, reading_labels, reading_loss

log = logging.getLogger("training.vision_pretrain")

COLOUR_NAMES = tuple(COLOURS)
COMBOS = tuple((s, c) for s in SHAPES for c in COLOUR_NAMES)
MAX_COUNT = 8
"""Counts above this are clipped into the last class."""
POS_WEIGHT = 4.0
"""Weight of the positive entries in the multi-label losses (positives are a few per cent)."""
TOWER_PREFIX = "model.vision_tower."
PROJECTOR_PREFIX = "model.mm_projector."
"""Where a streamvxl-tiny delta keeps its tower's and its projector's tensors."""
STILL_SHARE = 0.5
"""Share of draws that are stills rather than episodes."""
SELECT_LAYER = -2
"""The layer the projector reads (streamvxl-tiny's ``select_layer``)."""
POOL_STRIDE: int = next(f.default for f in dataclass_fields(VisualConfig) if f.name == "pool_stride")
"""Patches per side that one LLM token averages (streamvxl-tiny keeps the default, 2)."""
CellRead = Literal["mean", "side_by_side"]
CELL_READS: tuple[CellRead, ...] = get_args(CellRead)
"""How the reading head sees a pooled cell: its patches' average (what one LLM token is made
of) or its patches side by side (what the tower holds before the average)."""


@dataclass
class PretrainConfig:
    """One vision pre-training run."""

    steps: int = 2000
    """Optimizer steps."""
    batch: int = 256
    """Frames per step."""
    frames_per_episode: int = 8
    """Frames taken from each rendered episode (more: cheaper batches, less variety)."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up, cosine to 10 %)."""
    warmup_steps: int = 50
    """Linear warm-up steps."""
    init_tower: str | None = None
    """Start from this tower instead of a fresh one: a file this module wrote, or an exported
    streamvxl-tiny delta (its ``model.vision_tower.*`` tensors). The heads start fresh."""
    heads_first: int = 0
    """Of ``steps``, how many at the start train only the fresh heads, the given tower frozen
    (``init_tower``; linear probing, then fine-tuning -- Kumar et al., 2022), so that a fresh
    head's first gradients do not reach a trained tower's features. The tower's own warm-up
    and cosine start when it unfreezes. On the CPU (200 of 900 steps) it kept 114 of 172
    signs readable against 109 without: within noise (`git show 9cf8d3d:docs/results.md`,
    "Keeping the reading")."""
    keep_ink: float = 0.0
    """Weight of a loss that holds the tower's patch features on sign ink where the given
    tower (``init_tower``, kept frozen beside it) puts them: squared error over the patches
    holding ink, relative to the given features' energy there. A tower pre-trained again to
    tell shapes apart from colours read numbers worse (the shipped model on it: 11 of 20
    number needles against 17, words 26 / 26; docs/results.md); this keeps what the language
    model reads signs from while the rest of the features move. On the CPU (700 recolour
    steps, weight 2) a fresh probe read 119 of 172 signs from it, 109 from the same round
    without, 122 from the shipped tower."""
    probe: bool = False
    """Train the heads only, on a frozen ``init_tower``: a linear probe that measures what a
    given tower already encodes (e.g. the reading of the shipped tower against a new one)."""
    probe_projector: bool = False
    """With ``probe``: read the delta's ``mm_projector`` output instead of the tower's -- the
    very vectors the LLM's visual tokens average. Do the characters' order survive the
    projector, or is it the LLM that cannot read them? ``init_tower`` must be a delta."""
    probe_cells: CellRead = "mean"
    """How the reading head sees a pooled cell (`CELL_READS`): "side_by_side" reads its 2 x 2
    patches concatenated, so a probe can tell what the average loses from what was never
    there. The tower's own training keeps "mean" (the LLM's tokens are averages)."""
    recolour: float = 0.0
    """Share of the training frames' objects drawn in a colour no question names
    (`unnamed_colour`; their shape labelled, no colour, no pairing): each shape seen in many
    colours, none of them a held-out pairing's, so shape is learned apart from colour. The
    held-out scores keep the world's own colours."""
    pair_weight: float = 1.0
    """Weight of the per-pair head's loss (the 56 (shape, colour) pairs); 0 leaves shape and
    colour to their own heads, so no feature is rewarded for naming a pairing."""
    seed: int = 0
    """Seeds the tower, the heads and every episode."""
    world: dict | None = None
    """Further `WorldConfig` fields (e.g. sign_prob)."""
    eval_frames: int = 512
    """Held-out frames scored before, during (every ``log_every`` steps) and after the run: fresh
    episodes of the *train* split (a per-pair head cannot name a (shape, colour) pair it never
    saw; the held-out pairs are for the language-level evaluation)."""
    log_every: int = 100
    """Progress line every this many steps."""
    workers: int = 0
    """Processes rendering upcoming batches (0: render in the training process). Rendering
    a batch of 256 frames takes ~0.13 s of one core, far longer than the GPU step."""
    device: str = "auto"
    """"auto", "cpu" or "cuda"."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "frames_per_episode", "eval_frames", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainConfig.{name} must be >= 1")
        if not 0 <= self.heads_first < self.steps:
            raise ValueError("PretrainConfig.heads_first must be in [0, steps): the tower "
                             "trains after it")
        if self.heads_first and (self.init_tower is None or self.probe):
            raise ValueError("PretrainConfig.heads_first protects a given tower: set init_tower "
                             "(and not probe, where the tower never trains)")
        if self.keep_ink < 0 or (self.keep_ink and (self.init_tower is None or self.probe)):
            raise ValueError("PretrainConfig.keep_ink must be >= 0 and holds a given tower's "
                             "features: set init_tower (and not probe)")
        if self.probe and self.init_tower is None:
            raise ValueError("PretrainConfig.probe needs init_tower: a probe reads a given tower")
        if self.probe_projector and not self.probe:
            raise ValueError("PretrainConfig.probe_projector is a probe: set probe too")
        if self.probe_cells not in CELL_READS:
            raise ValueError(f"PretrainConfig.probe_cells must be one of {CELL_READS}")
        if self.probe_cells != "mean" and not self.probe:
            raise ValueError("PretrainConfig.probe_cells is for probes: set probe too")
        if self.workers < 0:
            raise ValueError("PretrainConfig.workers must be >= 0 (0: no worker processes)")
        if self.pair_weight < 0:
            raise ValueError("PretrainConfig.pair_weight must be >= 0")
        if not 0.0 <= self.recolour <= 1.0:
            raise ValueError("PretrainConfig.recolour must be in [0, 1]")
        if (self.world or {}).get("unnamed_prob"):
            raise ValueError("PretrainConfig.world: unnamed_prob draws objects this recipe "
                             "would label with a colour they do not show; set recolour "
                             "instead (the share of objects drawn in an unnamed colour)")
        if not self.lr > 0 or self.warmup_steps < 0:
            raise ValueError("PretrainConfig: lr must be > 0 and warmup_steps >= 0")


@dataclass
class FrameLabels:
    """Targets of N frames with a g x g patch grid."""

    colours: torch.Tensor
    """(N, P, 8) bool: object colours in each patch."""
    ink: torch.Tensor
    """(N, P) bool: sign ink in each patch."""
    combos: torch.Tensor
    """(N, 56) bool: visible (shape, colour) objects."""
    shapes: torch.Tensor
    """(N, 8) bool: shapes of the visible objects."""
    patch_shapes: torch.Tensor
    """(N, P, 8) bool: shapes of the objects whose pixels show in each patch."""
    patch_held_out: torch.Tensor
    """(N, P) bool: a patch shows an object of a held-out (shape, colour) pairing (only in
    episodes of the eval split)."""
    count: torch.Tensor
    """(N,) int64: visible objects, clipped to `MAX_COUNT`."""
    chars: torch.Tensor
    """(N, len(CHARS)) bool: characters on the visible sign(s)."""
    reading: torch.Tensor
    """(N, T, READ_SLOTS) int64: per pooled cell and column, 1 + the index in `CHARS` of the
    character centred there, 0 for none (`reading_labels`)."""
    text: tuple[str, ...]
    """(N,) the visible sign's text per frame ("" for none)."""


def patch_labels(frames: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch colour and ink presence of frames (N, H, W, 3) uint8: (N, P, 8), (N, P)."""
    n, h, w, _ = frames.shape
    g_h, g_w = h // patch, w // patch
    palette = np.array([COLOURS[c] for c in COLOUR_NAMES] + [INK], dtype=np.int32)  # (9, 3)
    codes = palette @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)  # (9,): one int per RGB
    pixels = frames.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)  # (N,H,W)
    hit = pixels[..., None] == codes  # (N, H, W, 9)
    hit = hit[:, :g_h * patch, :g_w * patch].reshape(n, g_h, patch, g_w, patch, len(palette))
    per_patch = hit.any(axis=(2, 4)).reshape(n, g_h * g_w, len(palette))  # (N, P, 9)
    return per_patch[..., :-1], per_patch[..., -1]


def patch_objects(episode: Episode, owner: np.ndarray, patch: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per patch of a frame whose `object_map` is ``owner`` (H, W): the shapes whose objects
    show in it (P, 8) bool, and whether one of them is of a held-out pairing (P,) bool."""
    g_h, g_w = episode.height // patch, episode.width // patch
    cells = owner[:g_h * patch, :g_w * patch].reshape(g_h, patch, g_w, patch)
    cells = cells.transpose(0, 2, 1, 3).reshape(g_h * g_w, patch * patch)  # (P, patch^2)
    shapes = np.zeros((g_h * g_w, len(SHAPES)), dtype=bool)
    held_out = np.zeros(g_h * g_w, dtype=bool)
    for k, obj in enumerate(episode.objects):
        shown = (cells == k).any(axis=1)  # (P,)
        if shown.any():
            shapes[shown, SHAPES.index(obj.shape)] = True
            if obj.combo in HELD_OUT_COMBOS:
                held_out |= shown
    return shapes, held_out


def frame_content(episode: Episode, t: int) -> tuple[np.ndarray, int, np.ndarray]:
    """(combos (56,) bool, object count, chars (len(CHARS),) bool) visible on frame t."""
    combos = np.zeros(len(COMBOS), dtype=bool)
    visible = [o for o in episode.objects if o.visible(t)]
    for o in visible:
        combos[COMBOS.index(o.combo)] = True
    chars = np.zeros(len(CHARS), dtype=bool)
    for sign in episode.signs:
        if sign.visible(t):
            for ch in sign.text.upper():
                if ch in CHARS:
                    chars[CHARS.index(ch)] = True
    return combos, min(len(visible), MAX_COUNT), chars


def draw_frames(rng: np.random.Generator, world: WorldConfig, n: int, per_episode: int,
                split: str = "train", recolour: float = 0.0) -> tuple[np.ndarray, FrameLabels]:
    """n frames (N, H, W, 3) uint8 from fresh episodes, with their labels. ``recolour`` is the
    share of objects drawn in an `unnamed_colour` instead of their own: labelled with their
    shape (patch and frame) and counted, but with no colour and no pairing."""
    frames, combos, counts, chars, reading, text = [], [], [], [], [], []
    shapes, patch_shapes, held_out = [], [], []
    patch = tiny_vision_config().patch_size
    cell = patch * POOL_STRIDE
    while len(frames) < n:
        # half stills (dense: every object and sign on the one frame), half video frames
        # (objects crossing edges, cuts, frames with nothing in them)
        if rng.random() < STILL_SHARE:
            episode = sample_still(rng, world, split=split, sign=bool(rng.random() < 0.5))
        else:
            episode = sample_episode(rng, world, split=split)
        video = render(episode)  # (F, H, W, 3)
        # a shape in many colours, none of them a pairing's: shape apart from colour
        unnamed = {i: unnamed_colour(rng) for i in range(len(episode.objects))
                   if recolour and rng.random() < recolour}  # none drawn: batches as before
        k = min(per_episode, n - len(frames), len(video))
        for t in sorted(rng.choice(len(video), size=k, replace=False).tolist()):
            c, m, ch = frame_content(episode, t)
            frame = video[t]
            visible = [i for i, o in enumerate(episode.objects) if o.visible(t)]
            owner = object_map(episode, t)  # (H, W): which object drew each pixel
            if unnamed:
                frame = frame.copy()
                for i, rgb in unnamed.items():
                    frame[owner == i] = rgb
                    if i in visible:  # its pairing is not shown (another object may be)
                        c[COMBOS.index(episode.objects[i].combo)] = any(
                            episode.objects[j].combo == episode.objects[i].combo
                            for j in visible if j not in unnamed)
            frame_shapes = np.zeros(len(SHAPES), dtype=bool)
            frame_shapes[[SHAPES.index(episode.objects[i].shape) for i in visible]] = True
            shapes.append(frame_shapes)
            frames.append(frame)
            combos.append(c)
            counts.append(m)
            chars.append(ch)
            reading.append(reading_labels(episode, t, cell))
            shapes_t, held_out_t = patch_objects(episode, owner, patch)
            patch_shapes.append(shapes_t)
            held_out.append(held_out_t)
            text.append("".join(g.text for g in episode.signs if g.visible(t)))
    pixels = np.stack(frames)
    colours, ink = patch_labels(pixels, patch)
    labels = FrameLabels(torch.from_numpy(colours), torch.from_numpy(ink),
                         torch.from_numpy(np.stack(combos)), torch.from_numpy(np.stack(shapes)),
                         torch.from_numpy(np.stack(patch_shapes)),
                         torch.from_numpy(np.stack(held_out)), torch.tensor(counts),
                         torch.from_numpy(np.stack(chars)), torch.from_numpy(np.stack(reading)),
                         tuple(text))
    return pixels, labels


@dataclass(frozen=True)
class FrameBatches:
    """The training batches of a run: batch ``step`` is a pure function of (seed, step), so
    batches rendered by worker processes (`training.prefetch.Prefetcher`) equal those rendered
    in place."""

    world: WorldConfig
    batch: int
    per_episode: int
    seed: int
    recolour: float = 0.0
    """`draw_frames`' share of objects in an unnamed colour."""

    def example(self, step: int, ratios: tuple[int, ...] = ()) -> tuple[np.ndarray, FrameLabels]:
        """(pixels (N, H, W, 3) uint8, labels) of ``step``; ``ratios`` is unused (the
        `ExampleSource` protocol)."""
        return draw_frames(np.random.default_rng([self.seed, 1, step]), self.world, self.batch,
                           self.per_episode, recolour=self.recolour)


class Heads(nn.Module):
    """Linear read-outs of the tower's selected layer: per patch and per frame."""

    def __init__(self, width: int, cells: CellRead = "mean") -> None:
        super().__init__()
        if cells not in CELL_READS:
            raise ValueError(f"cells must be one of {CELL_READS}, not {cells!r}")
        self.cells = cells
        self.patch = nn.Linear(width, len(COLOUR_NAMES) + 1 + len(SHAPES))  # colours, ink, shapes
        self.combos = nn.Linear(2 * width, len(COMBOS))
        self.shapes = nn.Linear(2 * width, len(SHAPES))
        self.count = nn.Linear(2 * width, MAX_COUNT + 1)
        self.chars = nn.Linear(2 * width, len(CHARS))
        cell_width = width if cells == "mean" else POOL_STRIDE * POOL_STRIDE * width
        self.reading = nn.Linear(cell_width, READ_SLOTS * (1 + len(CHARS)))

    def forward(self, patches: torch.Tensor, cls: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = torch.cat((patches.mean(1), cls), dim=-1)  # (N, 2 Cv)
        per_patch = self.patch(patches)  # (N, P, 17)
        c = len(COLOUR_NAMES)
        if self.cells == "mean":
            cells = pool_patches(patches, POOL_STRIDE)  # (N, T, Cv): what one LLM token averages
        else:
            cells = stack_patches(patches, POOL_STRIDE)  # (N, T, 4 Cv): a side-by-side cell
        n, t, _ = cells.shape
        reading = self.reading(cells).view(n, t, READ_SLOTS, 1 + len(CHARS))
        return {"colours": per_patch[..., :c], "ink": per_patch[..., c],
                "patch_shapes": per_patch[..., c + 1:],
                "combos": self.combos(pooled), "shapes": self.shapes(pooled),
                "count": self.count(pooled),
                "chars": self.chars(pooled), "reading": reading}


def losses(out: dict[str, torch.Tensor], y: FrameLabels) -> dict[str, torch.Tensor]:
    """One loss per label group (means; the total is their sum)."""
    def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = torch.tensor(POS_WEIGHT, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)

    return {"colours": bce(out["colours"], y.colours.float()),
            "ink": bce(out["ink"], y.ink.float()),
            "combos": bce(out["combos"], y.combos.float()),
            "shapes": bce(out["shapes"], y.shapes.float()),
            "patch_shapes": bce(out["patch_shapes"], y.patch_shapes.float()),
            "count": F.cross_entropy(out["count"], y.count),
            "chars": bce(out["chars"], y.chars.float()),
            "reading": reading_loss(out["reading"], y.reading)}


def f1(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """F1 of boolean predictions over all entries (positives are rare: accuracy would flatter)."""
    tp = float((pred & truth).sum())
    denom = float(pred.sum() + truth.sum())
    return 2 * tp / denom if denom else 1.0


def scores(out: dict[str, torch.Tensor], y: FrameLabels) -> dict[str, float]:
    """Held-out scores: F1 of the multi-label groups, accuracy of the counts."""
    return {"patch_colour_f1": f1(out["colours"] > 0, y.colours),
            "patch_ink_f1": f1(out["ink"] > 0, y.ink),
            "object_f1": f1(out["combos"] > 0, y.combos),
            "shape_f1": f1(out["shapes"] > 0, y.shapes),
            "patch_shape_f1": f1(out["patch_shapes"] > 0, y.patch_shapes),
            "count_acc": float((out["count"].argmax(-1) == y.count).float().mean()),
            "char_f1": f1(out["chars"] > 0, y.chars),
            **reading_scores(out["reading"], y)}


def pairing_scores(out: dict[str, torch.Tensor], y: FrameLabels) -> dict[str, float]:
    """Shape and colour read from single patches, for patches of held-out (shape, colour)
    pairings against those of trained ones: on patches showing exactly one shape (one colour),
    the share whose shape (colour) logit is the highest. Near-equal ``held_out_*`` and
    ``trained_*`` say the features compose; a held-out shape read as another says the tower
    knows shapes only by their pairings. NaN where no patch qualifies."""
    one_shape = y.patch_shapes.sum(-1) == 1  # (N, P)
    one_colour = y.colours.sum(-1) == 1
    shape_hit = out["patch_shapes"].argmax(-1) == y.patch_shapes.float().argmax(-1)  # (N, P)
    colour_hit = out["colours"].argmax(-1) == y.colours.float().argmax(-1)
    row = {}
    for name, group in (("held_out", y.patch_held_out), ("trained", ~y.patch_held_out)):
        for what, only, hit in (("shape", one_shape, shape_hit), ("colour", one_colour, colour_hit)):
            mask = group & only & one_shape  # patches of one object
            n = int(mask.sum())
            row[f"{name}_{what}_acc"] = float(hit[mask].float().mean()) if n else float("nan")
        row[f"{name}_patches"] = float((group & one_shape).sum())
    return row


def reading_scores(logits: torch.Tensor, y: FrameLabels) -> dict[str, float]:
    """``reading_f1``: F1 of the slots read as a character (right character in the right slot);
    ``sign_read_acc``: share of frames with a sign whose text `read_text` spells exactly
    (1.0 when no frame has one)."""
    pred = logits.argmax(-1)  # (N, T, S)
    truth = y.reading
    tp = float(((pred == truth) & (truth > 0)).sum())
    denom = float((pred > 0).sum() + (truth > 0).sum())
    signed = [i for i, t in enumerate(y.text) if t]
    read = read_text(logits[signed]) if signed else []
    hits = sum(r == y.text[i] for r, i in zip(read, signed, strict=True))
    return {"reading_f1": 2 * tp / denom if denom else 1.0,
            "sign_read_acc": hits / len(signed) if signed else 1.0}


def _to(y: FrameLabels, device: torch.device) -> FrameLabels:
    return FrameLabels(**{f.name: (v.to(device) if isinstance(v := getattr(y, f.name),
                                                              torch.Tensor) else v)
                          for f in dataclass_fields(y)})


def load_tower_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A tower's state (float32, `VisionTower` key names) from a file this module wrote or
    from an exported delta (``model.vision_tower.*``, maybe float16)."""
    state = load_file(str(path))
    if any(k.startswith(TOWER_PREFIX) for k in state):
        state = {k.removeprefix(TOWER_PREFIX): v for k, v in state.items()
                 if k.startswith(TOWER_PREFIX)}
    return {k: v.float() for k, v in state.items()}


def load_projector(path: str | Path) -> nn.Module:
    """A delta's ``mm_projector`` (float32): Linear, or Linear-GELU-Linear, as its tensors
    say (`streamvxl.model.vision.build_projector`'s two layouts)."""
    state = {k.removeprefix(PROJECTOR_PREFIX): v.float() for k, v in load_file(str(path)).items()
             if k.startswith(PROJECTOR_PREFIX)}
    if not state:
        raise ValueError(f"{path} holds no {PROJECTOR_PREFIX}* tensors: probe_projector needs a "
                         "delta")
    if "2.weight" in state:
        out, hidden = state["2.weight"].shape[0], state["0.weight"].shape
        projector: nn.Module = nn.Sequential(nn.Linear(hidden[1], hidden[0]), nn.GELU(),
                                             nn.Linear(hidden[0], out))
    else:
        projector = nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    projector.load_state_dict(state)
    return projector


def torch_device(name: str) -> torch.device:
    """``name`` as a device: "auto" is CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(cfg: PretrainConfig, step: int, start: int = 0) -> float:
    """The learning rate's share of ``cfg.lr`` at optimizer step ``step`` (0-based) for
    parameters that train from step ``start`` on: 0 before it, then a linear warm-up and a
    cosine to 10 % at the run's end."""
    step -= start
    if step < 0:
        return 0.0
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - start - cfg.warmup_steps)
    return float(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, progress))))


def pretrain(cfg: PretrainConfig) -> tuple[VisionTower, list[dict[str, float]]]:
    """Train a tower (the streamvxl-tiny shape; fresh or ``cfg.init_tower``) and its heads;
    returns the tower and one row of held-out scores per evaluation (the last: the end of the
    run)."""
    device = torch_device(cfg.device)
    vision = tiny_vision_config()
    # patch labels are read on the tower's own pixel grid
    if (cfg.world or {}).get("sizes") is not None:
        raise ValueError(f"vision pretraining draws {vision.image_size}x{vision.image_size} "
                         "frames, the tower's own size: leave 'sizes' out of the world")
    world = WorldConfig(height=vision.image_size, width=vision.image_size, **(cfg.world or {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        tower = VisionTower(vision, SELECT_LAYER)
        if cfg.init_tower is not None:
            tower.load_state_dict(load_tower_state(cfg.init_tower))  # strict: same shape only
        tower = tower.to(device).train(not cfg.probe).requires_grad_(not cfg.probe)
        if cfg.probe_projector:
            projector = load_projector(cfg.init_tower).to(device).requires_grad_(False)
            width = projector(torch.zeros(1, vision.hidden_size, device=device)).shape[-1]
        else:
            projector, width = None, vision.hidden_size
        heads = Heads(width, cfg.probe_cells).to(device).train()
        # the given tower as it was, for keep_ink: what the features on sign ink stay near
        anchor = copy.deepcopy(tower).eval().requires_grad_(False) if cfg.keep_ink else None

    def features_of(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patches, cls = tower(x)  # (N, P, Cv), (N, Cv)
        if projector is None:
            return patches, cls
        return projector(patches), projector(cls)  # (N, P, C): what the LLM tokens average
    tower_params = [p for p in tower.parameters() if p.requires_grad]
    head_params = list(heads.parameters())
    params = tower_params + head_params
    optimizer = torch.optim.AdamW([{"params": tower_params}, {"params": head_params}],
                                  lr=cfg.lr, weight_decay=0.01)

    # LambdaLR counts from 0: step s of the loop (1-based) trains at lr_factor(cfg, s - 1, ...)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [
        partial(lr_factor, cfg, start=cfg.heads_first), partial(lr_factor, cfg, start=0)])
    preprocess = Preprocessor(vision.image_size)
    batches = FrameBatches(world, cfg.batch, cfg.frames_per_episode, cfg.seed, cfg.recolour)
    eval_pixels, eval_y = draw_frames(np.random.default_rng([cfg.seed, 2]), world,
                                      cfg.eval_frames, cfg.frames_per_episode)
    eval_x = preprocess(list(eval_pixels)).to(device)  # (N, 3, S, S)
    eval_y = _to(eval_y, device)
    # episodes of the eval split: half hold an object of a held-out pairing
    pair_pixels, pair_y = draw_frames(np.random.default_rng([cfg.seed, 3]), world,
                                      cfg.eval_frames, cfg.frames_per_episode, split="eval")
    pair_x = preprocess(list(pair_pixels)).to(device)
    pair_y = _to(pair_y, device)
    history: list[dict[str, float]] = []

    def evaluate(step: int, train_loss: float) -> None:
        tower.eval()
        with torch.no_grad():
            row = {"step": step, "train_loss": train_loss,
                   **scores(heads(*features_of(eval_x)), eval_y),
                   **pairing_scores(heads(*features_of(pair_x)), pair_y)}
        tower.train(not cfg.probe)
        history.append(row)
        log.info("step %d/%d loss %.4f | held-out: %s", step, cfg.steps, train_loss,
                 " ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("step",
                                                                               "train_loss")))

    t0 = time.perf_counter()
    evaluate(0, float("nan"))  # the untrained tower: what the run improves on
    with ExitStack() as stack:
        if cfg.workers:
            pool = stack.enter_context(Prefetcher(
                batches, cfg.workers, lambda s: (range(s, s + 1), ()) if s <= cfg.steps
                else None, depth=2 * cfg.workers))

            def batch_of(step: int) -> tuple[np.ndarray, FrameLabels]:
                return pool.get(step)[0]
        else:
            batch_of = batches.example
        for step in range(1, cfg.steps + 1):
            pixels, y = batch_of(step)
            x = preprocess(list(pixels)).to(device)
            tower_trains = not cfg.probe and step > cfg.heads_first
            with torch.set_grad_enabled(tower_trains):  # frozen: no tower backward
                features = features_of(x)
            y = _to(y, device)
            parts = losses(heads(*features), y)
            parts["combos"] = cfg.pair_weight * parts["combos"]
            if anchor is not None and tower_trains and y.ink.any():  # frozen: nothing moved
                with torch.no_grad():
                    kept = anchor(x)[0][y.ink]  # (K, Cv): the given tower on the ink patches
                moved = (features[0][y.ink] - kept).square().sum(-1).mean()
                parts["keep_ink"] = cfg.keep_ink * moved / kept.square().sum(-1).mean()
            loss = sum(parts.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            if step % cfg.log_every == 0 or step == cfg.steps:
                evaluate(step, float(loss.detach()))
    log.info("pre-trained the tower in %.1f s", time.perf_counter() - t0)
    return tower.eval(), history


def save_tower(tower: VisionTower, path: str | Path, meta: dict) -> Path:
    """The tower's state (its own key names, float32) + JSON metadata, as safetensors."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in tower.state_dict().items()}
    save_file(state, str(out), metadata={"streamvxl_vision_pretrain": json.dumps(meta)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.vision_pretrain",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="the tower file (.safetensors)")
    for name, default in asdict(PretrainConfig()).items():
        if name == "world":
            p.add_argument("--world", type=json.loads, help="JSON of WorldConfig fields")
        elif name == "probe":
            p.add_argument("--probe", action="store_true", help="train the heads only (a "
                           "linear probe of --init-tower)")
        elif name == "probe_projector":
            p.add_argument("--probe-projector", action="store_true", help="with --probe: read "
                           "the delta's projector output (what the LLM's tokens average)")
        elif name == "probe_cells":
            p.add_argument("--probe-cells", choices=CELL_READS, default=default,
                           help="with --probe: how the reading head sees a cell")
        elif name == "init_tower":
            p.add_argument("--init-tower", help="start from this tower file or exported delta")
        else:
            p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    args = vars(p.parse_args(argv))
    out = args.pop("out")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)
    cfg = PretrainConfig(**args)
    tower, history = pretrain(cfg)
    save_tower(tower, out, {"config": asdict(cfg), "held_out": history[-1]})
    (out.with_suffix(".json")).write_text(json.dumps(history, indent=1))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
