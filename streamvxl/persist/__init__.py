"""Durable memories: the append-only interval log, snapshots, and the model identity they are
checked against.

Layers, bottom up: `framing` (a file header and checksummed records), `codec` (a record body:
msgpack meta + safetensors tensors), `records` (what the records say, and how they fold back
into a memory), `log` (files: reading, appending under a `Durability`, atomic snapshots),
`identity` (the digest of what shapes a memory's K/V). A stream's use of them --
writing each interval before it is stored, reopening -- is `streamvxl.runtime.durable`.
"""

from .durability import Durability, FsyncPolicy
from .identity import ModelIdentity

__all__ = ["Durability", "FsyncPolicy", "ModelIdentity"]
