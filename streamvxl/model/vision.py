"""The visual path: CLIP vision tower -> projector -> 2x2 average pooling.

Video-XL takes the tower's penultimate hidden state, drops CLS, projects every patch into the LLM
width with a 2-layer GELU MLP, then average-pools the patch grid 2x2 (CLIP-L/336: 24x24 patches
-> 144 tokens per frame). The selected layer's CLS is returned as a free per-frame embedding for
interval boundary detection.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.models.clip.modeling_clip import CLIPEncoderLayer

from .config import VisualConfig

# Shapes: N frames, P patches per frame (g x g grid), Cv tower width, C LLM width,
# T tokens per frame after pooling.


_CAUSAL_MASK_KWARG: dict = (
    {"causal_attention_mask": None}
    if "causal_attention_mask" in inspect.signature(CLIPEncoderLayer.forward).parameters else {})
"""transformers 4's encoder layers take a causal mask (None for vision) as a required argument."""


class _Nested(nn.Module):
    """Gives a flattened ``CLIPVisionModel`` (transformers >= 5) the ``vision_model.*`` key
    layout that checkpoints written by transformers 4 (the Video-XL ones) use."""

    def __init__(self, clip: CLIPVisionModel) -> None:
        super().__init__()
        self.vision_model = clip

    def forward(self, *args, **kwargs):
        return self.vision_model(*args, **kwargs)


class VisionTower(nn.Module):
    """Holds the HF ``CLIPVisionModel`` as ``vision_tower`` (the checkpoint's key layout:
    ``vision_tower.vision_model.*``, whatever the installed transformers nests it as)."""

    def __init__(self, config: CLIPVisionConfig, select_layer: int) -> None:
        super().__init__()
        clip = CLIPVisionModel(config)
        self.vision_tower = clip if hasattr(clip, "vision_model") else _Nested(clip)
        self.config = config
        self.select_layer = select_layer

    def reset_buffers(self) -> None:
        """Re-create non-persistent buffers (CLIP's ``position_ids``) after a meta-device build."""
        for module in self.modules():
            ids = getattr(module, "position_ids", None)
            if isinstance(ids, torch.Tensor):
                ids.copy_(torch.arange(ids.shape[-1], device=ids.device).expand_as(ids))

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def layers_needed(self) -> int:
        """Encoder layers that feed the selected hidden state (``hidden_states[0]`` is the
        embedding output): Video-XL's -2 leaves the last layer, which nothing reads, unrun."""
        n = self.config.num_hidden_layers
        return self.select_layer % (n + 1)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values (N, 3, S, S) -> patch features (N, P, Cv) and CLS (N, Cv).

        Runs the embeddings, ``pre_layrnorm`` and only the encoder layers up to the selected one
        -- the same tensors as ``hidden_states[select_layer]`` of the full HF forward, without
        the layers after it or a copy of every hidden state.
        """
        clip = self.vision_tower.vision_model
        hidden = clip.pre_layrnorm(clip.embeddings(pixel_values))  # (N, 1+P, Cv)
        for layer in clip.encoder.layers[:self.layers_needed]:
            out = layer(hidden, None, **_CAUSAL_MASK_KWARG)
            hidden = out[0] if isinstance(out, tuple) else out  # transformers 4 returns tuples
        return hidden[:, 1:], hidden[:, 0]


def build_projector(cfg: VisualConfig, hidden_size: int) -> nn.Module:
    """``mm_projector``: indices 0 and 2 match the checkpoint's ``mm_projector.{0,2}``."""
    if cfg.projector_type == "linear":
        return nn.Linear(cfg.projector_in, hidden_size)
    return nn.Sequential(nn.Linear(cfg.projector_in, hidden_size), nn.GELU(),
                         nn.Linear(hidden_size, hidden_size))


def pool_patches(features: torch.Tensor, stride: int) -> torch.Tensor:
    """Average-pool (N, P, C) over the square patch grid -> (N, T, C), row-major per frame."""
    n, p, c = features.shape
    side = math.isqrt(p)
    if side * side != p:
        raise ValueError(f"{p} patches do not form a square grid")
    if stride == 1:
        return features
    grid = features.transpose(1, 2).reshape(n, c, side, side)  # (N, C, g, g)
    pooled = F.avg_pool2d(grid, kernel_size=stride, stride=stride)  # (N, C, g/s, g/s)
    return pooled.flatten(2).transpose(1, 2)  # (N, T, C)


def stack_patches(features: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, P, C) over the square patch grid -> (N, T, stride^2 * C): each cell's patches side
    by side, row-major within the cell ((0, 0), (0, 1), (1, 0), (1, 1) for stride 2), cells
    row-major per frame as in `pool_patches`."""
    n, p, c = features.shape
    side = math.isqrt(p)
    if side * side != p or side % stride:
        raise ValueError(f"{p} patches do not form a square grid of {stride}x{stride} cells")
    g = side // stride
    grid = features.reshape(n, g, stride, g, stride, c)  # (N, row, dy, col, dx, C)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(n, g * g, stride * stride * c)


@dataclass
class FrameTokens:
    """What the visual path makes of a batch of frames."""

    tokens: torch.Tensor
    """(N, T, C) visual tokens in LLM width, frame-major."""
    embeddings: torch.Tensor
    """(N, Cv) per-frame CLS embeddings (boundary detection, retrieval)."""
