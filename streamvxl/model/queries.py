"""A question's own queries: what retrieval scores stored intervals with.

One short forward pass over [memory | question ids] (in practice: the sink, then the question),
keeping each layer's pre-RoPE queries of the question's last token: the position whose
attention produces the first token of the answer. (Measured on needle haystacks, its queries
rank the interval holding the needle far higher than the question tokens' mean.) Queries are
taken from ``q_proj`` as the pass computes them (a forward hook), so nothing of the decoder is
re-implemented here.

Shapes: L' layers kept, B batch (1), T question tokens, H query heads, D head_dim.
"""

from __future__ import annotations

import torch

from .attention import AttentionKernels
from .cache import ConcatCache
from .videoxl import VideoXL


@torch.no_grad()
def question_queries(model: VideoXL, memory_k: torch.Tensor | None,
                     memory_v: torch.Tensor | None, ids: torch.Tensor, layers: slice,
                     kernels: AttentionKernels | None = None) -> torch.Tensor:
    """Pre-RoPE queries (L', H, D) float32 of the last of question ``ids`` (T,) in the
    ``layers``, the question attending to memory (L, 1, G, M, D) pre-RoPE as when asked."""
    llm = model.config.llm
    h, d = llm.num_attention_heads, llm.dim_per_head
    caught: list[torch.Tensor] = []
    hooks = [layer.self_attn.q_proj.register_forward_hook(
        lambda _m, _i, out: caught.append(out[:, -1].float()))  # (1, H*D): the last token
        for layer in model.model.layers[layers]]
    try:
        cache = ConcatCache(memory_k, memory_v, llm.rope_theta, kernels)
        model.model.forward_chunk(model.embed_ids(ids.to(model.device)[None]), cache.length,
                                  cache)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(caught).reshape(len(caught), h, d).cpu()  # (L', H, D)


__all__ = ["question_queries"]
