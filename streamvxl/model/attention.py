"""Full-coverage attention kernels: a chunk of T queries over M memory keys + the chunk itself.

The mask is causal aligned bottom-right: every query sees all memory and, causally, the chunk.
The portable path is SDPA with ``causal_lower_right`` (flash on GPUs, math on CPUs). On Hopper,
cuDNN's fused attention runs about twice as fast as flash (benchmarks/attention_kernels.py) but
takes no bottom-right causal mask, and it builds a new execution plan (tens of ms) for every new
sequence length -- and memory grows every window. So the split path gives cuDNN the bulk of the
memory, keys [0, b) with b rounded down to a multiple of `BUCKET` (few distinct shapes, plans
cached), and flash the rest, keys [b, M+T) with its bottom-right causal mask; the two partial
results merge exactly by their log-sum-exps:

    out = o_bulk * w + o_rest * (1 - w),   w = sigmoid(lse_bulk - lse_rest)

Whether this build and device take the split path is found out by trying it once. What was found
lives in an `AttentionKernels` object, which the runtime that owns a model creates and hands to
the forward passes it runs (through their `KVCache`); a forward given none takes the portable
path. Nothing is remembered per process.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

log = logging.getLogger(__name__)

# Shapes: B batch, H query heads, G kv heads, T chunk tokens, M memory tokens, D head_dim.

BUCKET = 2048
"""cuDNN sees memory lengths rounded down to a multiple of this (one plan per bucket)."""


def portable_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q (B, H, T, D) over k/v (B, G, M+T, D), bottom-right causal, through SDPA -> (B, H, T, D)."""
    t, total = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if total == t:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(t, total),
                                          enable_gqa=gqa)


class AttentionKernels:
    """The full-coverage attention of one runtime, with what it found its device can run.

    Args:
        split: allow the cuDNN + flash split path (tried once on CUDA in half precision; a
            failure falls back to SDPA for good, logged at INFO).

    Example:
        >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 5, 8)
        >>> AttentionKernels().full_coverage(q, k, k).shape
        torch.Size([1, 4, 3, 8])
    """

    def __init__(self, split: bool = True) -> None:
        self.split_ok: bool | None = None if split else False
        """None: untried; True: the split path runs here; False: SDPA only."""
        self.native_gqa: dict[str, bool] = {}
        """Per fused op: does it take fewer K/V heads than query heads?"""

    def full_coverage(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, H, T, D) over k/v (B, G, M+T, D), bottom-right causal -> (B, H, T, D)."""
        t, memory = q.shape[2], k.shape[2] - q.shape[2]
        bulk = memory // BUCKET * BUCKET
        if (bulk and self.split_ok is not False and q.is_cuda
                and q.dtype in (torch.float16, torch.bfloat16) and t > 1 and q.shape[-1] <= 128):
            try:
                out = self._split(q, k, v, bulk)
                self.split_ok = True
                return out
            except torch.OutOfMemoryError:
                raise  # not a capability problem: keep the fast path for later calls
            except (RuntimeError, NotImplementedError) as e:
                if self.split_ok is None:
                    log.info("cuDNN split attention unavailable (%s); using SDPA", e)
                self.split_ok = False
        return portable_attention(q, k, v)

    def _split(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bulk: int
               ) -> torch.Tensor:
        # Slice before anything else: a cuDNN plan is keyed by shape and strides, which must not
        # depend on the growing memory length.
        o_bulk, lse_bulk = self._with_lse("cudnn", q, k[:, :, :bulk], v[:, :, :bulk])
        o_rest, lse_rest = self._with_lse("flash", q, k[:, :, bulk:], v[:, :, bulk:])
        w = torch.sigmoid(lse_bulk - lse_rest)  # (B, H, T, 1): the bulk's share of softmax mass
        return torch.lerp(o_rest, o_bulk, w.to(q.dtype))  # outputs are half precision anyway

    def _with_lse(self, op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(out (B, H, T, D), lse (B, H, T, 1) float32) from cuDNN (no mask) or flash (causal,
        aligned bottom-right as in FlashAttention-2)."""
        groups = q.shape[1] // k.shape[1]
        if groups > 1 and not self.native_gqa.get(op, True):
            k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        try:
            if op == "cudnn":
                out = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0,
                                                                         False, False)
            else:
                out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, True,
                                                                         False)
        except RuntimeError:
            if groups == 1 or op in self.native_gqa:
                raise
            self.native_gqa[op] = False  # retry once with K/V repeated to the query heads
            return self._with_lse(op, q, k, v)
        self.native_gqa.setdefault(op, True)
        return out[0], out[1].float().reshape(*q.shape[:3], 1)


def full_coverage_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            kernels: AttentionKernels | None = None) -> torch.Tensor:
    """q (B, H, T, D) over k/v (B, G, M+T, D) with the bottom-right causal mask -> (B, H, T, D);
    through ``kernels`` when given, else the portable SDPA path."""
    if kernels is None:
        return portable_attention(q, k, v)
    return kernels.full_coverage(q, k, v)
