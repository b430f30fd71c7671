"""MemoryStore: sink + intervals, budget enforced by dropping whole oldest intervals."""

from __future__ import annotations

import pytest
import torch

from streamvxl.errors import ConfigError
from streamvxl.memory.store import MemoryStore


def kv(n: int, tag: float) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.full((2, 1, 2, n, 4), tag)
    return k, k + 0.5


def add(store: MemoryStore, n: int, tag: float):
    return store.add(*kv(n, tag), t_start=tag, t_end=tag + 1, frame_start=int(tag),
                     frame_end=int(tag), ratio=4)


def test_drop_oldest_keeps_newest_and_sink() -> None:
    store = MemoryStore(2, 2, 4, torch.float32, torch.device("cpu"), 1e4, token_budget=20)
    store.set_sink(*kv(4, -1.0))
    for i in range(6):
        record, evicted = add(store, 5, float(i))
        assert store.num_tokens <= 20
    assert [r.id for r in store.records] == [3, 4, 5]
    assert store.evicted == 3
    keys = store.keys()[0, 0, 0, :, 0]
    assert keys[:4].eq(-1).all()  # the sink is never evicted
    assert keys[4:].tolist() == [3.0] * 5 + [4.0] * 5 + [5.0] * 5  # order kept, re-packed


def test_rotated_keys_follow_packed_positions_after_eviction() -> None:
    """Rotated keys always equal RoPE(pre-RoPE keys, 0..M-1), however often intervals leave."""
    from streamvxl.model.cache import rotate_memory

    torch.manual_seed(0)
    store = MemoryStore(2, 2, 4, torch.float64, torch.device("cpu"), 1e4, token_budget=23)
    store.set_sink(torch.randn(2, 1, 2, 3, 4, dtype=torch.float64),
                   torch.randn(2, 1, 2, 3, 4, dtype=torch.float64))
    for i, n in enumerate([5, 7, 2, 9, 4, 6, 8]):
        k = torch.randn(2, 1, 2, n, 4, dtype=torch.float64)
        store.add(k, -k, t_start=i, t_end=i, frame_start=i, frame_end=i, ratio=2)
        torch.testing.assert_close(store.rotated_keys(), rotate_memory(store.keys(), 1e4),
                                   atol=1e-12, rtol=0)
    assert store.evicted > 0


def test_interval_larger_than_budget_is_a_config_error() -> None:
    store = MemoryStore(2, 2, 4, torch.float32, torch.device("cpu"), 1e4, token_budget=10)
    store.set_sink(*kv(4, 0.0))
    with pytest.raises(ConfigError, match="at least 11"):
        add(store, 7, 1.0)
    assert store.num_tokens == 4 and not store.records  # refused before anything changed


def test_to_evict_counts_whole_oldest_intervals() -> None:
    """`to_evict` is the least number of oldest intervals whose removal makes room, and adding
    with that count leaves the budget full but not over."""
    store = MemoryStore(2, 2, 4, torch.float32, torch.device("cpu"), 1e4, token_budget=20)
    store.set_sink(*kv(2, -1.0))
    for i, n in enumerate([6, 5, 4]):
        add(store, n, float(i))  # 2 + 15 = 17 used, 3 free
    assert [store.to_evict(n) for n in (3, 4, 9, 10, 14, 18)] == [0, 1, 1, 2, 2, 3]
    record, evicted = store.add(*kv(10, 9.0), t_start=9, t_end=9, frame_start=9, frame_end=9,
                                ratio=2, evict=store.to_evict(10))
    assert [r.id for r in evicted] == [0, 1] and store.num_tokens == 16
    assert store.next_id == 4 and store.evicted == 2


def test_sink_must_leave_room() -> None:
    store = MemoryStore(2, 2, 4, torch.float32, torch.device("cpu"), 1e4, token_budget=4)
    with pytest.raises(ConfigError, match="no room"):
        store.set_sink(*kv(4, 0.0))


@pytest.mark.parametrize("budget", [0, -3, 2.5, True])
def test_bad_budget(budget) -> None:
    with pytest.raises(ConfigError, match="token_budget"):
        MemoryStore(2, 2, 4, torch.float32, torch.device("cpu"), 1e4, token_budget=budget)
