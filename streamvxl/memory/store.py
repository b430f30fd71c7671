"""The memory store: the sink plus compressed intervals, under a hard token budget.

Layout of the retained tokens (what every window and question attends to, positions re-packed
0..M-1): ``[sink | interval 0 VSTs | interval 1 VSTs | ...]``. The sink is the prompt prefix,
kept raw. Each interval is one `IntervalRecord` plus its span of the `KVArena`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..errors import ConfigError
from .arena import KVArena

log = logging.getLogger(__name__)

EvictionPolicy = Literal["drop_oldest"]


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

    @property
    def num_frames(self) -> int:
        return self.frame_end - self.frame_start + 1


class MemoryStore:
    """Sink + intervals in a `KVArena`, evicting by a named policy to respect ``token_budget``.

    Args:
        token_budget: most retained tokens (sink included); None for unbounded.
        policy: what to do when a new interval does not fit; ``"drop_oldest"`` removes whole
            intervals, oldest first (the sink is never evicted).
    """

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device, token_budget: int | None = None,
                 policy: EvictionPolicy = "drop_oldest") -> None:
        if token_budget is not None and token_budget < 1:
            raise ConfigError(f"token_budget must be positive or None, got {token_budget}")
        if policy != "drop_oldest":
            raise ConfigError(f"eviction policy {policy!r} is not available; use 'drop_oldest'")
        self.token_budget = token_budget
        self.policy = policy
        self.arena = KVArena(num_layers, 1, kv_heads, head_dim, dtype, device,
                             capacity=token_budget or 0, fixed_capacity=token_budget is not None)
        self.sink_tokens = 0
        self.records: list[IntervalRecord] = []
        self.evicted = 0
        self._next_id = 0

    # -- reading ------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        return self.arena.length

    def keys(self) -> torch.Tensor:
        """(L, 1, G, M, D) pre-RoPE keys of everything retained, in memory order."""
        return self.arena.keys()

    def values(self) -> torch.Tensor:
        return self.arena.values()

    def interval_tokens(self) -> int:
        return self.arena.length - self.sink_tokens

    # -- writing ------------------------------------------------------------------------------
    def set_sink(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Install the prompt prefix's K/V (L, 1, G, S, D). Only on an empty store."""
        if self.arena.length:
            raise RuntimeError("the sink must be set before any interval is stored")
        if self.token_budget is not None and keys.shape[3] >= self.token_budget:
            raise ConfigError(f"token_budget {self.token_budget} leaves no room after the "
                              f"{keys.shape[3]}-token prompt prefix; raise it")
        self.arena.append(keys, values)
        self.sink_tokens = keys.shape[3]

    def add(self, keys: torch.Tensor, values: torch.Tensor, *, t_start: float, t_end: float,
            frame_start: int, frame_end: int, ratio: int | None,
            embedding: torch.Tensor | None = None) -> tuple[IntervalRecord, list[IntervalRecord]]:
        """Store one interval's retained K/V (L, 1, G, n, D); returns it and what was evicted."""
        n = keys.shape[3]
        evicted = self._make_room(n)
        self.arena.append(keys, values)
        record = IntervalRecord(self._next_id, t_start, t_end, frame_start, frame_end, ratio, n,
                                embedding)
        self._next_id += 1
        self.records.append(record)
        return record, evicted

    def _make_room(self, n: int) -> list[IntervalRecord]:
        if self.token_budget is None:
            return []
        if self.sink_tokens + n > self.token_budget:
            raise ConfigError(f"an interval of {n} tokens cannot fit token_budget "
                              f"{self.token_budget} with a {self.sink_tokens}-token sink; raise "
                              "the budget, the ratio or lower boundary.max_frames")
        evicted = []
        while self.arena.length + n > self.token_budget:
            old = self.records.pop(0)
            self.arena.remove(self.sink_tokens, old.num_tokens)
            evicted.append(old)
        if evicted:
            self.evicted += len(evicted)
            log.debug("evicted %d intervals (drop_oldest) to fit %d tokens", len(evicted), n)
        return evicted

    def clear(self) -> None:
        """Forget everything, the sink included (the budget's buffer is kept)."""
        self.arena.clear()
        self.sink_tokens = 0
        self.records.clear()
        self.evicted = 0
        self._next_id = 0
