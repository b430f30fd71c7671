"""A question's own queries: what retrieval scores stored intervals with.

One short forward pass over [memory | question ids] (in practice: the sink, then the question),
keeping each layer's pre-RoPE queries of the question's last token: the position whose
attention produces the first token of the answer. (Measured on needle haystacks, its queries
rank the interval holding the needle far higher than the question tokens' mean.) Queries are
taken from ``q_proj`` as the pass computes them (a forward hook), so nothing of the decoder is
re-implemented here.

On a GPU the pass is launch-bound (a few hundred small kernels queued from Python: 33 ms of
streamvxl-tiny's 30 layers on an H200, more than the answer's own prefill), so `QueryGraphs`
captures it as a CUDA graph per question length bucket and replays it: the question is padded
at its end, and causal attention keeps the padding out of every real token's queries.

Shapes: L' layers kept, B batch (1), T question tokens (Tb: its bucket), M memory tokens,
H query heads, G kv heads, D head_dim.
"""

from __future__ import annotations

import logging

import torch

from .attention import AttentionKernels
from .cache import ConcatCache
from .videoxl import VideoXL

log = logging.getLogger(__name__)


def _pass(model: VideoXL, memory_k: torch.Tensor | None, memory_v: torch.Tensor | None,
          ids: torch.Tensor, layers: slice, kernels: AttentionKernels | None) -> torch.Tensor:
    """(L', T, H*D) pre-RoPE queries of every question row in ``layers``."""
    caught: list[torch.Tensor] = []
    hooks = [layer.self_attn.q_proj.register_forward_hook(
        lambda _m, _i, out: caught.append(out[0]))  # (T, H*D)
        for layer in model.model.layers[layers]]
    try:
        cache = ConcatCache(memory_k, memory_v, model.config.llm.rope_theta, kernels)
        model.model.forward_chunk(model.embed_ids(ids[None]), cache.length, cache)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(caught)


@torch.no_grad()
def question_queries(model: VideoXL, memory_k: torch.Tensor | None,
                     memory_v: torch.Tensor | None, ids: torch.Tensor, layers: slice,
                     kernels: AttentionKernels | None = None) -> torch.Tensor:
    """Pre-RoPE queries (L', H, D) float32, on the model's device, of the last of question
    ``ids`` (T,) in the ``layers``, the question attending to memory (L, 1, G, M, D) pre-RoPE
    as when asked."""
    llm = model.config.llm
    rows = _pass(model, memory_k, memory_v, ids.to(model.device), layers, kernels)
    return rows[:, -1].float().reshape(rows.shape[0], llm.num_attention_heads, llm.dim_per_head)


class _Captured:
    """One captured pass: static memory (L, 1, G, M, D), ids (Tb,) and queries (L', Tb, H*D)."""

    def __init__(self, model: VideoXL, memory_shape: torch.Size, bucket: int, layers: slice,
                 kernels: AttentionKernels | None) -> None:
        dev = model.device
        self.memory_k = torch.zeros(memory_shape, dtype=model.dtype, device=dev)
        self.memory_v = torch.zeros(memory_shape, dtype=model.dtype, device=dev)
        self.ids = torch.zeros(bucket, dtype=torch.long, device=dev)

        def run() -> torch.Tensor:
            return _pass(model, self.memory_k, self.memory_v, self.ids, layers, kernels)

        side = torch.cuda.Stream()  # warm-up off the capture, as torch.cuda.graphs advises
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                run()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: other threads of the process (producers, callers) may run meanwhile
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.out = run()

    def __call__(self, memory_k: torch.Tensor, memory_v: torch.Tensor,
                 ids: torch.Tensor) -> torch.Tensor:
        self.memory_k.copy_(memory_k)
        self.memory_v.copy_(memory_v)
        t = ids.shape[0]
        self.ids[:t].copy_(ids)
        self.ids[t:].zero_()  # after the question: causal attention keeps it out of rows < t
        self.graph.replay()
        return self.out[:, t - 1]  # (L', H*D)


class QueryGraphs:
    """`question_queries` replayed from CUDA graphs, one per (memory shape, length bucket).

    Questions longer than the largest bucket, and any pass the capture fails on, run eagerly
    (the same numbers, only slower; a failed capture is logged once and not tried again).

    Args:
        model: a CUDA `VideoXL`.
        layers: the layers whose queries are kept (`streamvxl.memory.recall.digest_layers`).
        kernels: the runtime's attention kernels.
    """

    BUCKETS = (32, 64, 128, 256)

    def __init__(self, model: VideoXL, layers: slice,
                 kernels: AttentionKernels | None = None) -> None:
        if model.device.type != "cuda":
            raise RuntimeError("QueryGraphs needs a CUDA model")
        self.model, self.layers, self.kernels = model, layers, kernels
        self._graphs: dict[tuple[torch.Size, int], _Captured] = {}
        self._failed = False

    @torch.no_grad()
    def __call__(self, memory_k: torch.Tensor | None, memory_v: torch.Tensor | None,
                 ids: torch.Tensor) -> torch.Tensor:
        """Pre-RoPE queries (L', H, D) float32 of the last of ``ids`` (T,), as
        `question_queries` computes them over memory (L, 1, G, M, D)."""
        llm = self.model.config.llm
        ids = ids.to(self.model.device)
        bucket = next((b for b in self.BUCKETS if b >= ids.shape[0]), None)
        if bucket is None or self._failed or ids.shape[0] == 0 or memory_k is None \
                or memory_v is None:
            return question_queries(self.model, memory_k, memory_v, ids, self.layers,
                                    self.kernels)
        key = (memory_k.shape, bucket)
        captured = self._graphs.get(key)
        if captured is None:
            try:
                captured = _Captured(self.model, memory_k.shape, bucket, self.layers,
                                     self.kernels)
            except RuntimeError as e:  # a kernel that cannot be captured: stay eager
                log.warning("question pass not captured as a CUDA graph (%s); running it "
                            "eagerly", e)
                self._failed = True
                return question_queries(self.model, memory_k, memory_v, ids, self.layers,
                                        self.kernels)
            self._graphs[key] = captured
        rows = captured(memory_k, memory_v, ids)
        return rows.float().reshape(rows.shape[0], llm.num_attention_heads, llm.dim_per_head)


__all__ = ["QueryGraphs", "question_queries"]
