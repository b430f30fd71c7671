"""Reading labels of signs per visual token, and the linear head that reads them.

The world knows where every glyph of a sign is drawn, so each pooled cell (the patches one LLM
token averages) can be told exactly which characters it shows and in what order: split the cell
into ``slots`` columns of at most `SLOT_PX` px and put in each the character whose glyph centre
lies there, or none. A column is narrower than the glyph pitch (6 px at scale 1), so it holds at
most one centre, and the slots of all cells in raster order spell the sign.

Two users:

- `training.vision_pretrain` reads the tower's pooled patch features with such a head, so the
  tower learns to see characters in order;
- the recipe (``RecipeConfig.reading_loss``) reads the *projector's* pooled output -- the very
  visual tokens the LLM gets -- with a `ReadingHead` beside the answer loss. A linear probe
  found the fourth model's projector dropping the characters' order (signs read exactly: 62.9 %
  from the tower's features, 5.7 % from its output), and numbers, where order is everything,
  were answered 33 % right even from uncompressed memories. The head is training-only: it is
  saved in checkpoints, never exported.

Letters: N frames, T visual tokens per frame, S slots per token, K = 1 + len(CHARS) classes,
C token width.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamvxl.world.font import CHARSET, GLYPH_H, GLYPH_W
from streamvxl.world.scene import Episode
from training.samples import Sample

if TYPE_CHECKING:
    from streamvxl.model.videoxl import VideoXL

CHARS = tuple(sorted(CHARSET - {" "}))
"""The characters a sign can show; class k of a slot is ``CHARS[k - 1]``, class 0 "none"."""
SLOT_PX = 4
"""Widest reading column: narrower than the glyph pitch (6 px), so one centre per column."""
READ_SLOTS = 4
"""Columns per cell of streamvxl-tiny (16 px cells: 4 px each)."""
CHAR_WEIGHT = 4.0
"""Loss weight of a slot that holds a character, against 1 for an empty one (most are empty)."""


def slots_for(cell: int) -> int:
    """Columns a ``cell``-px cell is cut into: as few as keep each at most `SLOT_PX` wide."""
    if cell < 1:
        raise ValueError(f"a reading cell must be >= 1 px wide, got {cell}")
    return math.ceil(cell / SLOT_PX)


def token_cell(model: VideoXL) -> int:
    """The px side of the square of pixels one of ``model``'s visual tokens pools."""
    return model.vision_config.patch_size * model.config.visual.pool_stride


def reading_labels(episode: Episode, t: int, cell: int, slots: int | None = None) -> np.ndarray:
    """(T, S) int64 reading labels of frame t for pooled cells of ``cell`` px, S = ``slots``
    (default `slots_for(cell)`): 1 + the index in `CHARS` of the character centred in each
    column of each cell (cells row-major), 0 for none.

    Glyph i of a sign at scale s spans x in [x0 + 2s + 6 s i, +5 s) (the board's margin is
    2 font pixels) and y in [y0 + 2s, +7 s); its centre's cell and column get the character.
    """
    slots = slots_for(cell) if slots is None else slots
    g_h, g_w = episode.height // cell, episode.width // cell
    out = np.zeros((g_h * g_w, slots), dtype=np.int64)
    for sign in episode.signs:
        if not sign.visible(t):
            continue
        s = sign.scale
        cy = sign.y + 2 * s + GLYPH_H * s / 2
        for i, ch in enumerate(sign.text.upper()):
            cx = sign.x + 2 * s + (GLYPH_W + 1) * s * i + GLYPH_W * s / 2
            row, col = int(cy // cell), int(cx // cell)
            if row >= g_h or col >= g_w:
                continue  # a centre in the frame's ragged edge, which no token covers
            slot = int((cx - col * cell) * slots // cell)
            if out[row * g_w + col, slot]:
                raise ValueError(f"two glyph centres in one reading slot (cell {cell} px, "
                                 f"{slots} slots, sign scale {s}): the slots must be narrower "
                                 "than the glyph pitch")
            out[row * g_w + col, slot] = CHARS.index(ch) + 1
    return out


def sample_reading_labels(sample: Sample, cell: int) -> torch.Tensor:
    """(N, T, S) int64 reading labels of every frame of ``sample`` (its episodes' delivered
    frames in order, as `Sample.frames` holds them: an outage's frames never came)."""
    per_frame = [reading_labels(ep, int(t), cell) for ep in sample.episodes
                 for t in ep.delivered()]
    if len(per_frame) != len(sample.frames):
        raise ValueError(f"the sample has {len(sample.frames)} frames but its episodes "
                         f"{len(per_frame)}")
    h, w = sample.frames.shape[1:3]
    if any(ep.height != h or ep.width != w for ep in sample.episodes):
        raise ValueError("reading labels need the frames at their episodes' size (no resize)")
    return torch.from_numpy(np.stack(per_frame))


def read_text(logits: torch.Tensor) -> list[str]:
    """The text each frame's reading logits (N, T, S, K) spell: the predicted characters in
    raster order (cells row-major, columns left to right)."""
    best = logits.argmax(-1).flatten(1).tolist()  # (N, T * S)
    return ["".join(CHARS[k - 1] for k in row if k) for row in best]


def class_weights(logits: torch.Tensor) -> torch.Tensor:
    """(K,) loss weights: "none" 1, every character `CHAR_WEIGHT`."""
    w = torch.full((logits.shape[-1],), CHAR_WEIGHT, device=logits.device)
    w[0] = 1.0
    return w


def reading_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-weighted mean cross-entropy (float32 scalar) of reading logits (..., S, K)
    against labels (..., S)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten(),
                           weight=class_weights(logits).to(logits.dtype))


def signs_read(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames whose every slot is read right, frames with any character), both int64 scalars
    left on the device, over logits (N, T, S, K) and labels (N, T, S): a frame with a sign
    counts as read only when its whole text is."""
    signed = (labels > 0).flatten(1).any(1)  # (N,)
    exact = (logits.argmax(-1) == labels).flatten(1).all(1)  # (N,)
    return (exact & signed).sum(), signed.sum()


class ReadingHead(nn.Module):
    """A linear read-out of each visual token (N, T, C) into its reading logits (N, T, S, K)."""

    def __init__(self, width: int, slots: int) -> None:
        super().__init__()
        self.slots = slots
        self.proj = nn.Linear(width, slots * (1 + len(CHARS)))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, t, _ = tokens.shape
        return self.proj(tokens).view(n, t, self.slots, 1 + len(CHARS))


__all__ = ["CHARS", "CHAR_WEIGHT", "READ_SLOTS", "SLOT_PX", "ReadingHead", "class_weights",
           "read_text", "reading_labels", "reading_loss", "sample_reading_labels", "signs_read",
           "slots_for", "token_cell"]
