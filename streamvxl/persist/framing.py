"""The on-disk framing of the append-only memory log: a file header, then self-checking records.

Layout (all integers little-endian)::

    file   = header | record*
    header = FILE_MAGIC (14 bytes) | u16 format version                        16 bytes
    record = RECORD_SYNC (4 bytes) | u32 body length | u32 CRC32 | body         12 + length bytes

The CRC covers the 4 length bytes and the body, so a damaged length is caught like damaged data.
The log is written by appending only, so the one damage a crash can do is a *torn tail*: a last
record cut short by a killed process. ``scan`` keeps every record whose CRC checks, reports where
the torn tail begins (``Scan.valid_end``, where appending resumes), and steps over damage in the
middle of a file (a bad disk block, a stray write) by searching for the next ``RECORD_SYNC``.
A sync sequence that occurs by chance inside a body cannot fake a record: its CRC must check too.

This module knows only bytes; what a body holds is ``streamvxl.persist.codec``'s business.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from dataclasses import dataclass

from streamvxl.errors import MemoryFileError

FILE_MAGIC = b"STREAMVXL-LOG\x00"
"""The first 14 bytes of every log file."""

FORMAT_VERSION = 1
"""The log format this streamvxl writes and reads."""

HEADER_SIZE = len(FILE_MAGIC) + 2
"""Bytes in the file header: the magic and the u16 format version (16)."""

RECORD_SYNC = b"\xabVXR"
"""The 4 bytes that open every record; a reader resynchronises on them after damage."""

RECORD_HEADER_SIZE = len(RECORD_SYNC) + 8
"""Bytes before a record's body: the sync, the u32 length and the u32 CRC32 (12)."""

MAX_BODY_LEN = 1 << 30
"""The longest body a record may hold (1 GiB), so a corrupt length never makes a reader allocate
absurdly: a length past it marks the record as damaged."""

_VERSION = struct.Struct("<H")
_LENGTH = struct.Struct("<I")
_LENGTH_CRC = struct.Struct("<II")


@dataclass(frozen=True)
class Damage:
    """A run of bytes that holds no valid record."""

    offset: int
    """Where the damaged bytes begin, from the start of the file."""
    length: int
    """How many bytes are damaged."""
    reason: str
    """Why the record expected at ``offset`` was refused (bad sync, CRC mismatch, ...)."""


@dataclass(frozen=True)
class Scan:
    """What ``scan`` found in a log's bytes. Records, ``skipped`` and ``torn_tail`` tile the bytes
    from the scan's start to the end of the data, in file order, without gaps or overlaps."""

    records: list[tuple[int, bytes]]
    """``(offset, body)`` of every record whose CRC checks, in file order."""
    skipped: list[Damage]
    """Damaged regions in the middle of the file: each one is followed by a valid record."""
    valid_end: int
    """The offset just past the last valid record (the scan's start if there is none): where a
    torn tail begins and where appending resumes."""
    torn_tail: Damage | None
    """Bytes after the last valid record that form no valid record (a write cut by a killed
    process), or None if the data ends on a record boundary."""


def file_header(version: int = FORMAT_VERSION) -> bytes:
    """The 16 bytes that open a log file of the given format version.

    Example:
        >>> file_header()
        b'STREAMVXL-LOG\\x00\\x01\\x00'
    """
    if not 0 <= version <= 0xFFFF:
        raise ValueError(f"a log format version is a u16 (0..65535), got {version}")
    return FILE_MAGIC + _VERSION.pack(version)


def read_version(head: bytes, path_for_messages: str) -> int:
    """The format version of a log file, from its first bytes; refuses anything else.

    Args:
        head: The file's first bytes (``HEADER_SIZE`` of them, or all of a shorter file; more are
            ignored).
        path_for_messages: How to name the file in error messages.

    Returns:
        The format version, always one this streamvxl reads (``FORMAT_VERSION``).

    Raises:
        MemoryFileError: The file is empty, is not a streamvxl log, has a header torn by a crash,
            or declares a format version this streamvxl does not read.

    Example:
        >>> read_version(file_header(), "memory.log")
        1
        >>> read_version(b"%PDF-1.7", "notes.pdf")
        Traceback (most recent call last):
        ...
        streamvxl.errors.MemoryFileError: notes.pdf is not a streamvxl memory log (it starts with b'%PDF-1.7'); check the path: a memory log starts with b'STREAMVXL-LOG\\x00'
    """
    head = bytes(head[:HEADER_SIZE])
    path = path_for_messages
    if not head:
        raise MemoryFileError(f"{path} is empty: not a streamvxl memory log")
    magic = head[: len(FILE_MAGIC)]
    if not FILE_MAGIC.startswith(magic):
        raise MemoryFileError(
            f"{path} is not a streamvxl memory log (it starts with {head!r}); check the path: "
            f"a memory log starts with {FILE_MAGIC!r}"
        )
    if len(head) < HEADER_SIZE:
        # A prefix of a valid header: the process creating the file died before writing it all.
        raise MemoryFileError(
            f"{path} has a torn header ({len(head)} of {HEADER_SIZE} bytes): the process that "
            f"created it stopped before writing it, so it holds no records; delete the file and "
            f"start a new log"
        )
    (version,) = _VERSION.unpack_from(head, len(FILE_MAGIC))
    if version > FORMAT_VERSION:
        raise MemoryFileError(
            f"{path} was written by a newer streamvxl (log format {version}); this one reads "
            f"format {FORMAT_VERSION}: upgrade streamvxl"
        )
    if version != FORMAT_VERSION:
        # Format 1 is the first there is: anything lower is a damaged header, not an old file.
        raise MemoryFileError(
            f"{path} declares log format {version}, which no streamvxl ever wrote (this one reads "
            f"format {FORMAT_VERSION}); the header is corrupt"
        )
    return version


def frame(body: bytes) -> bytes:
    """One record, ready to append to a log: sync, length, CRC32, body.

    Raises:
        ValueError: The body is longer than ``MAX_BODY_LEN``.

    Example:
        >>> rec = frame(b"hello")
        >>> len(rec), rec[:4] == RECORD_SYNC
        (17, True)
        >>> scan(file_header() + rec).records
        [(16, b'hello')]
    """
    return b"".join(frame_parts([body]))


def frame_parts(parts: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """`frame` for a body given as consecutive buffers: the record's 12-byte head, then the
    parts themselves (nothing copied: write them one after the other).

    Raises:
        ValueError: The body is longer than ``MAX_BODY_LEN``.
    """
    size = sum(memoryview(p).nbytes for p in parts)
    if size > MAX_BODY_LEN:
        raise ValueError(
            f"a record body may hold at most {MAX_BODY_LEN} bytes, got {size}; "
            f"split it into several records"
        )
    length = _LENGTH.pack(size)
    crc = zlib.crc32(length)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return [RECORD_SYNC + length + _LENGTH.pack(crc), *parts]


def _record_end(data: memoryview, pos: int) -> int | str:
    """The offset just past the valid record at ``pos``, or why there is none."""
    n = len(data)
    if n - pos < RECORD_HEADER_SIZE:
        if RECORD_SYNC.startswith(data[pos : pos + len(RECORD_SYNC)]):
            return "record header cut short by the end of the data"
        return "bad sync"
    if data[pos : pos + len(RECORD_SYNC)] != RECORD_SYNC:
        return "bad sync"
    length, crc = _LENGTH_CRC.unpack_from(data, pos + len(RECORD_SYNC))
    if length > MAX_BODY_LEN:
        return f"body length {length} exceeds the maximum {MAX_BODY_LEN}"
    end = pos + RECORD_HEADER_SIZE + length
    if end > n:
        return f"body of {length} bytes runs past the end of the data"
    length_bytes = data[pos + len(RECORD_SYNC) : pos + len(RECORD_SYNC) + 4]
    if zlib.crc32(data[pos + RECORD_HEADER_SIZE : end], zlib.crc32(length_bytes)) != crc:
        return "CRC mismatch"
    return end


def scan(data: bytes | bytearray | memoryview, start: int = HEADER_SIZE, *,
         copy: bool = True) -> Scan:
    """Every valid record in a log's bytes, and where the damage is.

    At a position that holds no valid record (bad sync, a length past the end of the data, a CRC
    mismatch), the scan searches for the next ``RECORD_SYNC`` from one byte further on and tries
    again. Every step moves forward, so the scan always ends; each candidate costs one CRC of at
    most the bytes it claims, which is linear in the data unless the damage is full of sync
    sequences. The file header is not checked here: see ``read_version``.

    Args:
        data: The whole file's bytes (a ``memoryview`` of an mmap works and is not copied, apart
            from the bodies returned).
        start: Where the first record begins (just past the file header by default).
        copy: False: each body is a ``memoryview`` into ``data``, not a copy (reopening a long
            log then holds none of its bytes but what it decodes; the views must be dropped
            before an mmap under them is closed).

    Raises:
        ValueError: ``start`` is negative or past the end of the data.

    Example:
        >>> data = file_header() + frame(b"a") + b"\\x00junk" + frame(b"b") + frame(b"c")[:7]
        >>> found = scan(data)
        >>> [body for _, body in found.records]
        [b'a', b'b']
        >>> found.skipped
        [Damage(offset=29, length=5, reason='bad sync')]
        >>> found.valid_end, found.torn_tail
        (47, Damage(offset=47, length=7, reason='record header cut short by the end of the data'))
    """
    view = memoryview(data).cast("B")
    n = len(view)
    if not 0 <= start <= n:
        raise ValueError(f"scan start {start} is outside the {n} bytes of data")
    records: list[tuple[int, bytes]] = []
    skipped: list[Damage] = []
    damage_start: int | None = None  # where the current run of damaged bytes began
    damage_reason = ""
    valid_end = start
    pos = start
    while pos < n:
        end = _record_end(view, pos)
        if isinstance(end, int):
            if damage_start is not None:
                skipped.append(Damage(damage_start, pos - damage_start, damage_reason))
                damage_start = None
            body = view[pos + RECORD_HEADER_SIZE : end]
            records.append((pos, bytes(body) if copy else body))
            valid_end = pos = end
            continue
        if damage_start is None:
            damage_start, damage_reason = pos, end
        # bytes.find on the underlying buffer runs in C; a Python byte loop would crawl on 100s of MB.
        found = _find(view, RECORD_SYNC, pos + 1)
        pos = n if found < 0 else found
    torn_tail = None
    if damage_start is not None:
        torn_tail = Damage(damage_start, n - damage_start, damage_reason)
    return Scan(records=records, skipped=skipped, valid_end=valid_end, torn_tail=torn_tail)


def _find(view: memoryview, needle: bytes, begin: int) -> int:
    """``view.obj.find(needle, begin)`` without copying the data, for any buffer."""
    obj = view.obj
    if isinstance(obj, (bytes, bytearray, mmap.mmap)) and len(view) == len(obj):
        return obj.find(needle, begin)
    # Another buffer (e.g. a slice): search copies of growing windows, so the work stays
    # proportional to the distance to the next hit and no copy exceeds 1 MiB.
    window = 4096
    while begin < len(view):
        stop = min(begin + window + len(needle) - 1, len(view))
        hit = bytes(view[begin:stop]).find(needle)
        if hit >= 0:
            return begin + hit
        begin += window
        window = min(2 * window, 1 << 20)
    return -1


__all__ = [
    "FILE_MAGIC",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAX_BODY_LEN",
    "RECORD_HEADER_SIZE",
    "RECORD_SYNC",
    "Damage",
    "Scan",
    "file_header",
    "frame",
    "frame_parts",
    "read_version",
    "scan",
]
