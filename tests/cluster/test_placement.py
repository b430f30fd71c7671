"""Rendezvous placement: the same table everywhere; a shard's death moves only its cameras, a
shard's arrival takes only what it wins, and cameras spread evenly."""

from __future__ import annotations

from collections import Counter

import pytest

from streamvxl.cluster.placement import owner, place

CAMERAS = [f"cam-{i}" for i in range(2000)]
SHARDS = [f"shard-{i}" for i in range(5)]


def test_it_is_a_function_of_the_camera_and_the_live_set() -> None:
    assert place(CAMERAS, SHARDS) == place(CAMERAS, list(reversed(SHARDS)))
    assert owner("door", ["a"]) == "a"
    with pytest.raises(ValueError, match="no live shard"):
        owner("door", [])


def test_a_death_moves_only_the_dead_shards_cameras() -> None:
    before = place(CAMERAS, SHARDS)
    after = place(CAMERAS, [s for s in SHARDS if s != "shard-2"])
    moved = {c for c in CAMERAS if before[c] != after[c]}
    assert moved == {c for c in CAMERAS if before[c] == "shard-2"}
    # they spread over every survivor, not onto one
    assert len(Counter(after[c] for c in moved)) == len(SHARDS) - 1


def test_an_arrival_takes_only_what_it_wins_about_one_nth() -> None:
    before = place(CAMERAS, SHARDS)
    after = place(CAMERAS, [*SHARDS, "shard-5"])
    moved = [c for c in CAMERAS if before[c] != after[c]]
    assert all(after[c] == "shard-5" for c in moved)
    assert abs(len(moved) - len(CAMERAS) / 6) < 0.2 * len(CAMERAS) / 6


def test_cameras_spread_evenly() -> None:
    counts = Counter(place(CAMERAS, SHARDS).values())
    assert set(counts) == set(SHARDS)
    assert max(counts.values()) < 1.2 * len(CAMERAS) / len(SHARDS)
