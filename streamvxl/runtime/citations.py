"""What an answer cites: each span in its context, ranked by the attention its tokens paid it.

The answer's own attention is recomputed once after it is generated (`memory_attention`), from
the decoder's cache before it is given back: it holds [memory | frames not yet compressed |
question | answer], so only the rows that predicted the answer's tokens (the question's last
token and the answer's tokens but the last) go through the model again, reading the rest from
the cache. Each stored interval's weight is the attention mass on its VSTs in the layer and
head that gave it the most (`span_weights`); the frames not yet compressed are cited as the
spans `spans` lists for them. The sink and the text are left out, and the weights are
normalised over the video.

When the stream keeps its frames' text-to-frame embeddings (`Retrieval.scorer` "frames" or
"both"), each span's attention weight is multiplied by the share the text-to-frame scorer gives
it among the spans in context -- a softmax over them of the question's best cosine with the
span's frames at the scorer's own logit scale, CLIP's zero-shot choice of "which of these shows
what the words name" -- and renormalised: of the spans the answer read, those that show what
the question names come first. A model that reads a sign attends to it; one that does not
look for a shape still had it in context, and the scorer points there.

A question about a moment ("when did the star leave?") is cited at that moment: where the
runtime has a `streamvxl.memory.moments.MomentProbe` for its model, the probe reads the
question's own queries (`question_moment`), and the span holding the first (appear) or last
(leave) frame of the named thing's stay on screen is weighed up over the rest of the stay
(`streamvxl.memory.moments.moment_scores`): every span of an object's stay shows the object,
one of them shows it arrive. The stay is the one around the span the plain citation puts first
(attention x match): over hours a look-alike can match the words a little better than the
object the answer read, and the moment must not move the citation onto it.

Nothing of the memory is copied: an answer is generated in steps while the stream goes on, but
its cache is its own.

Shapes: L layers, G kv heads, M memory tokens, N raw tokens, Q question tokens, A answer
tokens, D head_dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..answer import Citation, IntervalSpan
from ..memory.moments import moment_scores
from ..memory.recall import digest_layers, look_scores
from ..memory.store import IntervalRecord, MemoryStore
from ..model.attribution import memory_attention, span_weights
from ..model.cache import RotatedCache
from .retrieval import own_queries
from .stream import StreamState


@dataclass(frozen=True)
class Context:
    """What one answer was generated from, in the order its decoder's cache holds it."""

    memory_tokens: int
    """M: sink + the stored intervals read."""
    sink_tokens: int
    records: list[IntervalRecord]
    """The stored intervals in it, in memory order."""
    raw_spans: list[IntervalSpan]
    raw_sizes: list[int]
    """Raw tokens of each of ``raw_spans`` (N in all)."""
    question_ids: torch.Tensor
    """(Q,) the question as the model read it."""
    looks: list[torch.Tensor | None] | None = None
    """Text-to-frame embeddings (k, E') of each span (``records``, then ``raw_spans``); None
    when the stream does not keep them."""
    text: torch.Tensor | None = None
    """(E',) the question's text embedding, with ``looks``."""
    scale: float = 1.0
    """The text-to-frame scorer's logit scale."""
    moment: torch.Tensor | None = None
    """(3,) P(other), P(appear), P(leave) of the question (`question_moment`), with ``looks``;
    None: weigh the plain match."""
    follows: list[bool] | None = None
    """Per span (``records``, then ``raw_spans``): it comes right after the span before it in
    the stream, nothing between (a stay on screen runs only through such spans)."""

    @classmethod
    def of(cls, state: StreamState, store: MemoryStore, records: list[IntervalRecord],
           raw_spans: list[IntervalSpan], question_ids: torch.Tensor,
           text: torch.Tensor | None = None, scale: float = 1.0) -> Context:
        sizes = [part.shape[0] for part in state.raw_parts()]
        looks = None
        if text is not None:
            looks = [r.looks for r in records] + state.raw_looks()
        # interval ids count up the stream; the frames not yet compressed come right after the
        # newest stored interval, and after one another
        newest = state.store.records[-1].id if state.store.records else None
        follows = [i > 0 and r.id == records[i - 1].id + 1 for i, r in enumerate(records)]
        follows += [k > 0 or (bool(records) and records[-1].id == newest)
                    for k in range(len(raw_spans))]
        return cls(store.num_tokens, store.sink_tokens, list(records), raw_spans, sizes,
                   question_ids, looks, text, scale, follows=follows)

    @torch.no_grad()
    def cite(self, runtime, cache: RotatedCache, answer_ids: list[int]
             ) -> tuple[Citation, ...]:
        """The spans ``answer_ids`` drew on, heaviest first (see the module docstring), from
        the ``cache`` that generated them."""
        if not answer_ids or (not self.records and not self.raw_spans):
            return ()
        model = runtime.model
        before = self.memory_tokens + sum(self.raw_sizes) + self.question_ids.shape[0] - 1
        rows = torch.cat((self.question_ids[-1:], torch.tensor(answer_ids[:-1],
                                                               dtype=torch.long)))  # (A,)
        mass = memory_attention(model, cache.k[:, :, :, :before], cache.v[:, :, :, :before],
                                model.embed_ids(rows.to(model.device)[None]),  # (1, A, C)
                                torch.arange(len(answer_ids)))  # (L, H, M+T)
        spans = [(r.t_start, r.t_end, r.id, r.num_tokens) for r in self.records] + [
            (s.t_start, s.t_end, None, n) for s, n in zip(self.raw_spans, self.raw_sizes,
                                                          strict=True)]
        bounds, at = [], self.sink_tokens
        for *_, n in spans:
            bounds.append((at, at + n))
            at += n
        weights = span_weights(mass, bounds)  # (S,)
        matches: list[float | None] = [None] * len(spans)
        if self.looks is not None and self.text is not None:
            match = look_scores(self.looks, self.text)  # (S,)
            shown = match
            if self.moment is not None:  # the stay of what the plain citation puts first
                plain = weights * torch.softmax(self.scale * match, 0)  # (S,)
                shown = moment_scores(self.looks, self.text, self.moment, self.follows,
                                      around=int(plain.argmax()))
            weights = weights * torch.softmax(self.scale * shown, 0)
            matches = match.tolist()
        out = [Citation(a, b, w, interval, m)
               for (a, b, interval, _), w, m in zip(spans, weights.tolist(), matches,
                                                    strict=True)]
        total = sum(c.weight for c in out) or 1.0
        ranked = sorted(out, key=lambda c: -c.weight)
        return tuple(Citation(c.t_start, c.t_end, c.weight / total, c.interval, c.match)
                     for c in ranked)


@torch.no_grad()
def question_moment(runtime, state: StreamState, ids: torch.Tensor) -> torch.Tensor | None:
    """(3,) the moment the question ``ids`` (Q,) asks about, by the runtime's
    `MomentProbe` over its own queries (`retrieval.own_queries`: the key scorer's pass, replayed
    from its CUDA graph where there is one); None without a probe.

    Raises:
        ValueError: the probe reads a layer the question's own queries do not keep.
    """
    probe = runtime.moment_probe
    if probe is None:
        return None
    layers = digest_layers(runtime.model.config.llm.num_hidden_layers)
    if not layers.start <= probe.layer < layers.stop:
        raise ValueError(f"the moment probe reads layer {probe.layer}; questions' own queries "
                         f"are kept in layers {layers.start}-{layers.stop - 1}")
    return probe.probabilities(own_queries(runtime, state.store, ids)[probe.layer - layers.start])


__all__ = ["Context", "question_moment"]
