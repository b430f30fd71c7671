"""The interval encoder: raw visual tokens -> the K/V of a few VSTs per layer.

Each window is one forward pass over [memory | window], full-coverage (every window token sees all
of memory and, causally, the window, VSTs included). Afterwards only the VSTs' pre-RoPE K/V are
kept; the raw tokens' K/V are dropped. Later windows of the same interval see the VSTs of the
earlier ones ("accumulation"), exactly as Video-XL does.
"""

from __future__ import annotations

import torch

from .attention import AttentionKernels
from .cache import ConcatCache
from .decoder import ChunkKV, KVCache, TokenRoute
from .layout import RemainderRule, WindowLayout, split_windows, window_layout
from .videoxl import VideoXL

# Shapes: L layers, B batch, G kv heads, M memory tokens, N raw tokens, W expanded window,
# C hidden, D head_dim.


def window_embeddings(model: VideoXL, raw: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """Scatter raw tokens (B, N, C) and the VST embedding into the expanded window (B, W, C)."""
    b, _, c = raw.shape
    raw_slots, vst_slots = layout.on(raw.device)
    out = raw.new_empty(b, layout.length, c)
    out = out.index_copy(1, raw_slots, raw)
    if layout.num_vst:
        vst = model.vst_embedding().to(raw.dtype).expand(b, layout.num_vst, c)
        out = out.index_copy(1, vst_slots, vst)
    return out


def encode_window(model: VideoXL, cache: KVCache, start: int, raw: torch.Tensor,
                  layout: WindowLayout) -> ChunkKV:
    """One window after ``start`` cached tokens; returns the K/V to retain (L, B, G, n, D).

    n is the VST count, or the raw-token count when ``layout.ratio`` is None (no compression).
    ``cache`` supplies memory to attend to: a `ConcatCache` (functional, autograd-safe) or the
    runtime's in-place encoder workspace.
    """
    embeds = window_embeddings(model, raw, layout)
    if layout.ratio is None:
        route, keep = None, None
    else:
        route = TokenRoute(vst=layout.on(raw.device)[1])
        keep = route.vst
    _, kv = model.model.forward_chunk(embeds, start, cache, route, need_hidden=False, keep=keep)
    return kv


def window_plan(num_raw: int, ratio: int | None, window: int,
                remainder: RemainderRule = "summarize") -> list[tuple[int, int, WindowLayout]]:
    """The windows of an interval of ``num_raw`` raw tokens: (start, end, layout) each."""
    return [(s, e, window_layout(e - s, ratio, remainder)) for s, e in split_windows(num_raw,
                                                                                      window)]


def retained(plan: list[tuple[int, int, WindowLayout]]) -> int:
    """Tokens an interval keeps: its VSTs, or every raw token without compression."""
    return sum(lay.num_raw if lay.ratio is None else lay.num_vst for _, _, lay in plan)


def _cat(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    return b if a is None else torch.cat((a, b), dim=3)


def encode_interval(model: VideoXL, memory_k: torch.Tensor | None,
                    memory_v: torch.Tensor | None, tokens: torch.Tensor, ratio: int | None,
                    window: int, remainder: RemainderRule = "summarize",
                    kernels: AttentionKernels | None = None) -> ChunkKV:
    """Compress an interval's raw tokens (B, N, C) into retained K/V (L, B, G, n, D).

    Memory (pre-RoPE, L x B x G x M x D, or None when empty) is what the interval may attend to:
    the sink and the VSTs of earlier intervals. It is not modified.
    """
    kept_k: torch.Tensor | None = None
    kept_v: torch.Tensor | None = None
    theta = model.config.llm.rope_theta
    for start, end, layout in window_plan(tokens.shape[1], ratio, window, remainder):
        mem_k = memory_k if kept_k is None else _cat(memory_k, kept_k)
        mem_v = memory_v if kept_v is None else _cat(memory_v, kept_v)
        cache = ConcatCache(mem_k, mem_v, theta, kernels)
        kv = encode_window(model, cache, cache.length, tokens[:, start:end], layout)
        kept_k, kept_v = _cat(kept_k, kv.keys), _cat(kept_v, kv.values)
    assert kept_k is not None and kept_v is not None
    return ChunkKV(kept_k, kept_v)


def encode_text(model: VideoXL, memory_k: torch.Tensor | None, memory_v: torch.Tensor | None,
                ids: torch.Tensor, kernels: AttentionKernels | None = None) -> ChunkKV:
    """Text ids (B, T) after memory; returns all their pre-RoPE K/V (the sink uses this)."""
    cache = ConcatCache(memory_k, memory_v, model.config.llm.rope_theta, kernels)
    _, kv = model.model.forward_chunk(model.embed_ids(ids), cache.length, cache,
                                      need_hidden=False)
    return kv
