"""CUDA-graph decoding: one graph replay per generated token.

Eager decoding of a 7B model launches ~1,000 small kernels per token, so the GPU waits on Python.
A graph captures one decode step over a cache of fixed capacity; every step then costs one
replay. Shapes must be static, so attention runs over all ``capacity`` slots with a mask of the
valid ones, and the write position and token are device tensors updated before each replay.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .attention import AttentionKernels
from .cache import RotatedCache
from .decoder import KVCache
from .generate import _logits
from .videoxl import VideoXL

# Shapes: L layers, B batch (1), G kv heads, N capacity, D head_dim, V vocabulary.


class _StaticSlots(KVCache):
    """Writes the step's K/V at slot ``pos`` and attends over all slots, biased to <= pos;
    q/k/v come from one fused GEMM per layer (``fused``)."""

    def __init__(self, cache: RotatedCache, pos: torch.Tensor,
                 fused: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.cache, self.pos, self.fused_qkv = cache, pos, fused
        self.mask: torch.Tensor | None = None

    def extend(self, layer: int, k_rot: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        self.cache.k[layer].index_copy_(2, self.pos, k_rot)  # (B, G, N, D) at slot pos
        self.cache.v[layer].index_copy_(2, self.pos, v)
        return self.cache.k[layer], self.cache.v[layer]


class GraphDecoder:
    """A `RotatedCache` of fixed capacity plus a captured one-token decode step (CUDA only).

    Reused across questions: `load` puts the memory in, the question is prefilled eagerly into
    the same buffers (through ``kernels``), then `step` replays the graph once per token.
    """

    def __init__(self, model: VideoXL, capacity: int,
                 fused: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                 kernels: AttentionKernels | None = None) -> None:
        if model.device.type != "cuda":
            raise RuntimeError("GraphDecoder needs a CUDA model")
        llm = model.config.llm
        dev = model.device
        self.model = model
        # one q/k/v GEMM per layer inside the graphs; the snapshot stays alive with them
        # (weights changed later are not seen: build a new decoder after changing weights).
        # Decoders of one model can share a snapshot (``fused``): it is ~1 GB at 7B.
        self.fused = fused or [layer.self_attn.fused_weights() for layer in model.model.layers]
        self.capacity = capacity
        self.cache = RotatedCache(llm.num_hidden_layers, 1, llm.num_key_value_heads,
                                  llm.dim_per_head, capacity, model.dtype, dev, kernels)
        self._token = torch.zeros(1, dtype=torch.long, device=dev)
        self._pos = torch.zeros(1, dtype=torch.long, device=dev)
        self._slots = torch.arange(capacity, device=dev)
        self._slots_cache = _StaticSlots(self.cache, self._pos, self.fused)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._logits: torch.Tensor | None = None
        self._greedy_graph: torch.cuda.CUDAGraph | None = None

    @torch.no_grad()
    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Feed ``token`` (1,) at the next slot; returns the next logits (1, V)."""
        if self.cache.length >= self.capacity:
            raise RuntimeError(f"GraphDecoder capacity {self.capacity} exhausted")
        self._token.copy_(token)
        self._pos.fill_(self.cache.length)
        if self._graph is None:
            self._capture()
        self._graph.replay()
        self.cache.advance(1)
        return self._logits.clone()

    @torch.no_grad()
    def greedy(self, token: torch.Tensor, n: int, eos_ids: tuple[int, ...],
               check_every: int = 8, on_token: Callable[[int], None] | None = None
               ) -> list[int]:
        """Feed ``token`` (1,) and decode up to ``n`` more greedily; ids after ``token``.

        The argmax and the position update run inside the graph, so replays queue back to back
        with no host round trip per token; the host looks for a stop token every
        ``check_every`` tokens (the few extra decoded steps are discarded) and hands each kept
        id to ``on_token`` then.
        """
        n = min(n, self.capacity - self.cache.length)
        if n <= 0:
            return []
        self._token.copy_(token)
        self._pos.fill_(self.cache.length)
        if self._greedy_graph is None:
            self._capture_greedy()
        ids = torch.empty(n, dtype=torch.long, device=self._token.device)
        out: list[int] = []
        for start in range(0, n, check_every):
            stop = min(start + check_every, n)
            for i in range(start, stop):
                self._greedy_graph.replay()
                ids[i] = self._token[0]
            chunk = ids[start:stop].tolist()
            hit = next((j for j, t in enumerate(chunk) if t in eos_ids), None)
            kept = chunk if hit is None else chunk[:hit + 1]
            out += kept
            if on_token is not None:
                for t in kept:
                    on_token(t)
            if hit is not None:
                break
        self.cache.advance(len(out))
        return out

    def _forward(self) -> torch.Tensor:
        x = self.model.embed_ids(self._token[None])  # (1, 1, C)
        visible = self._slots <= self._pos  # (N,)
        self._slots_cache.mask = torch.zeros(visible.shape, device=visible.device).masked_fill_(
            ~visible, float("-inf"))  # additive bias, computed once for all layers
        hidden, _ = self.model.model.forward_chunk(x, self._pos, self._slots_cache)
        return _logits(self.model, hidden[:, -1])

    def _greedy_forward(self) -> None:
        logits = self._forward()
        self._token.copy_(logits.argmax(dim=-1))
        self._pos.add_(1)

    def _capture(self) -> None:
        self._graph, self._logits = self._record(self._forward)

    def _capture_greedy(self) -> None:
        self._greedy_graph, _ = self._record(self._greedy_forward)

    def _record(self, fn):
        # Warm-up runs write K/V into slots the real replays rewrite before anything reads them.
        pos, token = self._pos.clone(), self._token.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._pos.copy_(pos)
                self._token.copy_(token)
                fn()
        torch.cuda.current_stream().wait_stream(side)
        self._pos.copy_(pos)
        self._token.copy_(token)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the runtime's worker thread captures while other threads of the
        # process (producers, callers) may still be running CUDA-free Python
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = fn()
        self._pos.copy_(pos)
        self._token.copy_(token)
        return graph, out
