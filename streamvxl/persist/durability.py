"""`Durability`: when a memory log's writes are forced to the disk (``fsync``), and what each
choice survives.

Every record is written (``write`` + ``flush``) to the operating system before its interval
counts as stored, whatever the setting: a killed process (SIGKILL, a crash, an OOM kill) loses
nothing that was stored, because the kernel's page cache outlives the process. ``fsync`` is what
survives the machine itself losing power or crashing:

- ``"record"``: fsync after every record. A power loss loses nothing stored. Costs one disk
  flush per closed interval (a few ms on an SSD; intervals close every few seconds).
- ``"batch"``: fsync once ``every_records`` records or ``every_seconds`` seconds have gone by
  since the last one (checked at each record, and at close), on a thread of its own so that
  writing goes on meanwhile. A power loss loses about that many records / seconds of
  intervals (plus those written while an fsync ran).
- ``"never"``: leave it to the operating system (Linux writes dirty pages back within about
  30 s). A power loss can lose the last half minute or so; a killed process loses nothing.

A torn last record (power lost mid-write) is detected by its checksum and cut when the log is
opened again (`streamvxl.persist.framing`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

FsyncPolicy = Literal["record", "batch", "never"]


@dataclass(frozen=True)
class Durability:
    """When a memory log fsyncs (see the module docstring for what each choice survives).

    Example:
        >>> Durability("batch", every_records=10, every_seconds=5.0).fsync
        'batch'
    """

    fsync: FsyncPolicy = "record"
    every_records: int = 16
    """``"batch"``: fsync after this many records at most."""
    every_seconds: float = 1.0
    """``"batch"``: fsync when this many seconds have passed since the last one."""

    def __post_init__(self) -> None:
        if self.fsync not in ("record", "batch", "never"):
            raise ConfigError(f"Durability.fsync must be 'record', 'batch' or 'never', got "
                              f"{self.fsync!r}")
        if isinstance(self.every_records, bool) or not isinstance(self.every_records, int) \
                or self.every_records < 1:
            raise ConfigError(f"Durability.every_records must be a positive int, got "
                              f"{self.every_records!r}")
        if isinstance(self.every_seconds, bool) or not isinstance(self.every_seconds,
                                                                   (int, float)) \
                or not math.isfinite(self.every_seconds) or self.every_seconds <= 0:
            raise ConfigError(f"Durability.every_seconds must be a positive number, got "
                              f"{self.every_seconds!r}")


__all__ = ["Durability", "FsyncPolicy"]
