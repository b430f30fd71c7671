"""Rotary position embedding (the HF "rotate_half" convention used by Qwen2 and Llama).

Memory keys are kept *before* rotation (the source of truth), so positions can be re-packed
whenever the retained set changes; the store also keeps them rotated to their current positions,
so attention rotates only the new chunk.
"""

from __future__ import annotations

from functools import lru_cache

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
    """Rotate ``x`` (..., T, D) by the tables (T, D), in x's dtype (under autocast the
    projections come out in half precision while the tables follow the float32 embeddings)."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


@lru_cache(maxsize=16)
def _swap_matrix(head_dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(D, D) with x @ swap == rotate_half(x): out[j] = -x[j+h] (j < h), out[j+h] = x[j].

    Cached: built once outside any CUDA-graph capture, where host-to-device writes are banned.
    """
    half = head_dim // 2
    idx = torch.arange(half)
    swap = torch.zeros(head_dim, head_dim, dtype=dtype)
    swap[idx + half, idx] = -1
    swap[idx, idx + half] = 1
    return swap.to(device)


class Rotation:
    """RoPE for the positions of one forward pass, applied to queries and keys of every layer.

    A one-token step rotates by a (D, D) matrix: one small matmul per tensor instead of five
    elementwise kernels, which matters when a decode step is ~1,000 tiny kernels.
    """

    def __init__(self, positions: torch.Tensor, head_dim: int, theta: float,
                 dtype: torch.dtype) -> None:
        self.cos, self.sin = rope_cos_sin(positions, head_dim, theta, dtype)  # (T, D) each
        self.matrix: torch.Tensor | None = None
        self.query_matrix: torch.Tensor | None = None
        if positions.numel() == 1:
            swap = _swap_matrix(head_dim, positions.device, dtype)
            self.matrix = torch.diag_embed(self.cos[0]) + swap * self.sin[0]  # (D, D)
            # queries also take the attention scale 1/sqrt(D), folded in once per step
            self.query_matrix = self.matrix * head_dim ** -0.5

    @property
    def scales_queries(self) -> bool:
        """True when `queries` also applies the attention scale (one-token steps)."""
        return self.query_matrix is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate x (..., T, D)."""
        if self.matrix is not None:
            return x @ self.matrix.to(x.dtype)
        return apply_rope(x, self.cos, self.sin)

    def queries(self, q: torch.Tensor) -> torch.Tensor:
        """Rotate queries; for one-token steps also scale them (see `scales_queries`)."""
        if self.query_matrix is not None:
            return q @ self.query_matrix.to(q.dtype)
        return apply_rope(q, self.cos, self.sin)
