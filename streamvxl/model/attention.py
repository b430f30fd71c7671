"""Full-coverage attention kernels: a chunk of T queries over M memory keys + the chunk itself.

The mask is causal aligned bottom-right: every query sees all memory and, causally, the chunk.
The portable path is SDPA with ``causal_lower_right`` (flash on GPUs, math on CPUs). On Hopper,
cuDNN's fused attention runs about twice as fast as flash but takes no bottom-right causal mask,
so the split path computes the memory part (no mask) and the chunk part (square causal) with
cuDNN separately and merges them exactly by their log-sum-exps:

    out = o_mem * w + o_chunk * (1 - w),   w = sigmoid(lse_mem - lse_chunk)
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

log = logging.getLogger(__name__)

# Shapes: B batch, H query heads, G kv heads, T chunk tokens, M memory tokens, D head_dim.

_split_ok: bool | None = None  # None: untried; False: this build/GPU cannot, use SDPA


def _cudnn_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """cuDNN fused attention returning (out (B, H, T, D), lse (B, H, T, 1) float32)."""
    out = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal,
                                                             False)
    return out[0], out[1].float()


def _split_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, memory: int
                     ) -> torch.Tensor:
    o_mem, lse_mem = _cudnn_with_lse(q, k[:, :, :memory], v[:, :, :memory], causal=False)
    o_new, lse_new = _cudnn_with_lse(q, k[:, :, memory:], v[:, :, memory:], causal=True)
    w = torch.sigmoid(lse_mem - lse_new)  # (B, H, T, 1): memory's share of the softmax mass
    return torch.lerp(o_new.float(), o_mem.float(), w).to(q.dtype)


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
    if (_split_ok is not False and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
            and t > 1 and q.shape[-1] <= 128):
        groups = q.shape[1] // k.shape[1]
        try:
            # cuDNN's LSE-returning op wants as many K/V heads as query heads
            out = _split_attention(q, _repeat_kv(k, groups), _repeat_kv(v, groups), memory)
            _split_ok = True
            return out
        except (RuntimeError, NotImplementedError) as e:
            if _split_ok is None:
                log.info("cuDNN split attention unavailable (%s); using SDPA", e)
            _split_ok = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(t, total),
                                          enable_gqa=gqa)
