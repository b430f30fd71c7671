"""The encoder workspace shows a window exactly the memory it would see after the evictions
its interval will make, without touching the store before the interval is added."""

from __future__ import annotations

import copy

import torch

from streamvxl.memory.store import MemoryStore
from streamvxl.model.cache import rotate_memory
from streamvxl.runtime import Runtime
from streamvxl.runtime.workspace import EncoderWorkspace
from streamvxl.testing import random_videoxl

L, G, D, THETA = 2, 2, 4, 1e4
F64 = torch.float64


def filled_store(budget: int | None = 40) -> MemoryStore:
    gen = torch.Generator().manual_seed(0)
    store = MemoryStore(L, G, D, F64, torch.device("cpu"), THETA, token_budget=budget)
    store.set_sink(torch.randn(L, 1, G, 3, D, generator=gen, dtype=F64),
                   torch.randn(L, 1, G, 3, D, generator=gen, dtype=F64))
    for i, n in enumerate([7, 9, 5, 8]):
        k = torch.randn(L, 1, G, n, D, generator=gen, dtype=F64)
        store.add(k, k.flip(-1), t_start=i, t_end=i, frame_start=i, frame_end=i, ratio=2)
    return store


def test_load_skips_the_intervals_to_evict_and_repacks_the_rest() -> None:
    store = filled_store()
    earlier = [torch.randn(L, 1, G, 4, D, dtype=F64), torch.randn(L, 1, G, 2, D, dtype=F64)]
    values = [torch.randn_like(k) for k in earlier]
    for skip in range(len(store.records) + 1):
        ws = EncoderWorkspace(L, G, D, F64, torch.device("cpu"), THETA)
        ws.load(store, skip, earlier, values, window_tokens=5)
        # what the memory is after evicting `skip` intervals, then the earlier VSTs appended
        evicted = copy.deepcopy(store)
        evicted._drop_oldest(skip)
        keys = torch.cat([evicted.keys(), *earlier], dim=3)  # pre-RoPE, (L, 1, G, M, D)
        vals = torch.cat([evicted.values(), *values], dim=3)
        assert ws.length == keys.shape[3] and ws.capacity >= ws.length + 5
        k_all, v_all = ws.extend(0, torch.zeros(1, G, 5, D, dtype=F64),
                                 torch.zeros(1, G, 5, D, dtype=F64))
        torch.testing.assert_close(k_all[:, :, :ws.length], rotate_memory(keys, THETA)[0],
                                   atol=1e-12, rtol=0)
        torch.testing.assert_close(v_all[:, :, :ws.length], vals[0], atol=0, rtol=0)
        assert k_all.shape[2] == ws.length + 5
    assert store.num_tokens == 3 + 7 + 9 + 5 + 8  # the store itself never changed


def test_an_interval_that_evicts_equals_evicting_first() -> None:
    """Compressing into a full memory gives the K/V of evicting first, then compressing into
    the survivors -- while the store stays untouched until the last window is done."""
    runtime = Runtime(random_videoxl(3).double())
    gen = torch.Generator().manual_seed(1)
    store = runtime.new_store(token_budget=60)
    runtime.set_sink(store, torch.randint(0, 400, (6,), generator=gen))
    for _ in range(3):
        runtime.compress(store, torch.randn(36, 64, generator=gen, dtype=F64), 2, 12)
    tokens = torch.randn(36, 64, generator=gen, dtype=F64)
    job = runtime.job(tokens, 2, 12, t_start=9, t_end=9, frame_start=9, frame_end=9)
    assert store.to_evict(job.retained_tokens) >= 1

    reference = copy.deepcopy(store)
    reference._drop_oldest(reference.to_evict(job.retained_tokens))
    before = store.keys().clone()
    while not job.done:
        runtime.encode_next(store, job)
        assert torch.equal(store.keys(), before)  # nothing reaches the store mid-interval
    runtime.commit(store, job)
    runtime.compress(reference, tokens, 2, 12)
    torch.testing.assert_close(store.keys(), reference.keys(), atol=1e-10, rtol=0)
    torch.testing.assert_close(store.values(), reference.values(), atol=1e-10, rtol=0)
    torch.testing.assert_close(store.rotated_keys(), reference.rotated_keys(), atol=1e-10,
                               rtol=0)
