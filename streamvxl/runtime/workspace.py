"""The encoder workspace: where the runtime encodes one interval window, for every stream.

A window attends to [memory | this interval's earlier VSTs | the window itself]. Memory lives in
the stream's store; the workspace holds a copy of it rotated to the positions the window sees,
then the window's own keys and values, so attention reads one contiguous view. One workspace per
runtime (not one per stream): a hub of a hundred cameras needs one window's scratch, not a
hundred. Copying memory in costs a few hundred microseconds per window at Video-XL-7B scale with a
4,096-token memory (the window's forward costs tens of milliseconds).

Intervals that the new one will evict are left out of the copy (they are removed from the store
only when the interval is added), and the survivors are rotated to their packed positions, so
windows see exactly the memory they would after an eviction.
"""

from __future__ import annotations

import torch

from ..memory.store import MemoryStore
from ..model.attention import AttentionKernels
from ..model.decoder import KVCache
from ..model.rope import apply_rope, rope_cos_sin

# Shapes: L layers, G kv heads, M memory tokens, n kept tokens, T window tokens, D head_dim.


class EncoderWorkspace(KVCache):
    """Rotated keys and values of [memory | window] for one window being encoded.

    Args:
        rope_theta: the model's RoPE base.
        kernels: the runtime's attention kernels (used by the windows encoded here).
    """

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device, rope_theta: float,
                 kernels: AttentionKernels | None = None) -> None:
        self._shape = (num_layers, 1, kv_heads, head_dim)
        self.dtype, self.device, self.rope_theta = dtype, device, rope_theta
        self.kernels = kernels
        self.length = 0
        """Tokens before the window: memory plus the interval's earlier VSTs."""
        self._kr = self._alloc(0)
        self._v = self._alloc(0)

    @property
    def capacity(self) -> int:
        return self._kr.shape[3]

    @property
    def allocated_bytes(self) -> int:
        return sum(t.untyped_storage().nbytes() for t in (self._kr, self._v))

    def reserve(self, tokens: int) -> None:
        """Hold at least ``tokens`` slots (memory + window); grows by 1.5x, never shrinks."""
        if tokens <= self.capacity:
            return
        self._kr = self._alloc(max(tokens, self.capacity + self.capacity // 2))
        self._v = self._alloc(self._kr.shape[3])

    def load(self, store: MemoryStore, skip: int, earlier_k: list[torch.Tensor],
             earlier_v: list[torch.Tensor], window_tokens: int) -> None:
        """Memory as the next window sees it: ``store`` without its ``skip`` oldest intervals,
        re-packed, then this interval's earlier VSTs (pre-RoPE, (L, 1, G, n, D) each); room
        for ``window_tokens`` after them."""
        sink = store.sink_tokens
        dropped = sum(r.num_tokens for r in store.records[:skip])
        kept = store.num_tokens - dropped
        extra = sum(k.shape[3] for k in earlier_k)
        self.reserve(kept + extra + window_tokens)
        if dropped == 0:  # positions unchanged: the store's rotated keys are what we need
            self._kr[:, :, :, :kept] = store.rotated_keys()
            self._v[:, :, :, :kept] = store.values()
        else:
            self._kr[:, :, :, :sink] = store.rotated_keys()[:, :, :, :sink]
            self._v[:, :, :, :sink] = store.values()[:, :, :, :sink]
            survivors = store.keys()[:, :, :, sink + dropped:]  # (L, 1, G, kept - sink, D)
            self._kr[:, :, :, sink:kept] = self._rotate(survivors, sink)
            self._v[:, :, :, sink:kept] = store.values()[:, :, :, sink + dropped:]
        at = kept
        for k, v in zip(earlier_k, earlier_v, strict=True):
            n = k.shape[3]
            self._kr[:, :, :, at:at + n] = self._rotate(k, at)
            self._v[:, :, :, at:at + n] = v
            at += n
        self.length = at

    def extend(self, layer: int, k_rot: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the window's rotated keys/values (1, G, T, D) after memory; return
        [memory | window] views (1, G, M+T, D)."""
        s, t = self.length, k_rot.shape[2]
        self._kr[layer, :, :, s:s + t] = k_rot
        self._v[layer, :, :, s:s + t] = v
        return self._kr[layer, :, :, :s + t], self._v[layer, :, :, :s + t]

    def _rotate(self, keys: torch.Tensor, start: int) -> torch.Tensor:
        positions = torch.arange(start, start + keys.shape[3], device=keys.device)
        cos, sin = rope_cos_sin(positions, keys.shape[-1], self.rope_theta, keys.dtype)
        return apply_rope(keys, cos, sin)

    def _alloc(self, capacity: int) -> torch.Tensor:
        n_layers, b, g, d = self._shape
        return torch.empty(n_layers, b, g, capacity, d, dtype=self.dtype, device=self.device)
