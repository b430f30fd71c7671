"""Which shard holds which camera: rendezvous (highest-random-weight) hashing.

Every camera goes to the live shard with the highest ``hash(camera, shard)``. It is a pure
function of the camera and the set of live shards, so every process computes the same table
with nothing to store or agree on; when a shard dies only its own cameras move (each to its
next-highest shard), and when a shard joins it takes only the cameras it now wins -- about
1/n of them -- which is the least movement any placement can make.

Example:
    >>> place(["cam0", "cam1", "cam2", "cam3"], ["shard-0", "shard-1"])
    {'cam0': 'shard-1', 'cam1': 'shard-0', 'cam2': 'shard-1', 'cam3': 'shard-0'}
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(camera: str, shard: str) -> int:
    """A stable pseudo-random weight of the pair (the same in every process and version)."""
    digest = hashlib.blake2b(f"{camera}\x00{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(camera: str, shards: Iterable[str]) -> str:
    """The shard ``camera`` belongs on.

    Raises:
        ValueError: no shard is live.
    """
    live = list(shards)
    if not live:
        raise ValueError(f"no live shard for camera {camera!r}")
    return max(live, key=lambda shard: (weight(camera, shard), shard))


def place(cameras: Iterable[str], shards: Iterable[str]) -> dict[str, str]:
    """``{camera: shard}`` for every camera over the live ``shards``."""
    live = list(shards)
    return {camera: owner(camera, live) for camera in cameras}


__all__ = ["owner", "place", "weight"]
