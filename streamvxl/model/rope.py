"""Rotary position embedding (the HF "rotate_half" convention used by Qwen2 and Llama).

Keys live in memory *before* rotation, so positions can be re-packed whenever the retained set
changes; rotation is applied at attention time for the positions the tokens have right then.
"""

from __future__ import annotations

import torch

# Shapes: B batch, H heads, T tokens, D head_dim.


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for integer ``positions`` (T,), each (T, D).

    Computed in float32 like HF (float64 for a float64 model, so that it is exact).
    """
    work = torch.promote_types(dtype, torch.float32)
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device,
                                              dtype=torch.int64).to(work) / head_dim))
    freqs = positions.to(work)[:, None] * inv_freq[None, :]  # (T, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, D)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., T, D) by the tables (T, D)."""
    return x * cos + rotate_half(x) * sin
