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


def _cudnn_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """cuDNN attention, no mask: (out (B, H, T, D), lse (B, H, T, 1) float32)."""
    out = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, False,
                                                             False)
    return out[0], out[1].float().reshape(*q.shape[:3], 1)


def _flash_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flash attention, causal aligned bottom-right (FlashAttention-2's convention)."""
    out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, True, False)
    return out[0], out[1].float().reshape(*q.shape[:3], 1)


def _split_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bulk: int
                     ) -> torch.Tensor:
    o_bulk, lse_bulk = _cudnn_with_lse(q, k[:, :, :bulk], v[:, :, :bulk])
    o_rest, lse_rest = _flash_with_lse(q, k[:, :, bulk:], v[:, :, bulk:])
    w = torch.sigmoid(lse_bulk - lse_rest)  # (B, H, T, 1): the bulk's share of softmax mass
    return torch.lerp(o_rest.float(), o_bulk.float(), w).to(q.dtype)


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


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
        groups = q.shape[1] // k.shape[1]
        try:
            # the LSE-returning ops want as many K/V heads as query heads
            out = _split_attention(q, _repeat_kv(k, groups), _repeat_kv(v, groups), bulk)
            _split_ok = True
            return out
        except (RuntimeError, NotImplementedError) as e:
            if _split_ok is None:
                log.info("cuDNN split attention unavailable (%s); using SDPA", e)
            _split_ok = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(t, total),
                                          enable_gqa=gqa)
