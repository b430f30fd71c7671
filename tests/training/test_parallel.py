"""`balance_groups`: every rank runs the same number of forwards, examples and order kept."""

from __future__ import annotations

import pytest

from training.parallel import balance_groups


@pytest.mark.parametrize("groups,count,want", [
    ([[0, 1, 2, 3]], 2, [[0, 1], [2, 3]]),
    ([[0, 1, 2], [3]], 3, [[0, 1], [2], [3]]),
    ([[0], [1, 2, 3]], 4, [[0], [1], [2], [3]]),
    ([[0, 1], [2, 3]], 2, [[0, 1], [2, 3]]),
])
def test_splits_largest_groups_in_order(groups, count, want) -> None:
    assert balance_groups(groups, count) == want


def test_every_reachable_count_keeps_the_examples() -> None:
    groups = [[0, 1, 2, 3, 4], [5, 6], [7]]
    for count in range(3, 9):
        out = balance_groups(groups, count)
        assert len(out) == count and all(out)
        assert [e for g in out for e in g] == list(range(8))


def test_more_groups_than_examples_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot make 4 groups of 3"):
        balance_groups([[0, 1], [2]], 4)
