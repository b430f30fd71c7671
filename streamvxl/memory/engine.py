"""`MemoryEngine`: one stream's memory bound to a model, at the level of tensors and token ids.

`VideoMemory` turns frames and text into the calls here; the conformance tests call it directly
with the reference's pixel values and ids. Nothing here knows about frames, tokenizers or threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from ..model.cache import RotatedCache
from ..model.encoder import encode_text, encode_window, retained, window_plan
from ..model.generate import GREEDY, Generation, Sampling, decode_one_token, generate, prefill
from ..model.graphs import GraphDecoder
from ..model.layout import RemainderRule
from ..model.videoxl import VideoXL
from .store import EvictionPolicy, IntervalRecord, MemoryStore

# Shapes: F frames, T tokens per frame, N raw tokens, Q question tokens, C hidden, V vocabulary.


@dataclass
class EngineAnswer:
    """Result of `MemoryEngine.answer`."""

    generation: Generation
    prefill_logits: torch.Tensor | None
    """(Q', V) logits of every prefilled position when asked for, else None."""
    context_tokens: int
    """Tokens the question attended to: memory + open raw tokens + question."""


class MemoryEngine:
    """Sink, interval compression and answering over a `MemoryStore`.

    Args:
        model: the Video-XL model.
        store: where retained K/V live (its dtype/device match the model's).
        window: most raw tokens per interval-encoder forward.
        remainder: VST placement when r does not divide a window (see `streamvxl.model.layout`).
    """

    GRAPH_BUCKET = 2048
    """Decode-graph capacities are rounded up to this many tokens (one graph per bucket)."""

    def __init__(self, model: VideoXL, store: MemoryStore, window: int,
                 remainder: RemainderRule = "summarize", cuda_graphs: bool = True) -> None:
        self.model, self.store, self.window, self.remainder = model, store, window, remainder
        self.cuda_graphs = cuda_graphs and model.device.type == "cuda"
        self._decoders: dict[int, GraphDecoder] = {}

    @classmethod
    def for_model(cls, model: VideoXL, window: int | None = None,
                  token_budget: int | None = None, remainder: RemainderRule = "summarize",
                  eviction: EvictionPolicy = "drop_oldest") -> MemoryEngine:
        llm = model.config.llm
        window = window or model.config.vst.window
        # scratch: the largest expanded window (r = 1 doubles it)
        store = MemoryStore(llm.num_hidden_layers, llm.num_key_value_heads, llm.dim_per_head,
                            model.dtype, model.device, llm.rope_theta, token_budget, eviction,
                            scratch_tokens=2 * window)
        return cls(model, store, window, remainder)

    @property
    def has_sink(self) -> bool:
        return self.store.sink_tokens > 0

    @torch.no_grad()
    def set_prefix(self, ids: torch.Tensor) -> None:
        """Encode the prompt prefix ids (S,) into the sink."""
        kv = encode_text(self.model, None, None, ids.to(self.model.device)[None])
        self.store.set_sink(kv.keys, kv.values)

    @torch.no_grad()
    def compress(self, tokens: torch.Tensor, ratio: int | None, *, t_start: float, t_end: float,
                 frame_start: int, frame_end: int, embedding: torch.Tensor | None = None
                 ) -> tuple[IntervalRecord, list[IntervalRecord]]:
        """Compress one closed interval's tokens (F, T, C) or (N, C) and store it."""
        raw = tokens.reshape(1, -1, tokens.shape[-1]).to(self.model.device, self.model.dtype)
        plan = window_plan(raw.shape[1], ratio, self.window, self.remainder)
        store = self.store
        evicted = store.begin_interval(retained(plan))
        try:
            for start, end, layout in plan:
                # each window attends to [memory (with this interval's earlier VSTs) | window]
                sink = store.window_sink(layout.length)
                kv = encode_window(self.model, sink, store.num_tokens, raw[:, start:end],
                                   layout)
                store.append_tokens(kv.keys, kv.values)
        except BaseException:
            store.abort_interval()  # no half interval: memory stays as it was (minus evictions)
            raise
        record = store.end_interval(t_start=t_start, t_end=t_end, frame_start=frame_start,
                                    frame_end=frame_end, ratio=ratio, embedding=embedding)
        return record, evicted

    @torch.no_grad()
    def answer(self, open_tokens: torch.Tensor | None, question_ids: torch.Tensor,
               max_new_tokens: int, eos_ids: tuple[int, ...] = (),
               sampling: Sampling = GREEDY, all_logits: bool = False,
               on_token: Callable[[int], None] | None = None,
               keep_logits: bool = True) -> EngineAnswer:
        """Answer after memory + the open interval's raw tokens (N, C) + question ids (Q,).

        The memory is not modified: the question and the open tokens live in a temporary cache.
        ``keep_logits=False`` drops the per-step logits, which lets greedy decoding on CUDA run
        the argmax inside the graph with no host round trip per token.
        """
        model = self.model
        q = model.embed_ids(question_ids.to(model.device)[None])  # (1, Q, C)
        if open_tokens is not None and open_tokens.numel():
            raw = open_tokens.reshape(1, -1, q.shape[-1]).to(model.device, model.dtype)
            q = torch.cat((raw, q), dim=1)  # (1, N+Q, C)
        mem_k, mem_v = self.store.rotated_keys(), self.store.values()
        m = mem_k.shape[3]
        need = m + q.shape[1] + max_new_tokens
        if self.cuda_graphs:
            decoder = self._graph_decoder(need)
            cache, step = decoder.cache, decoder.step
        else:
            llm = model.config.llm
            cache = RotatedCache(llm.num_hidden_layers, 1, llm.num_key_value_heads,
                                 llm.dim_per_head, need, model.dtype, model.device)
            step = partial(decode_one_token, model, cache)
        cache.load(mem_k, mem_v)

        logits = prefill(model, cache, q, all_logits=all_logits)
        last = logits[:, -1] if all_logits else logits
        if self.cuda_graphs and not keep_logits and sampling.temperature == 0:
            gen = self._greedy_on_device(decoder, last, max_new_tokens, eos_ids, on_token)
        else:
            gen = generate(last, step, max_new_tokens, eos_ids, sampling, on_token)
        return EngineAnswer(gen, logits[0] if all_logits else None, m + q.shape[1])

    @staticmethod
    def _greedy_on_device(decoder: GraphDecoder, first_logits: torch.Tensor, max_new: int,
                          eos_ids: tuple[int, ...],
                          on_token: Callable[[int], None] | None) -> Generation:
        first = first_logits.argmax(dim=-1)  # (1,)
        ids = [int(first.item())]
        if on_token is not None:
            on_token(ids[0])
        if ids[0] not in eos_ids and max_new > 1:
            rest = decoder.greedy(first, max_new - 1, eos_ids)
            ids += rest
            if on_token is not None:
                for t in rest:
                    on_token(t)
        return Generation(ids, [], ids[-1] in eos_ids)

    def _graph_decoder(self, need: int) -> GraphDecoder:
        """The decoder for the smallest bucket holding ``need`` tokens (two kept at most)."""
        capacity = -(-need // self.GRAPH_BUCKET) * self.GRAPH_BUCKET
        decoder = self._decoders.pop(capacity, None)
        if decoder is None:
            shared = next(iter(self._decoders.values()), None)  # one q/k/v snapshot for all
            decoder = GraphDecoder(self.model, capacity, shared.fused if shared else None)
        self._decoders[capacity] = decoder  # most recently used last
        while len(self._decoders) > 2:
            del self._decoders[next(iter(self._decoders))]
        return decoder
