"""What an answer cites: each span in its context, ranked by the attention its tokens paid it.

The answer's own attention is recomputed once after it is generated (`memory_attention`): over
the question's memory (sink and stored intervals), then the frames not yet compressed, the
question and the answer. Each stored interval's share is the attention mass on its VSTs; the
frames not yet compressed are cited as the spans `spans` lists for them. The sink and the text
are left out, and the shares are normalised over the video.

An answer is generated in steps while the stream goes on, so what it cites is taken when it
starts (`Context.of`): the memory it read, copied, and the raw frames of that moment.

Shapes: L layers, G kv heads, M memory tokens, N raw tokens, Q question tokens, D head_dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..answer import Citation, IntervalSpan
from ..memory.store import IntervalRecord, MemoryStore
from ..model.attribution import memory_attention
from .stream import StreamState


@dataclass(frozen=True)
class Context:
    """What one answer was generated from."""

    rotated_keys: torch.Tensor
    """(L, 1, G, M, D) the memory's keys at positions 0..M-1 (a copy)."""
    values: torch.Tensor
    sink_tokens: int
    records: list[IntervalRecord]
    """The stored intervals in it, in memory order."""
    raw: torch.Tensor | None
    """(N, C) frames not yet compressed."""
    raw_spans: list[IntervalSpan]
    raw_sizes: list[int]
    """Raw tokens of each of ``raw_spans``."""
    question_ids: torch.Tensor
    """(Q,) the question as the model read it."""

    @classmethod
    def of(cls, state: StreamState, store: MemoryStore, records: list[IntervalRecord],
           raw: torch.Tensor | None, raw_spans: list[IntervalSpan],
           question_ids: torch.Tensor) -> Context:
        sizes = [part.shape[0] for part in state.raw_parts()]
        return cls(store.rotated_keys().clone(), store.values().clone(), store.sink_tokens,
                   list(records), raw, raw_spans, sizes, question_ids)

    @torch.no_grad()
    def cite(self, runtime, answer_ids: list[int]) -> tuple[Citation, ...]:
        """The spans ``answer_ids`` drew on, heaviest first (see the module docstring)."""
        if not answer_ids or (not self.records and not self.raw_spans):
            return ()
        model = runtime.model
        text = torch.cat((self.question_ids, torch.tensor(answer_ids[:-1], dtype=torch.long)))
        chunk = model.embed_ids(text.to(model.device)[None])  # (1, Q+A-1, C)
        n = 0
        if self.raw is not None and self.raw.numel():
            raw = self.raw.reshape(1, -1, chunk.shape[-1]).to(model.device, model.dtype)
            n = raw.shape[1]
            chunk = torch.cat((raw, chunk), dim=1)  # (1, N+Q+A-1, C)
        first = n + self.question_ids.shape[0] - 1  # the row that predicted the first token
        rows = torch.arange(first, first + len(answer_ids))
        mass = memory_attention(model, self.rotated_keys, self.values, chunk, rows)
        out: list[Citation] = []
        at = self.sink_tokens
        for r in self.records:
            out.append(Citation(r.t_start, r.t_end, float(mass[at:at + r.num_tokens].sum()),
                                r.id))
            at += r.num_tokens
        for span, size in zip(self.raw_spans, self.raw_sizes, strict=True):
            out.append(Citation(span.t_start, span.t_end, float(mass[at:at + size].sum()), None))
            at += size
        total = sum(c.weight for c in out) or 1.0
        ranked = sorted(out, key=lambda c: -c.weight)
        return tuple(Citation(c.t_start, c.t_end, c.weight / total, c.interval) for c in ranked)


__all__ = ["Context"]
