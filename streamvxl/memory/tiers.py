"""The tiers below the GPU: intervals that left the token budget, kept instead of dropped.

With ``MemoryConfig(eviction="offload")`` an interval the GPU budget no longer holds moves to
host memory (pinned when the model is on a GPU, so bringing it back is one DMA), up to
``host_budget`` tokens; past that, the oldest host intervals move to disk. The disk tier is the
memory's own interval log (`MemoryConfig.log_dir`): every interval's record is already there,
so moving to disk frees the host copy and keeps the record's offset -- nothing is written twice.
Without a log the host tier is the last one, and what leaves it is dropped for good (counted
as evicted).

An `Archive` is plain data (records, host tensors, offsets); reading a disk record back is the
``reader`` it is given (the stream's log). Entries stay in time order, oldest first.

Shapes: L layers, G kv heads, n an interval's tokens, D head_dim.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .store import IntervalRecord

log = logging.getLogger(__name__)

Reader = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
"""Reads interval ``id``'s record at a log offset (offset, id): its pre-RoPE keys and values
(L, G, n, D)."""

Locator = Callable[[int], int | None]
"""Where the log wrote an interval's record (by id), None while it is not written."""


@dataclass
class Archived:
    """One interval below the GPU: on the host (``keys``/``values`` set) or on disk
    (``offset`` into the log, tensors None)."""

    record: IntervalRecord
    keys: torch.Tensor | None
    """(L, 1, G, n, D) pre-RoPE keys in host memory; None on disk."""
    values: torch.Tensor | None
    offset: int | None
    """Where its record lies in the log (None: not written there, or no log)."""

    @property
    def on_host(self) -> bool:
        return self.keys is not None


class Archive:
    """Host and disk tiers of one stream (see the module docstring).

    Args:
        host_budget: most tokens held in host memory; None: no limit.
        pin: copy into pinned memory (the model is on a GPU).
        reader: reads a record of the log back; None: there is no disk tier.
        locate: where the log wrote an interval's record (the log writes on a thread of its
            own, so an offset is known only once the record is written).
    """

    def __init__(self, host_budget: int | None, pin: bool, reader: Reader | None = None,
                 locate: Locator | None = None) -> None:
        self.host_budget = host_budget
        self.pin = pin
        self.reader, self.locate = reader, locate
        self.entries: list[Archived] = []
        self.host_tokens = 0
        self.on_host = 0
        """Intervals in host memory (counted as they move: stats read it every step)."""
        self.host_bytes = 0
        """Bytes of their K/V."""
        self.dropped = 0
        """Intervals that left the last tier (gone for good)."""

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def on_disk(self) -> int:
        return len(self.entries) - self.on_host

    @property
    def records(self) -> list[IntervalRecord]:
        return [e.record for e in self.entries]

    def load(self, entry: Archived) -> tuple[torch.Tensor, torch.Tensor]:
        """An archived interval's pre-RoPE keys and values (L, 1, G, n, D) on the host.

        Raises:
            MemoryFileError: its record could not be read back from the log.
        """
        if entry.keys is not None and entry.values is not None:
            return entry.keys, entry.values
        assert self.reader is not None and entry.offset is not None, "a disk entry needs a log"
        keys, values = self.reader(entry.offset, entry.record.id)
        return keys[:, None], values[:, None]

    # -- writing ------------------------------------------------------------------------------
    def put(self, record: IntervalRecord, keys: torch.Tensor, values: torch.Tensor
            ) -> list[IntervalRecord]:
        """Take an interval the GPU let go (keys, values (L, 1, G, n, D), any device) into host
        memory, then move or drop the oldest host intervals past ``host_budget``. Returns the
        intervals dropped for good."""
        entry = Archived(record, self._host(keys), self._host(values), None)
        self.entries.append(entry)
        self._count(entry, +1)
        return self._fit()

    def on_disk_at(self, record: IntervalRecord, offset: int) -> None:
        """Add an interval that is on disk only (a reopened log's older intervals)."""
        self.entries.append(Archived(record, None, None, offset))

    def clear(self) -> None:
        self.entries.clear()
        self.host_tokens = self.on_host = self.host_bytes = 0
        self.dropped = 0

    def _count(self, entry: Archived, sign: int) -> None:
        """Add (+1) or take away (-1) a host entry's tokens, count and bytes."""
        assert entry.keys is not None and entry.values is not None
        self.host_tokens += sign * entry.record.num_tokens
        self.on_host += sign
        self.host_bytes += sign * (entry.keys.nbytes + entry.values.nbytes)

    def _host(self, t: torch.Tensor) -> torch.Tensor:
        if t.device.type == "cpu":
            return t.clone()  # the caller's buffer (the arena) is about to be overwritten
        out = torch.empty(t.shape, dtype=t.dtype, pin_memory=self.pin)
        out.copy_(t)
        return out

    def _fit(self) -> list[IntervalRecord]:
        dropped: list[IntervalRecord] = []
        if self.host_budget is None:
            return dropped
        k = 0
        while self.host_tokens > self.host_budget and k < len(self.entries):
            e = self.entries[k]
            if e.keys is not None:
                self._count(e, -1)
                e.keys = e.values = None
                if e.offset is None and self.locate is not None:
                    e.offset = self.locate(e.record.id)
                if self.reader is None or e.offset is None:
                    dropped.append(e.record)
            k += 1
        if dropped:
            gone = {r.id for r in dropped}
            self.entries = [e for e in self.entries if e.record.id not in gone]
            self.dropped += len(dropped)
            if self.reader is None or self.locate is None:
                log.debug("host tier full: %d intervals dropped (no log to hold them)",
                          len(dropped))
            else:
                log.warning("host tier full: intervals %s dropped: their records are not in "
                            "the log (a failed write)", sorted(gone))
        return dropped


__all__ = ["Archive", "Archived", "Locator", "Reader"]
