"""Answering over a memory: the one place that chooses how tokens are decoded.

Three paths, by device and request:

- CUDA, greedy, no logits wanted: a captured graph runs the argmax on the device; the host looks
  for a stop token every few tokens (`GraphDecoder.greedy`).
- CUDA otherwise: one graph replay per token, sampled on the host (`GraphDecoder.step`).
- CPU (or graphs off): eager decoding over a `RotatedCache` (`decode_one_token`).

The graph decoders belong to the runtime: one set per model, their buffers sized in buckets and
sharing one fused q/k/v snapshot (~1 GB at 7B), whatever the number of streams.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial

import torch

from ..model.attention import AttentionKernels
from ..model.cache import RotatedCache
from ..model.generate import (
    GREEDY,
    Generation,
    Sampling,
    decode_one_token,
    generate_steps,
    prefill,
    run_steps,
)
from ..model.graphs import GraphDecoder
from ..model.videoxl import VideoXL

# Shapes: L layers, G kv heads, M memory tokens, Q prompt tokens after memory, C hidden,
# D head_dim, V vocabulary.


@dataclass
class Decoded:
    """What `decode` produced."""

    generation: Generation
    prefill_logits: torch.Tensor | None
    """(Q, V) logits of every prefilled position when asked for, else None."""
    context_tokens: int
    """Tokens the answer attended to before generating: memory + prompt (M + Q)."""


class DecodeGraphs:
    """The CUDA-graph decoders of one model: capacities rounded up to `BUCKET` tokens, one
    q/k/v snapshot shared by all of them.

    An answer leases a decoder for as long as it decodes (answers in progress are interleaved
    with other work, so several may be out at once) and gives it back; of the decoders not in
    use, the `KEEP` most recently used are kept. Streams of one budget ask for a few
    neighbouring buckets (memory + the frames not yet compressed + question + answer); keeping
    four spares building and capturing a decoder again when questions alternate between them
    (a 10k-token decoder holds ~0.6 GB at 7B).
    """

    BUCKET = 2048
    KEEP = 4

    def __init__(self, model: VideoXL, kernels: AttentionKernels | None) -> None:
        self.model, self.kernels = model, kernels
        self._free: list[GraphDecoder] = []  # least recently used first
        self._leased: list[GraphDecoder] = []
        self._fused: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def lease(self, need: int) -> GraphDecoder:
        """A decoder of the smallest bucket holding ``need`` tokens, for this answer alone."""
        capacity = -(-need // self.BUCKET) * self.BUCKET
        decoder = next((d for d in reversed(self._free) if d.capacity == capacity), None)
        if decoder is None:
            decoder = GraphDecoder(self.model, capacity, self._fused, self.kernels)
            self._fused = decoder.fused
        else:
            self._free.remove(decoder)
        self._leased.append(decoder)
        return decoder

    def release(self, decoder: GraphDecoder) -> None:
        self._leased.remove(decoder)
        self._free.append(decoder)  # most recently used last
        while len(self._free) > self.KEEP:
            del self._free[0]

    @property
    def allocated_bytes(self) -> int:
        caches = sum(d.cache.k.untyped_storage().nbytes() * 2
                     for d in self._free + self._leased)
        fused = sum(w.untyped_storage().nbytes() + b.untyped_storage().nbytes()
                    for w, b in self._fused or [])
        return caches + fused


@torch.no_grad()
def decode(model: VideoXL, memory_k: torch.Tensor, memory_v: torch.Tensor,
           prompt: torch.Tensor, max_new_tokens: int, eos_ids: tuple[int, ...] = (),
           sampling: Sampling = GREEDY, *, graphs: DecodeGraphs | None = None,
           kernels: AttentionKernels | None = None, all_logits: bool = False,
           on_token: Callable[[int], None] | None = None, keep_logits: bool = True) -> Decoded:
    """Prefill ``prompt`` (1, Q, C) after the memory (L, 1, G, M, D; keys rotated to 0..M-1),
    then generate up to ``max_new_tokens``.

    ``graphs``: decode with CUDA graphs (None: eagerly). ``keep_logits=False`` drops the
    per-step logits, which lets greedy decoding run the argmax inside the graph.
    ``on_token`` sees each id as it is decided. The memory is not modified.
    """
    return run_steps(decode_steps(model, memory_k, memory_v, prompt, max_new_tokens, eos_ids,
                                  sampling, graphs=graphs, kernels=kernels,
                                  all_logits=all_logits, on_token=on_token,
                                  keep_logits=keep_logits))


@torch.no_grad()  # torch applies it around every piece of a generator
def decode_steps(model: VideoXL, memory_k: torch.Tensor, memory_v: torch.Tensor,
                 prompt: torch.Tensor, max_new_tokens: int, eos_ids: tuple[int, ...] = (),
                 sampling: Sampling = GREEDY, *, graphs: DecodeGraphs | None = None,
                 kernels: AttentionKernels | None = None, all_logits: bool = False,
                 on_token: Callable[[int], None] | None = None, keep_logits: bool = True,
                 chunk: int = 8,
                 on_done: Callable[[RotatedCache, Generation], None] | None = None
                 ) -> Generator[None, None, Decoded]:
    """`decode` in pieces: yields once the first token is out and then after every ``chunk``
    tokens; returns the `Decoded`. The memory is copied in at the start, so whatever happens
    to it between the pieces does not change the answer. ``on_done`` is called with the cache
    ([memory | prompt | the answer but its last token]) and the generation before the cache
    is given back (citations read the answer's context from it, not from a copy)."""
    m = memory_k.shape[3]
    need = m + prompt.shape[1] + max_new_tokens
    decoder = graphs.lease(need) if graphs is not None else None
    try:
        if decoder is not None:
            cache, step = decoder.cache, decoder.step
        else:
            llm = model.config.llm
            cache = RotatedCache(llm.num_hidden_layers, 1, llm.num_key_value_heads,
                                 llm.dim_per_head, need, model.dtype, model.device, kernels)
            step = partial(decode_one_token, model, cache)
        cache.load(memory_k, memory_v)
        logits = prefill(model, cache, prompt, all_logits=all_logits)
        last = logits[:, -1] if all_logits else logits
        if decoder is not None and not keep_logits and sampling.temperature == 0:
            gen = yield from _greedy_on_device(decoder, last, max_new_tokens, eos_ids, on_token,
                                               chunk)
        else:
            gen = yield from generate_steps(last, step, max_new_tokens, eos_ids, sampling,
                                            on_token, chunk)
        if on_done is not None:
            on_done(cache, gen)
        return Decoded(gen, logits[0] if all_logits else None, m + prompt.shape[1])
    finally:
        if decoder is not None:
            graphs.release(decoder)


def _greedy_on_device(decoder: GraphDecoder, first_logits: torch.Tensor, max_new: int,
                      eos_ids: tuple[int, ...], on_token: Callable[[int], None] | None,
                      chunk: int) -> Generator[None, None, Generation]:
    first = first_logits.argmax(dim=-1)  # (1,)
    ids = [int(first.item())]
    if on_token is not None:
        on_token(ids[0])
    token = first
    while ids[-1] not in eos_ids and len(ids) < max_new:
        yield
        n = min(chunk, max_new - len(ids))
        new = decoder.greedy(token, n, eos_ids, check_every=chunk, on_token=on_token)
        ids += new
        if len(new) < n:  # a stop token, or the decoder's capacity reached
            break
        token = torch.tensor([ids[-1]], device=first.device)
    return Generation(ids, [], ids[-1] in eos_ids)
