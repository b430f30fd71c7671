"""Tiers and retrieval on a stream: what leaves the GPU, and what a question reads.

Three steps of the runtime go through here:

- `leaving` / `archive`: when a new interval evicts the oldest from the GPU budget, their K/V
  are copied out *before* the store drops them and handed to the stream's `Archive` after
  (``eviction="offload"``); with ``drop_oldest`` they are simply gone.
- `remember`: every stored interval's key digest joins the stream's `DigestIndex`.
- `recall`: a question's memory. Without retrieval, or when every interval fits the retrieval
  budget, it is the GPU store itself (nothing copied). Otherwise the question's queries score
  every interval's digest, `select` picks within the budget, and the chosen intervals' K/V --
  sliced from the GPU store, copied from the host, or read from the log -- are packed in time
  order into the stream's recall store, a buffer allocated once at the retrieval budget.

Shapes: L layers, G kv heads, n an interval's tokens, D head_dim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..memory.recall import (
    DigestIndex,
    Retrieval,
    digest_layers,
    key_digest,
    select,
    standardised,
)
from ..memory.store import IntervalRecord, MemoryStore
from ..memory.tiers import Archive, Reader
from ..model.queries import question_queries
from .job import IntervalJob
from .stream import StreamState

log = logging.getLogger(__name__)

Leaving = list[tuple[IntervalRecord, torch.Tensor, torch.Tensor]]
"""Intervals about to leave the GPU, with their pre-RoPE keys and values (L, 1, G, n, D)."""


@dataclass(frozen=True)
class Recalled:
    """The memory one question reads."""

    store: MemoryStore
    """Sink + the chosen intervals, positions packed (the GPU store when all are chosen)."""
    records: list[IntervalRecord]
    """The chosen intervals, in time order."""
    candidates: int
    """Intervals held on every tier when the question was asked."""


def tiers_for(state: StreamState, device: torch.device, reader: Reader | None = None) -> None:
    """Give ``state`` the archive and digest index its config asks for, for a model on
    ``device``; ``reader`` reads archived records back from a file other than the stream's log
    (a reopened snapshot)."""
    config = state.settings.config
    on_gpu = device.type == "cuda"
    if config.retrieval is not None:
        keep_looks = state.settings.looks_wanted is not None
        state.digests = DigestIndex(device, config.retrieval.frame_rows if keep_looks else None)
    if config.eviction == "offload":
        log_ = state.log
        if reader is None and log_ is not None:
            reader = log_.read_interval
        state.archive = Archive(config.host_budget, pin=on_gpu, reader=reader,
                                locate=log_.offsets.get if log_ is not None else None)


def leaving(state: StreamState, job: IntervalJob) -> Leaving:
    """K/V of the intervals ``job`` evicts from the GPU (copied: the store overwrites them),
    if the stream keeps them (``offload``); nothing is changed."""
    if state.archive is None or not job.evict:
        return []
    store = state.store
    keys, values = store.keys(), store.values()
    return [(r, keys[:, :, :, a:a + r.num_tokens].clone(),
             values[:, :, :, a:a + r.num_tokens].clone())
            for r, a in zip(store.records[:job.evict], store.token_starts(), strict=False)]


def archive(state: StreamState, left: Leaving) -> int:
    """Hand intervals that left the GPU to the archive; digests of any that left the last tier
    for good are forgotten. Returns how many did."""
    if state.archive is None:
        return 0
    gone = 0
    for record, keys, values in left:
        dropped = state.archive.put(record, keys, values)
        gone += len(dropped)
        if dropped and state.digests is not None:
            state.digests.discard({r.id for r in dropped})
    return gone


def remember(state: StreamState, record: IntervalRecord, keys: torch.Tensor) -> None:
    """Note a stored interval's key digest (pre-RoPE keys (L, 1, G, n, D))."""
    if state.digests is not None:
        config = state.settings.config.retrieval
        assert config is not None  # digests exist for retrieval only
        state.digests.add(record.id, key_digest(keys, config.digest_tokens), record.looks)


def remember_newest(state: StreamState) -> None:
    """Note the digest of the interval just stored (the last in the GPU store: a view of
    its keys, nothing concatenated again)."""
    store = state.store
    if state.digests is not None and store.records:
        record = store.records[-1]
        remember(state, record, store.keys()[:, :, :, store.num_tokens - record.num_tokens:])


def forget_dropped(state: StreamState) -> None:
    """After the GPU dropped intervals for good (``drop_oldest``): forget their digests."""
    if state.digests is not None and state.archive is None:
        oldest = state.store.records[0].id if state.store.records else state.store.next_id
        state.digests.drop_before(oldest)


def held(state: StreamState) -> list[IntervalRecord]:
    """Every interval the stream holds on any tier, oldest first."""
    older = state.archive.records if state.archive is not None else []
    return older + state.store.records


def recall(runtime, state: StreamState, ids: torch.Tensor, text: torch.Tensor | None,
           retrieve: bool = True) -> Recalled:
    """The memory the question ``ids`` (T,) (its prompt-wrapped tokens) reads (see the module
    docstring), ``text`` (E') its text embedding when retrieval scores frames;
    ``retrieve=False``: the GPU store as it is, whatever the tiers hold.

    Raises:
        MemoryFileError: an interval on disk could not be read back.
    """
    config: Retrieval | None = state.settings.config.retrieval
    store = state.store
    everything = held(state)
    if config is None or not retrieve:  # the digests exist exactly when config does
        return Recalled(store, list(store.records), len(everything))
    budget = _budget(state)
    sizes = [r.num_tokens for r in everything]
    if sum(sizes) <= budget:
        if not state.archive:  # all of it is on the GPU already, packed as it is
            return Recalled(store, list(store.records), len(everything))
        chosen = list(range(len(everything)))
    else:
        chosen = select(sizes, scores(runtime, state, ids, text), budget, config.recent)
    out = _recall_store(runtime, state, budget)
    records = [everything[i] for i in chosen]
    keys, values = _gather(state, records)
    out.pack(keys, values, records)
    return Recalled(out, records, len(everything))


def _gather(state: StreamState, records: list[IntervalRecord]
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-RoPE keys and values (L, 1, G, n, D) of ``records`` (held, time order) on the
    model's device, concatenated: GPU ones sliced, archived ones read from their tier and
    moved in one copy."""
    store = state.store
    if not records:
        return store.keys()[:, :, :, :0], store.values()[:, :, :, :0]
    device, dtype = store.arena.device, store.arena.dtype
    at = dict(zip((r.id for r in store.records), store.token_starts(), strict=True))
    archived = {e.record.id: e for e in state.archive.entries} if state.archive else {}
    host = [state.archive.load(archived[r.id]) for r in records if r.id not in at]
    if host:
        moved_k = torch.cat([k for k, _ in host], dim=3)  # (L, 1, G, n_host, D)
        moved_v = torch.cat([v for _, v in host], dim=3)
        if device.type == "cuda":
            moved_k = moved_k.pin_memory().to(device, dtype, non_blocking=True)
            moved_v = moved_v.pin_memory().to(device, dtype, non_blocking=True)
        else:
            moved_k, moved_v = moved_k.to(dtype), moved_v.to(dtype)
    parts_k, parts_v, h = [], [], 0
    for r in records:
        if r.id in at:
            a = at[r.id]
            parts_k.append(store.keys()[:, :, :, a:a + r.num_tokens])
            parts_v.append(store.values()[:, :, :, a:a + r.num_tokens])
        else:
            parts_k.append(moved_k[:, :, :, h:h + r.num_tokens])
            parts_v.append(moved_v[:, :, :, h:h + r.num_tokens])
            h += r.num_tokens
    return torch.cat(parts_k, dim=3), torch.cat(parts_v, dim=3)


def scores(runtime, state: StreamState, ids: torch.Tensor, text: torch.Tensor | None
           ) -> torch.Tensor:
    """(N,) relevance of every held interval (`held`) to the question ``ids`` (T,), whose
    text embedding (E') is ``text`` when `Retrieval.scorer` reads frames."""
    scorer = state.settings.scorer
    if scorer == "keys":
        return key_scores(runtime, state, ids)
    assert text is not None  # the runtime embeds the question for a frames scorer
    looks = _checked(state).look_scores(text)
    if scorer == "frames":
        return looks
    return (standardised(key_scores(runtime, state, ids)) + standardised(looks)) / 2


def key_scores(runtime, state: StreamState, ids: torch.Tensor) -> torch.Tensor:
    """(N,) relevance of every held interval to the question ``ids`` (T,) by its key digest."""
    return _checked(state).scores(own_queries(runtime, state.store, ids))


def own_queries(runtime, store: MemoryStore, ids: torch.Tensor) -> torch.Tensor:
    """(L', H, D) the question ``ids`` (T,)'s own queries in the digest layers
    (`digest_layers`): its last token's, over [sink | question] (what the key scorer and the
    moment probe read)."""
    sink = store.sink_tokens
    sink_k, sink_v = store.keys()[:, :, :, :sink], store.values()[:, :, :, :sink]
    if runtime.query_graphs is not None:  # one graph replay instead of a launch-bound pass
        return runtime.query_graphs(sink_k, sink_v, ids)
    model = runtime.model
    return question_queries(model, sink_k, sink_v, ids,
                            digest_layers(model.config.llm.num_hidden_layers), runtime.kernels)


def _checked(state: StreamState) -> DigestIndex:
    """The stream's digest index, which holds exactly the intervals held (in order)."""
    assert state.digests is not None
    ids = [r.id for r in held(state)]
    if state.digests.ids != ids:  # they move together: a mismatch is a bug
        raise RuntimeError(f"digests of intervals {state.digests.ids[:8]}... for intervals "
                           f"{ids[:8]}... ({len(state.digests)} for {len(ids)})")
    return state.digests


def _budget(state: StreamState) -> int:
    """Interval tokens one question reads."""
    config = state.settings.config
    assert config.retrieval is not None
    if config.retrieval.budget is not None:
        return config.retrieval.budget
    if config.token_budget is not None:
        return config.token_budget - state.store.sink_tokens
    return max(1, state.store.interval_tokens())


def _recall_store(runtime, state: StreamState, budget: int) -> MemoryStore:
    """The stream's recall buffer, emptied, its sink in place (allocated once)."""
    store = state.store
    sink = store.sink_tokens
    if state.recall_store is None or state.recall_store.token_budget != sink + budget:
        state.recall_store = runtime.new_store(sink + budget)
    out = state.recall_store
    out.clear()
    out.set_sink(store.keys()[:, :, :, :sink], store.values()[:, :, :, :sink])
    return out


__all__ = ["Leaving", "Recalled", "archive", "forget_dropped", "held", "leaving", "recall",
           "key_scores", "own_queries", "remember", "remember_newest", "scores", "tiers_for"]
