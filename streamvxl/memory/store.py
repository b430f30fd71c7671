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
from ..model.decoder import KVSink
from ..model.rope import apply_rope, rope_cos_sin
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

    Keys come in pre-RoPE; the store also keeps them rotated to their packed positions (0..M-1)
    and re-rotates the shifted ones after an eviction, so attention never rotates memory.

    Args:
        rope_theta: RoPE base of the model.
        token_budget: most retained tokens (sink included); None for unbounded.
        policy: what to do when a new interval does not fit; ``"drop_oldest"`` removes whole
            intervals, oldest first (the sink is never evicted).
        scratch_tokens: slots kept free past the budget for an encoder window's own K/V.
    """

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device, rope_theta: float, token_budget: int | None = None,
                 policy: EvictionPolicy = "drop_oldest", scratch_tokens: int = 0) -> None:
        if token_budget is not None and token_budget < 1:
            raise ConfigError(f"token_budget must be positive or None, got {token_budget}")
        if policy != "drop_oldest":
            raise ConfigError(f"eviction policy {policy!r} is not available; use 'drop_oldest'")
        self.token_budget = token_budget
        self.policy = policy
        self.rope_theta = rope_theta
        capacity = token_budget + scratch_tokens if token_budget is not None else 0
        self.arena = KVArena(num_layers, 1, kv_heads, head_dim, dtype, device,
                             capacity=capacity, fixed_capacity=token_budget is not None)
        self.sink_tokens = 0
        self.records: list[IntervalRecord] = []
        self.evicted = 0
        self._next_id = 0
        self._open_start: int | None = None  # arena offset of the interval being written

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

    def window_sink(self, chunk: int) -> KVSink:
        """A `KVSink` for a chunk of ``chunk`` tokens at positions M..: its K/V go to scratch
        slots right after memory, and attention reads [memory | chunk] as one view."""
        self.arena.reserve(chunk)
        return _ScratchSink(self.arena)

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
        self._append(keys, values)
        self.sink_tokens = keys.shape[3]

    def begin_interval(self, max_tokens: int) -> list[IntervalRecord]:
        """Start writing an interval of at most ``max_tokens``; evicts to make room first."""
        if self._open_start is not None:
            raise RuntimeError("an interval is already being written")
        evicted = self._make_room(max_tokens)
        self._open_start = self.arena.length
        return evicted

    def append_tokens(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add pre-RoPE K/V (L, 1, G, n, D) to the interval being written (visible at once)."""
        if self._open_start is None:
            raise RuntimeError("begin_interval first")
        self._append(keys, values)

    def abort_interval(self) -> None:
        """Drop the interval being written (its partial K/V included), e.g. after an error."""
        if self._open_start is not None:
            self.arena.length = self._open_start
            self._open_start = None

    def end_interval(self, *, t_start: float, t_end: float, frame_start: int, frame_end: int,
                     ratio: int | None, embedding: torch.Tensor | None = None) -> IntervalRecord:
        """Close the interval being written and record it."""
        if self._open_start is None:
            raise RuntimeError("begin_interval first")
        n = self.arena.length - self._open_start
        self._open_start = None
        record = IntervalRecord(self._next_id, t_start, t_end, frame_start, frame_end, ratio, n,
                                embedding)
        self._next_id += 1
        self.records.append(record)
        return record

    def add(self, keys: torch.Tensor, values: torch.Tensor, *, t_start: float, t_end: float,
            frame_start: int, frame_end: int, ratio: int | None,
            embedding: torch.Tensor | None = None) -> tuple[IntervalRecord, list[IntervalRecord]]:
        """Store one interval's retained K/V (L, 1, G, n, D); returns it and what was evicted."""
        evicted = self.begin_interval(keys.shape[3])
        self.append_tokens(keys, values)
        record = self.end_interval(t_start=t_start, t_end=t_end, frame_start=frame_start,
                                   frame_end=frame_end, ratio=ratio, embedding=embedding)
        return record, evicted

    def _rotate(self, keys: torch.Tensor, start: int) -> torch.Tensor:
        d = keys.shape[-1]
        positions = torch.arange(start, start + keys.shape[3], device=keys.device)
        cos, sin = rope_cos_sin(positions, d, self.rope_theta, keys.dtype)
        return apply_rope(keys, cos, sin)

    def _append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.arena.append(keys, self._rotate(keys, self.arena.length), values)

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
            # the survivors moved down: rotate them (exactly, from pre-RoPE) for their new slots
            tail = self.arena.keys()[:, :, :, self.sink_tokens:]
            self.arena.set_rotated(self.sink_tokens, self._rotate(tail, self.sink_tokens))
            self.evicted += len(evicted)
            log.debug("evicted %d intervals (drop_oldest) to fit %d tokens", len(evicted), n)
        return evicted

    def clear(self) -> None:
        """Forget everything, the sink included (the budget's buffer is kept)."""
        self.arena.clear()
        self._open_start = None
        self.sink_tokens = 0
        self.records.clear()
        self.evicted = 0
        self._next_id = 0


class _ScratchSink(KVSink):
    """Writes a chunk's K/V into the arena's scratch slots; attention reads memory + chunk."""

    def __init__(self, arena: KVArena) -> None:
        self.arena = arena

    def extend(self, layer: int, k_rot: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        t = k_rot.shape[2]
        self.arena.write_scratch(layer, k_rot, v)
        return self.arena.rotated_keys(t)[layer], self.arena.values(t)[layer]
