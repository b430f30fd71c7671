"""KVArena: append/remove keep exactly the retained tokens, in order; fixed capacity holds."""

from __future__ import annotations

import pytest
import torch

from streamvxl.memory.arena import KVArena


def chunk(n: int, tag: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pre-RoPE keys, 'rotated' keys, values): three distinct tensors to track each buffer."""
    k = torch.randn(2, 1, 3, n, 4) + tag
    return k, 2 * k, -k


def test_append_grow_and_remove_match_a_list_model() -> None:
    torch.manual_seed(0)
    arena = KVArena(2, 1, 3, 4, torch.float32, torch.device("cpu"))
    kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for i, n in enumerate([5, 70, 1, 33, 9]):
        k, kr, v = chunk(n, i)
        assert arena.append(k, kr, v) == sum(x[0].shape[3] for x in kept)
        kept.append((k, kr, v))
    arena.remove(5, 70)  # the second chunk
    del kept[1]
    arena.remove(0, 5)
    del kept[0]
    for got, i in ((arena.keys(), 0), (arena.rotated_keys(), 1), (arena.values(), 2)):
        torch.testing.assert_close(got, torch.cat([c[i] for c in kept], 3), rtol=0, atol=0)
    assert arena.used_bytes == arena.length * arena.bytes_per_token
    assert arena.bytes_per_token == 3 * 2 * 3 * 4 * 4  # pre-RoPE K, rotated K, V


def test_fixed_capacity_never_reallocates() -> None:
    arena = KVArena(2, 1, 3, 4, torch.float32, torch.device("cpu"), capacity=10,
                    fixed_capacity=True)
    storage = arena.keys().untyped_storage().data_ptr()
    arena.append(*chunk(6, 0))
    arena.remove(0, 3)
    arena.append(*chunk(7, 1))
    assert arena.keys().untyped_storage().data_ptr() == storage
    assert arena.allocated_bytes == 3 * 10 * (2 * 3 * 4) * 4
    with pytest.raises(RuntimeError, match="evict first"):
        arena.append(*chunk(1, 2))


def test_remove_out_of_range() -> None:
    arena = KVArena(2, 1, 3, 4, torch.float32, torch.device("cpu"))
    arena.append(*chunk(3, 0))
    with pytest.raises(IndexError):
        arena.remove(2, 5)
