"""The memory store: the sink plus compressed intervals, under a hard token budget.

Layout of the retained tokens (what every window and question attends to, positions re-packed
0..M-1): ``[sink | interval 0 VSTs | interval 1 VSTs | ...]``. The sink is the prompt prefix,
kept raw (the word means nothing else in streamvxl). Each interval is one `IntervalRecord` plus
its span of the `KVArena`.

An interval enters in one step (`add`), after all of its windows have been encoded elsewhere
(the runtime's workspace): until then the store is untouched, so a question served between two
windows sees a consistent memory, and a failed interval leaves it exactly as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..errors import ConfigError
from ..model.rope import apply_rope, rope_cos_sin
from .arena import KVArena

log = logging.getLogger(__name__)

# Shapes: L layers, G kv heads, M retained tokens, n an interval's tokens, D head_dim.

EvictionPolicy = Literal["drop_oldest", "offload"]
"""What makes room on the GPU for a new interval: ``drop_oldest`` removes whole intervals,
oldest first, for good; ``offload`` moves them, oldest first, to host memory and then to disk
(`streamvxl.memory.tiers`), where questions retrieve them (`streamvxl.memory.recall`)."""


def check_budget(token_budget: int | None, sink_tokens: int, interval_tokens: int) -> None:
    """The budget rule, in one place: the sink plus one interval must fit.

    Raises:
        ConfigError: they do not; the message says what to change.
    """
    if token_budget is None:
        return
    need = sink_tokens + max(interval_tokens, 1)
    if need > token_budget:
        raise ConfigError(
            f"token_budget={token_budget} cannot hold the {sink_tokens}-token prompt plus one "
            f"interval of up to {interval_tokens} tokens; raise token_budget to at least {need}, "
            "raise the ratio, or lower boundary.max_frames")


@dataclass(frozen=True)
class IntervalRecord:
    """One closed, compressed interval of the stream."""

    id: int
    """Sequence number over the stream's life (not reused after eviction)."""
    t_start: float
    """Timestamp of the interval's first frame, seconds."""
    t_end: float
    """Timestamp of its last frame, seconds."""
    frame_start: int
    """Index of the first frame in the stream."""
    frame_end: int
    """Index of the last frame (inclusive)."""
    ratio: int | None
    """Compression ratio used (None: raw K/V kept, no compression)."""
    num_tokens: int
    """Retained tokens (VSTs) in memory."""
    embedding: torch.Tensor | None = field(default=None, compare=False, repr=False)
    """Mean per-frame embedding (CPU, float32), for retrieval."""
    looks: torch.Tensor | None = field(default=None, compare=False, repr=False)
    """(k, E) image embeddings of a few of its frames in the text-to-frame scorer's space
    (CPU, float16; `streamvxl.memory.clip_scorer`), when retrieval scores frames."""

    @property
    def num_frames(self) -> int:
        return self.frame_end - self.frame_start + 1


class MemoryStore:
    """Sink + intervals in a `KVArena`, dropping the oldest intervals to respect ``token_budget``.

    Keys come in pre-RoPE; the store also keeps them rotated to their packed positions (0..M-1)
    and re-rotates the shifted ones after an eviction, so attention never rotates memory.

    Args:
        rope_theta: RoPE base of the model.
        token_budget: most retained tokens (sink included); None for unbounded. With a budget
            the arena is allocated once, at the budget.
    """

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device, rope_theta: float, token_budget: int | None = None) -> None:
        if token_budget is not None and (isinstance(token_budget, bool)
                                         or not isinstance(token_budget, int) or token_budget < 1):
            raise ConfigError(f"token_budget must be a positive int or None, got {token_budget!r}")
        self.token_budget = token_budget
        self.rope_theta = rope_theta
        self.arena = KVArena(num_layers, 1, kv_heads, head_dim, dtype, device,
                             capacity=token_budget or 0, fixed_capacity=token_budget is not None)
        self.sink_tokens = 0
        self.records: list[IntervalRecord] = []
        self.evicted = 0
        self.next_id = 0
        """Intervals ever stored (the next record's id): the stream's count of closed and
        compressed intervals."""

    # -- reading ------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        return self.arena.length

    def keys(self) -> torch.Tensor:
        """(L, 1, G, M, D) pre-RoPE keys of everything retained, in memory order."""
        return self.arena.keys()

    def rotated_keys(self) -> torch.Tensor:
        """(L, 1, G, M, D) keys rotated to positions 0..M-1 (what attention reads)."""
        return self.arena.rotated_keys()

    def values(self) -> torch.Tensor:
        return self.arena.values()

    def token_starts(self) -> list[int]:
        """Where each interval's tokens start in memory order (after the sink), by record."""
        starts, at = [], self.sink_tokens
        for r in self.records:
            starts.append(at)
            at += r.num_tokens
        return starts

    def interval_tokens(self) -> int:
        return self.arena.length - self.sink_tokens

    def to_evict(self, n: int) -> int:
        """How many of the oldest intervals must go for an interval of ``n`` tokens to fit.

        Raises:
            ConfigError: it cannot fit even in an otherwise empty memory (`check_budget`).
        """
        if self.token_budget is None:
            return 0
        check_budget(self.token_budget, self.sink_tokens, n)
        free, k = self.token_budget - self.arena.length, 0
        while free < n:
            free += self.records[k].num_tokens
            k += 1
        return k

    # -- writing ------------------------------------------------------------------------------
    def set_sink(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Install the prompt prefix's K/V (L, 1, G, S, D). Only on an empty store."""
        if self.arena.length:
            raise RuntimeError("the sink must be set before any interval is stored")
        if self.token_budget is not None and keys.shape[3] >= self.token_budget:
            raise ConfigError(f"token_budget {self.token_budget} leaves no room after the "
                              f"{keys.shape[3]}-token prompt prefix; raise it")
        self._append(keys, values)
        self.sink_tokens = keys.shape[3]

    def add(self, keys: torch.Tensor, values: torch.Tensor, *, t_start: float, t_end: float,
            frame_start: int, frame_end: int, ratio: int | None,
            embedding: torch.Tensor | None = None, evict: int | None = None,
            looks: torch.Tensor | None = None
            ) -> tuple[IntervalRecord, list[IntervalRecord]]:
        """Store one interval's retained pre-RoPE K/V (L, 1, G, n, D), first dropping the
        ``evict`` oldest intervals (None: as many as `to_evict` says). Returns the new record
        and the evicted ones."""
        n = keys.shape[3]
        evict = self.to_evict(n) if evict is None else evict
        evicted = self._drop_oldest(evict)
        if self.token_budget is not None and self.arena.length + n > self.token_budget:
            raise RuntimeError(f"evicting {evict} intervals leaves no room for {n} tokens")
        self._append(keys, values)
        record = IntervalRecord(self.next_id, t_start, t_end, frame_start, frame_end, ratio, n,
                                embedding, looks)
        self.next_id += 1
        self.records.append(record)
        return record, evicted

    def pack(self, keys: torch.Tensor, values: torch.Tensor, records: list[IntervalRecord]
             ) -> None:
        """Append several intervals at once, without eviction: their pre-RoPE K/V
        (L, 1, G, n, D) concatenated in ``records`` order (a question's retrieved memory)."""
        if keys.shape[3] != sum(r.num_tokens for r in records):
            raise ValueError(f"{keys.shape[3]} tokens for intervals of "
                             f"{sum(r.num_tokens for r in records)}")
        if self.token_budget is not None and self.arena.length + keys.shape[3] > \
                self.token_budget:
            raise RuntimeError(f"{keys.shape[3]} tokens do not fit the budget")
        if keys.shape[3]:
            self._append(keys, values)
        self.records.extend(records)
        self.next_id = max([self.next_id, *(r.id + 1 for r in records)])

    def clear(self) -> None:
        """Forget everything, the sink included (the budget's buffer is kept)."""
        self.arena.clear()
        self.sink_tokens = 0
        self.records.clear()
        self.evicted = 0
        self.next_id = 0

    # -- internals ----------------------------------------------------------------------------
    def _rotate(self, keys: torch.Tensor, start: int) -> torch.Tensor:
        d = keys.shape[-1]
        positions = torch.arange(start, start + keys.shape[3], device=keys.device)
        cos, sin = rope_cos_sin(positions, d, self.rope_theta, keys.dtype)
        return apply_rope(keys, cos, sin)

    def _append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.arena.append(keys, self._rotate(keys, self.arena.length), values)

    def _drop_oldest(self, k: int) -> list[IntervalRecord]:
        if k <= 0:
            return []
        evicted, self.records = self.records[:k], self.records[k:]
        self.arena.remove(self.sink_tokens, sum(r.num_tokens for r in evicted))
        # the survivors moved down: rotate them (exactly, from pre-RoPE) for their new slots
        tail = self.arena.keys()[:, :, :, self.sink_tokens:]
        self.arena.set_rotated(self.sink_tokens, self._rotate(tail, self.sink_tokens))
        self.evicted += len(evicted)
        log.debug("evicted %d intervals (drop_oldest)", len(evicted))
        return evicted
