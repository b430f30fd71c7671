"""Attention caches for one forward sequence: where a chunk reads cached K/V and writes its own.

Memory is stored *pre-RoPE* (positions get re-packed when the retained set changes); these caches
hold the *rotated* view a forward pass needs for the positions valid right now (0..M-1).

- `ConcatCache`: functional (``torch.cat``), autograd-safe; the differentiable `encode_interval`
  and `encode_text` use it (training, tests). The runtime encodes intervals in place instead
  (`streamvxl.runtime.workspace`).
- `RotatedCache`: preallocated buffers written in place (gpt-fast style); used for answering,
  where a question is followed by many one-token decode steps.
"""

from __future__ import annotations

import torch

from .attention import AttentionKernels
from .decoder import KVCache
from .rope import apply_rope, rope_cos_sin

# Shapes: L layers, B batch, G key/value heads, M cached tokens, T chunk tokens, D head_dim.


def rotate_memory(keys: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate pre-RoPE memory keys (..., M, D) to the packed positions 0..M-1."""
    m, d = keys.shape[-2], keys.shape[-1]
    cos, sin = rope_cos_sin(torch.arange(m, device=keys.device), d, theta, keys.dtype)
    return apply_rope(keys, cos, sin)


class ConcatCache(KVCache):
    """Memory (L, B, G, M, D) pre-RoPE keys and values; a chunk attends to memory + itself."""

    def __init__(self, keys: torch.Tensor | None, values: torch.Tensor | None,
                 theta: float, kernels: AttentionKernels | None = None) -> None:
        self.keys, self.values, self.theta, self.kernels = keys, values, theta, kernels

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def extend(self, layer: int, k_rot: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is None or self.keys.shape[-2] == 0:
            return k_rot, v
        mem_k = rotate_memory(self.keys[layer], self.theta)  # (B, G, M, D)
        return torch.cat((mem_k, k_rot), dim=2), torch.cat((self.values[layer], v), dim=2)


class RotatedCache(KVCache):
    """Preallocated rotated K/V of capacity ``capacity`` tokens; chunks are appended in place.

    Call `advance` after each forward pass: every layer writes its chunk at the same offset.
    """

    def __init__(self, num_layers: int, batch: int, kv_heads: int, head_dim: int, capacity: int,
                 dtype: torch.dtype, device: torch.device,
                 kernels: AttentionKernels | None = None) -> None:
        shape = (num_layers, batch, kv_heads, capacity, head_dim)
        # zeros, not empty: CUDA-graph decoding attends over every slot with the unused ones
        # masked, and a NaN left there by an earlier allocation survives masking (0 * NaN)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0
        self.capacity = capacity
        self.kernels = kernels

    @classmethod
    def from_memory(cls, keys: torch.Tensor, values: torch.Tensor, capacity: int,
                    theta: float) -> RotatedCache:
        """A cache holding memory (L, B, G, M, D) rotated to 0..M-1, with room for more."""
        n_layers, b, g, m, d = keys.shape
        if capacity < m:
            raise ValueError(f"capacity {capacity} < memory length {m}")
        cache = cls(n_layers, b, g, d, capacity, keys.dtype, keys.device)
        cache.load(rotate_memory(keys, theta), values)
        return cache

    def load(self, rotated_keys: torch.Tensor, values: torch.Tensor) -> None:
        """Replace the contents by memory (L, B, G, M, D) already rotated to 0..M-1."""
        m = rotated_keys.shape[3]
        if m > self.capacity:
            raise ValueError(f"memory of {m} tokens exceeds capacity {self.capacity}")
        if m:
            self.k[:, :, :, :m] = rotated_keys
            self.v[:, :, :, :m] = values
        self.length = m

    def extend(self, layer: int, k_rot: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        t = k_rot.shape[2]
        end = self.length + t
        if end > self.capacity:
            raise RuntimeError(f"RotatedCache overflow: {end} > capacity {self.capacity}")
        self.k[layer, :, :, self.length:end] = k_rot
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, t: int) -> None:
        self.length += t
