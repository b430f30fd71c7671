"""A contiguous, growable buffer of per-layer keys and values: the memory's storage.

Memory is read far more often (every window and every question) than it changes (once per closed
interval), so it lives in one contiguous (L, B, G, capacity, D) buffer per K and V and is handed to
attention as a view, never re-concatenated. With a token budget the capacity is allocated once at
the budget, so device memory stays flat however long the stream runs.
"""

from __future__ import annotations

import torch

# Shapes: L layers, B batch, G kv heads, N tokens, D head_dim.


class KVArena:
    """Pre-RoPE keys/values of retained tokens, in memory order, with O(1) amortised append."""

    def __init__(self, num_layers: int, batch: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device, capacity: int = 0,
                 fixed_capacity: bool = False) -> None:
        self._shape = (num_layers, batch, kv_heads, head_dim)
        self.dtype, self.device = dtype, device
        self.fixed_capacity = fixed_capacity
        self.length = 0
        self._k = self._alloc(capacity)
        self._v = self._alloc(capacity)

    def _alloc(self, capacity: int) -> torch.Tensor:
        n_layers, b, g, d = self._shape
        return torch.empty(n_layers, b, g, capacity, d, dtype=self.dtype, device=self.device)

    @property
    def capacity(self) -> int:
        return self._k.shape[3]

    @property
    def bytes_per_token(self) -> int:
        n_layers, b, g, d = self._shape
        return 2 * n_layers * b * g * d * self._k.element_size()

    @property
    def used_bytes(self) -> int:
        return self.length * self.bytes_per_token

    @property
    def allocated_bytes(self) -> int:
        """Bytes the arena's storage really holds (both buffers)."""
        return self._k.untyped_storage().nbytes() + self._v.untyped_storage().nbytes()

    def keys(self) -> torch.Tensor:
        """(L, B, G, N, D) view of the retained keys."""
        return self._k[:, :, :, : self.length]

    def values(self) -> torch.Tensor:
        """(L, B, G, N, D) view of the retained values."""
        return self._v[:, :, :, : self.length]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> int:
        """Append (L, B, G, n, D) keys/values; returns the start offset of the new tokens."""
        n = keys.shape[3]
        need = self.length + n
        if need > self.capacity:
            if self.fixed_capacity:
                raise RuntimeError(f"KVArena full: {need} tokens > fixed capacity "
                                   f"{self.capacity}; evict first")
            # 1.5x: amortised O(1) appends without doubling the footprint of long memories
            self._grow(max(need, self.capacity + self.capacity // 2, 64))
        start = self.length
        self._k[:, :, :, start:need] = keys
        self._v[:, :, :, start:need] = values
        self.length = need
        return start

    def remove(self, start: int, n: int) -> None:
        """Delete tokens [start, start+n), shifting later tokens down (positions re-pack)."""
        if n <= 0:
            return
        end = start + n
        if start < 0 or end > self.length:
            raise IndexError(f"remove [{start}, {end}) outside [0, {self.length})")
        tail = self.length - end
        if tail:
            # clone: source and destination ranges may overlap
            self._k[:, :, :, start:start + tail] = self._k[:, :, :, end:self.length].clone()
            self._v[:, :, :, start:start + tail] = self._v[:, :, :, end:self.length].clone()
        self.length -= n

    def clear(self) -> None:
        self.length = 0

    def _grow(self, capacity: int) -> None:
        k, v = self._alloc(capacity), self._alloc(capacity)
        k[:, :, :, : self.length] = self.keys()
        v[:, :, :, : self.length] = self.values()
        self._k, self._v = k, v
