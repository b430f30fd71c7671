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

_split_ok: bool | None = None  # None: untried; False: this build/GPU cannot, use SDPA
_native_gqa: dict[str, bool] = {}  # per op: takes fewer K/V heads than query heads?


def _with_lse(op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, H, T, D), lse (B, H, T, 1) float32) from cuDNN (no mask) or flash (causal,
    aligned bottom-right as in FlashAttention-2)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1 and not _native_gqa.get(op, True):
        k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    try:
        if op == "cudnn":
            out = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0,
                                                                     False, False)
        else:
            out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, True, False)
    except RuntimeError:
        if groups == 1 or op in _native_gqa:
            raise
        _native_gqa[op] = False  # retry once with K/V repeated to the query heads
        return _with_lse(op, q, k, v)
    _native_gqa.setdefault(op, True)
    return out[0], out[1].float().reshape(*q.shape[:3], 1)


def _split_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bulk: int
                     ) -> torch.Tensor:
    # Slice before anything else: a cuDNN plan is keyed by shape and strides, which must not
    # depend on the growing memory length.
    o_bulk, lse_bulk = _with_lse("cudnn", q, k[:, :, :bulk], v[:, :, :bulk])
    o_rest, lse_rest = _with_lse("flash", q, k[:, :, bulk:], v[:, :, bulk:])
    w = torch.sigmoid(lse_bulk - lse_rest)  # (B, H, T, 1): the bulk's share of softmax mass
    return torch.lerp(o_rest, o_bulk, w.to(q.dtype))  # outputs are half precision anyway


def full_coverage_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q (B, H, T, D) over k/v (B, G, M+T, D) with the bottom-right causal mask -> (B, H, T, D)."""
    global _split_ok
    t, total = q.shape[2], k.shape[2]
    memory = total - t
    gqa = q.shape[1] != k.shape[1]
    if memory == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    bulk = memory // BUCKET * BUCKET
    if (bulk and _split_ok is not False and q.is_cuda
            and q.dtype in (torch.float16, torch.bfloat16) and t > 1 and q.shape[-1] <= 128):
        try:
            out = _split_attention(q, k, v, bulk)
            _split_ok = True
            return out
        except torch.OutOfMemoryError:
            raise  # not a capability problem: keep the fast path for later calls
        except (RuntimeError, NotImplementedError) as e:
            if _split_ok is None:
                log.info("cuDNN split attention unavailable (%s); using SDPA", e)
            _split_ok = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(t, total),
                                          enable_gqa=gqa)
