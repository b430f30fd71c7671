"""A contiguous, growable buffer of per-layer keys and values: the memory's storage.

Memory is read far more often (every window and every question) than it changes (once per closed
interval), so it lives in contiguous (L, B, G, capacity, D) buffers handed to attention as views,
never re-concatenated. Three buffers: pre-RoPE keys (the source of truth: positions are re-packed
on eviction, and saved memories are position-free), keys rotated to their current positions (what
attention reads), and values. With a token budget the capacity is allocated once, so device
memory stays flat. (An interval-encoder window's own K/V go to the runtime's workspace, one for
all streams: `streamvxl.runtime.workspace`.)
"""

from __future__ import annotations

import torch

# Shapes: L layers, B batch, G kv heads, N tokens, D head_dim.


class KVArena:
    """Pre-RoPE keys, rotated keys and values of retained tokens, in memory order."""

    def __init__(self, num_layers: int, batch: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device, capacity: int = 0,
                 fixed_capacity: bool = False) -> None:
        self._shape = (num_layers, batch, kv_heads, head_dim)
        self.dtype, self.device = dtype, device
        self.fixed_capacity = fixed_capacity
        self.length = 0
        self._k, self._kr, self._v = (self._alloc(capacity) for _ in range(3))

    def _alloc(self, capacity: int) -> torch.Tensor:
        n_layers, b, g, d = self._shape
        return torch.empty(n_layers, b, g, capacity, d, dtype=self.dtype, device=self.device)

    @property
    def capacity(self) -> int:
        return self._k.shape[3]

    @property
    def bytes_per_token(self) -> int:
        """Bytes one retained token occupies: pre-RoPE keys, rotated keys and values."""
        n_layers, b, g, d = self._shape
        return 3 * n_layers * b * g * d * self._k.element_size()

    @property
    def used_bytes(self) -> int:
        return self.length * self.bytes_per_token

    @property
    def allocated_bytes(self) -> int:
        """Bytes the arena's storage really holds (all three buffers)."""
        return sum(t.untyped_storage().nbytes() for t in (self._k, self._kr, self._v))

    def keys(self) -> torch.Tensor:
        """(L, B, G, N, D) view of the retained pre-RoPE keys."""
        return self._k[:, :, :, : self.length]

    def rotated_keys(self) -> torch.Tensor:
        """(L, B, G, N, D) view of the rotated keys."""
        return self._kr[:, :, :, : self.length]

    def values(self) -> torch.Tensor:
        """(L, B, G, N, D) view of the retained values."""
        return self._v[:, :, :, : self.length]

    def reserve(self, n: int) -> None:
        """Make sure ``n`` slots past the retained tokens exist (grows unless fixed)."""
        need = self.length + n
        if need > self.capacity:
            if self.fixed_capacity:
                raise RuntimeError(f"KVArena full: {need} slots > fixed capacity "
                                   f"{self.capacity}; evict first")
            # 1.5x: amortised O(1) appends without doubling the footprint of long memories
            self._grow(max(need, self.capacity + self.capacity // 2, 64))

    def append(self, keys: torch.Tensor, rotated: torch.Tensor, values: torch.Tensor) -> int:
        """Append (L, B, G, n, D) pre-RoPE keys, rotated keys and values; returns their start."""
        n = keys.shape[3]
        self.reserve(n)
        start, end = self.length, self.length + n
        self._k[:, :, :, start:end] = keys
        self._kr[:, :, :, start:end] = rotated
        self._v[:, :, :, start:end] = values
        self.length = end
        return start

    def remove(self, start: int, n: int) -> None:
        """Delete tokens [start, start+n), shifting later tokens down. Rotated keys of the
        shifted tokens are then stale: the caller re-rotates them for their new positions."""
        if n <= 0:
            return
        end = start + n
        if start < 0 or end > self.length:
            raise IndexError(f"remove [{start}, {end}) outside [0, {self.length})")
        tail = self.length - end
        if tail:
            for buf in (self._k, self._kr, self._v):
                # clone: source and destination ranges may overlap
                buf[:, :, :, start:start + tail] = buf[:, :, :, end:self.length].clone()
        self.length -= n

    def set_rotated(self, start: int, rotated: torch.Tensor) -> None:
        """Overwrite rotated keys of tokens [start, start + n)."""
        self._kr[:, :, :, start:start + rotated.shape[3]] = rotated

    def clear(self) -> None:
        self.length = 0

    def _grow(self, capacity: int) -> None:
        bufs = []
        for buf in (self._k, self._kr, self._v):
            new = self._alloc(capacity)
            new[:, :, :, : self.length] = buf[:, :, :, : self.length]
            bufs.append(new)
        self._k, self._kr, self._v = bufs
