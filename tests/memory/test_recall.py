"""Retrieval's pieces against slow references: digests, scores, and the selection rule."""

from __future__ import annotations

import itertools

import pytest
import torch

from streamvxl.errors import ConfigError
from streamvxl.memory.recall import (
    DigestIndex,
    Retrieval,
    frame_rows,
    key_digest,
    look_scores,
    select,
    standardised,
)

# Shapes: L layers, G kv heads, n tokens, D head_dim, H query heads.


def reference_scores(queries: torch.Tensor, digests: list[torch.Tensor]) -> torch.Tensor:
    """Loops: per (layer, head) the best row's dot product, standardised over intervals, mean."""
    layers, heads, _ = queries.shape
    g = digests[0].shape[1]
    best = torch.zeros(len(digests), layers, heads)
    for i, dig in enumerate(digests):
        for lay, h in itertools.product(range(layers), range(heads)):
            kv_head = h // (heads // g)
            best[i, lay, h] = max(float(queries[lay, h].double() @ row.double())
                                  for row in dig[lay, kv_head].float())
    z = (best - best.mean(0)) / (best.std(0) + 1e-6)
    return z.mean((1, 2))


def test_scores_match_the_loops() -> None:
    gen = torch.Generator().manual_seed(1)
    index = DigestIndex()
    digests = []
    for i, n in enumerate([1, 3, 8, 13, 2]):
        keys = torch.randn(6, 1, 2, n, 4, generator=gen)  # (L, 1, G, n, D)
        dig = key_digest(keys, rows=4)
        assert dig.shape == (3, 2, 4, 4) and dig.dtype == torch.float32
        index.add(i, dig)
        digests.append(dig)
    queries = torch.randn(3, 6, 4, generator=gen)  # (L', H, D)
    assert torch.allclose(index.scores(queries), reference_scores(queries, digests), atol=1e-4)


def test_a_digest_keeps_short_intervals_whole_and_pools_long_ones() -> None:
    keys = torch.arange(2 * 1 * 1 * 6 * 2, dtype=torch.float32).reshape(2, 1, 1, 6, 2)
    upper = keys[1:, 0]  # (1, 1, 6, 2): the layers digests keep
    pooled = key_digest(keys, rows=3).float()
    assert torch.equal(pooled[0, 0], upper[0, 0].reshape(3, 2, 2).mean(1))
    whole = key_digest(keys, rows=8).float()
    assert {tuple(r.tolist()) for r in whole[0, 0]} == {tuple(r.tolist()) for r in upper[0, 0]}


def test_dropped_digests_leave_in_order() -> None:
    index = DigestIndex()
    for i in range(5):
        index.add(i, torch.full((1, 1, 1, 1), float(i)))
    index.drop_before(3)
    assert index.ids == [3, 4] and len(index) == 2
    assert index._buf[:2].flatten().tolist() == [3.0, 4.0]


def brute_select(sizes, scores, budget, recent):
    """The rule written out: newest first within the recent share, then by score, greedily."""
    chosen, used = [], 0
    for i in reversed(range(len(sizes))):
        if used + sizes[i] > recent * budget:
            break
        chosen.append(i)
        used += sizes[i]
    order = sorted(range(len(sizes)), key=lambda i: (-float(scores[i]), i))
    for i in order:
        if i not in chosen and used + sizes[i] <= budget:
            chosen.append(i)
            used += sizes[i]
    return sorted(chosen)


@pytest.mark.parametrize("seed", range(20))
def test_select_follows_the_rule(seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 30, (1,), generator=gen))
    sizes = torch.randint(1, 9, (n,), generator=gen).tolist()
    scores = torch.randn(n, generator=gen)
    budget = int(torch.randint(8, 60, (1,), generator=gen))
    recent = float(torch.rand(1, generator=gen))
    got = select(sizes, scores, budget, recent)
    assert got == brute_select(sizes, scores, budget, recent)
    assert sum(sizes[i] for i in got) <= budget and got == sorted(got)


def test_discarded_digests_leave_from_anywhere() -> None:
    index = DigestIndex()
    for i in range(6):
        index.add(i, torch.full((1, 1, 1, 1), float(i)))
    index.discard({1, 4})
    assert index.ids == [0, 2, 3, 5]
    assert index._buf[:4].flatten().tolist() == [0.0, 2.0, 3.0, 5.0]


def test_look_scores_take_each_intervals_best_frame() -> None:
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(16), dim=0)
    looks = [torch.randn(k, 16).half() for k in (3, 1, 8)]
    want = torch.tensor([max(float(row.float() @ text) for row in rows) for rows in looks])
    assert torch.allclose(look_scores(looks, text), want, atol=1e-6)
    # an interval stored before its stream kept looks ranks with the lowest, never above
    mixed = look_scores([looks[0], None, looks[2]], text)
    assert mixed[1] == min(mixed[0], mixed[2])
    assert torch.equal(look_scores([None, None], text), torch.zeros(2))


def test_frame_rows_spread_over_the_interval() -> None:
    assert frame_rows(32, 8) == [0, 4, 9, 13, 18, 22, 27, 31]
    assert frame_rows(5, 8) == [0, 1, 2, 3, 4]
    assert frame_rows(1, 8) == [0]


def test_standardised_scores() -> None:
    z = standardised(torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(z, torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.equal(standardised(torch.tensor([2.0])), torch.zeros(1))
    assert torch.equal(standardised(torch.full((4,), 3.0)), torch.zeros(4))


@pytest.mark.parametrize("bad", [{"scorer": "pixels"}, {"frames": "ViT-B-32"},
                                 {"frames": "ViT-B-32@weights.pt"}, {"frame_rows": 0},
                                 {"frame_rows": True}])
def test_retrieval_refuses_bad_scorer_settings(bad) -> None:
    with pytest.raises(ConfigError):
        Retrieval(**bad)
    assert Retrieval(scorer="both", frames="ViT-B-32@/w/clip.safetensors").frame_rows == 8


def test_the_index_scores_looks_as_the_list_does_through_drops() -> None:
    torch.manual_seed(1)
    text = torch.nn.functional.normalize(torch.randn(16), dim=0)
    index = DigestIndex(look_rows=4)
    looks: dict[int, torch.Tensor | None] = {}
    for i in range(9):
        looks[i] = None if i == 3 else torch.randn(1 + i % 5, 16).half()
        index.add(i, torch.randn(2, 1, 4, 8), looks[i])
    index.drop_before(2)
    index.discard({5, 7})
    held = [i for i in range(9) if i >= 2 and i not in (5, 7)]
    assert index.ids == held
    assert torch.allclose(index.look_scores(text), look_scores([looks[i] for i in held], text),
                          atol=1e-6)
    assert torch.equal(DigestIndex().look_scores(text), torch.zeros(0))


def test_intervals_without_looks_after_ones_with_them_grow_the_index() -> None:
    """A log reopened with looks for its older intervals only, then more intervals past the
    buffer's first capacity (64): the looks grow with the digests."""
    text = torch.nn.functional.normalize(torch.ones(16), dim=0)
    index = DigestIndex(look_rows=2)
    looks = [torch.full((2, 16), 0.25).half() if i < 3 else None for i in range(150)]
    for i, rows in enumerate(looks):
        index.add(i, torch.zeros(2, 1, 4, 8), rows)
    assert torch.allclose(index.look_scores(text), look_scores(looks, text))
