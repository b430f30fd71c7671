"""CUDA-graph decoding: one graph replay per generated token.

Eager decoding of a 7B model launches ~1,000 small kernels per token, so the GPU waits on Python.
A graph captures one decode step over a cache of fixed capacity; every step then costs one
replay. Shapes must be static, so attention runs over all ``capacity`` slots with a mask of the
valid ones, and the write position and token are device tensors updated before each replay.
"""

from __future__ import annotations

import torch

from .cache import RotatedCache
from .decoder import KVSink
from .generate import _logits
from .videoxl import VideoXL

# Shapes: L layers, B batch (1), G kv heads, N capacity, D head_dim, V vocabulary.


class _StaticSlots(KVSink):
    """Writes the step's K/V at slot ``pos`` and attends over all slots, masked to <= pos."""

    def __init__(self, cache: RotatedCache, pos: torch.Tensor) -> None:
        self.cache, self.pos = cache, pos
        self.mask: torch.Tensor | None = None

    def extend(self, layer: int, k_rot: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        self.cache.k[layer].index_copy_(2, self.pos, k_rot)  # (B, G, N, D) at slot pos
        self.cache.v[layer].index_copy_(2, self.pos, v)
        return self.cache.k[layer], self.cache.v[layer]


class GraphDecoder:
    """A `RotatedCache` of fixed capacity plus a captured one-token decode step (CUDA only).

    Reused across questions: `load` puts the memory in, the question is prefilled eagerly into
    the same buffers, then `step` replays the graph once per token.
    """

    def __init__(self, model: VideoXL, capacity: int) -> None:
        if model.device.type != "cuda":
            raise RuntimeError("GraphDecoder needs a CUDA model")
        llm = model.config.llm
        dev = model.device
        self.model = model
        self.capacity = capacity
        self.cache = RotatedCache(llm.num_hidden_layers, 1, llm.num_key_value_heads,
                                  llm.dim_per_head, capacity, model.dtype, dev)
        self._token = torch.zeros(1, dtype=torch.long, device=dev)
        self._pos = torch.zeros(1, dtype=torch.long, device=dev)
        self._slots = torch.arange(capacity, device=dev)
        self._sink = _StaticSlots(self.cache, self._pos)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._logits: torch.Tensor | None = None

    def load(self, rotated_keys: torch.Tensor, values: torch.Tensor) -> None:
        """Start a new answer over memory (L, 1, G, M, D), keys rotated to 0..M-1."""
        self.cache.load(rotated_keys, values)

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

    def _forward(self) -> torch.Tensor:
        x = self.model.embed_ids(self._token[None])  # (1, 1, C)
        self._sink.mask = self._slots <= self._pos  # (N,) valid slots
        hidden, _ = self.model.model.forward_chunk(x, self._pos, self._sink)
        return _logits(self.model, hidden[:, -1])

    def _capture(self) -> None:
        # Warm-up runs write this step's K/V into slot pos, which the replay rewrites anyway.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._logits = self._forward()
        self._graph = graph
