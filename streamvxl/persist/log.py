"""Memory log files: reading one back (`read_log`), appending to one (`LogWriter`), and writing a
snapshot atomically (`write_atomic`).

A log directory holds one file, ``memory.svxl`` (`framing`: a header, then checksummed records;
`records`: what they say). Reading maps the file and scans it: a record whose checksum fails in
the middle is skipped with a warning and counted; a torn tail -- the last record cut short by a
killed process -- is reported, and cut (logged) when the log is opened for appending again.
Nothing read is executed: bodies are msgpack and safetensors.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import MemoryFileError
from .durability import Durability
from .framing import (
    HEADER_SIZE,
    RECORD_HEADER_SIZE,
    RECORD_SYNC,
    Scan,
    file_header,
    frame_parts,
    read_version,
    scan,
)
from .records import LogContents, fold

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Body = bytes | list[bytes | memoryview]
"""A record body, whole or as consecutive parts (`codec.pack_parts`)."""

LOG_NAME = "memory.svxl"
"""The log file inside a log directory."""


def log_file(directory: str | os.PathLike[str]) -> Path:
    return Path(directory) / LOG_NAME


def read_log(path: str | os.PathLike[str]) -> tuple[LogContents, int]:
    """Replay a log file or snapshot; returns its contents and the offset where appending
    resumes (past the last valid record: a torn tail starts there).

    Raises:
        MemoryFileError: missing, empty, not a streamvxl log, a newer format, or its first
            record is damaged.
    """
    path = Path(path)
    name = str(path)
    try:
        with open(path, "rb") as fh:
            read_version(fh.read(HEADER_SIZE), name)  # an empty file stops here
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError as e:
        raise MemoryFileError(f"no memory at {name}: the file does not exist") from e
    except IsADirectoryError as e:
        raise MemoryFileError(f"{name} is a directory; pass the log directory itself or a "
                              "snapshot file") from e
    except OSError as e:
        if isinstance(e, MemoryFileError):
            raise
        raise MemoryFileError(f"cannot read {name}: {e}") from e
    try:
        # bodies are views of the mapped file, not copies: a log holds every interval ever
        # stored (hours, days), and only the ones still in memory are decoded (`fold`)
        found = scan(data, copy=False)
        _warn_damage(name, found)
        valid_end = found.valid_end
        contents = fold([body for _, body in found.records], name, damaged=len(found.skipped),
                        offsets=[offset for offset, _ in found.records])
    finally:
        found = None  # the views go before the map closes
        with contextlib.suppress(BufferError):  # one held by a traceback: closed when it goes
            data.close()
    return contents, valid_end


def _warn_damage(name: str, found: Scan) -> None:
    if found.skipped:
        log.warning("%s: %d damaged regions in the middle skipped (%d bytes): %s", name,
                    len(found.skipped), sum(d.length for d in found.skipped),
                    "; ".join(f"at {d.offset}: {d.reason}" for d in found.skipped[:3]))
    if found.torn_tail is not None:
        log.warning("%s: a torn last record (%d bytes at %d: %s), from a process killed while "
                    "writing; it is ignored", name, found.torn_tail.length,
                    found.torn_tail.offset, found.torn_tail.reason)


class LogWriter:
    """Appends records to a log file, forcing them to disk as `Durability` says.

    Every `append` is written and flushed to the operating system before it returns (a killed
    process loses nothing appended); ``fsync`` follows the durability setting.
    """

    def __init__(self, path: Path, fh, durability: Durability) -> None:
        _lock(fh, path)
        self.path, self._fh, self.durability = path, fh, durability
        self._unsynced = 0
        self._synced_at = time.monotonic()
        self.bytes_written = 0
        self.records_written = 0
        # "batch" fsyncs on a thread of its own: a flush of a second's records must not hold
        # up the next record (which the stream's worker may be waiting for)
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="streamvxl-fsync") \
            if durability.fsync == "batch" else None
        self._syncing: Future | None = None

    @classmethod
    def create(cls, directory: str | os.PathLike[str], durability: Durability,
               first: bytes) -> LogWriter:
        """A new log in ``directory`` (made if missing) whose first record is ``first``.

        Raises:
            MemoryFileError: the directory already holds a log, or cannot be written.
        """
        path = log_file(directory)
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
            fh = open(path, "xb")  # noqa: SIM115 - the writer owns it until close()
        except FileExistsError as e:
            raise MemoryFileError(f"{directory} already holds a memory log; reopen it with "
                                  "VideoMemory.open(...) or choose an empty directory") from e
        except OSError as e:
            raise MemoryFileError(f"cannot create a memory log in {directory}: {e}") from e
        writer = cls(path, fh, durability)
        fh.write(file_header())
        writer.append(first)
        writer.sync()  # the header record is the one a log cannot be opened without
        _sync_directory(path.parent)
        return writer

    @classmethod
    def resume(cls, path: str | os.PathLike[str], durability: Durability,
               valid_end: int) -> LogWriter:
        """Append to an existing log after its last valid record (a torn tail is cut)."""
        path = Path(path)
        try:
            fh = open(path, "r+b")  # noqa: SIM115 - the writer owns it until close()
        except OSError as e:
            raise MemoryFileError(f"cannot append to {path}: {e}") from e
        writer = cls(path, fh, durability)  # locked before anything is cut
        try:
            size = os.fstat(fh.fileno()).st_size
            if size > valid_end:
                log.warning("%s: cutting a torn last record (%d bytes) before appending", path,
                            size - valid_end)
                fh.truncate(valid_end)
                os.fsync(fh.fileno())
            fh.seek(valid_end)
        except OSError as e:
            fh.close()
            raise MemoryFileError(f"cannot append to {path}: {e}") from e
        return writer

    def append(self, body: Body) -> int:
        """Write one record (its body whole or in parts); returns once the OS has it (and the
        disk, per `Durability`), with the record's offset in the file (`read_record`).

        Raises:
            MemoryFileError: the write failed (disk full, I/O error); the log then ends at its
                last complete record once reopened.
        """
        parts = frame_parts(body if isinstance(body, list) else [body])
        try:
            offset = self._fh.tell()  # the file's own position: right after a failed write too
            for part in parts:
                self._fh.write(part)
            self._fh.flush()
        except OSError as e:
            raise MemoryFileError(f"writing to {self.path} failed: {e}") from e
        self.bytes_written += sum(memoryview(p).nbytes for p in parts)
        self.records_written += 1
        self._unsynced += 1
        d = self.durability
        if d.fsync == "record":
            self.sync()
        elif d.fsync == "batch" and (self._unsynced >= d.every_records
                                     or time.monotonic() - self._synced_at >= d.every_seconds):
            self._sync_behind()
        return offset

    def _sync_behind(self) -> None:
        """Start an fsync on the syncer thread, unless one is still running (the next record
        starts another). Its failure is raised by the next record or by close."""
        if self._syncing is not None:
            if not self._syncing.done():
                return
            self._syncing.result()
        assert self._syncer is not None
        self._unsynced = 0
        self._synced_at = time.monotonic()
        self._syncing = self._syncer.submit(self._fsync)

    def sync(self) -> None:
        """Force what was written to the disk."""
        self._fsync()
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def _fsync(self) -> None:
        try:
            os.fsync(self._fh.fileno())
        except OSError as e:
            raise MemoryFileError(f"fsync of {self.path} failed: {e}") from e

    def close(self) -> None:
        """Sync (unless ``never``) and close. Idempotent."""
        if self._fh.closed:
            return
        try:
            if self._syncer is not None:
                self._syncer.shutdown()  # lets a running fsync finish
                if self._syncing is not None:
                    self._syncing.result()
            if self.durability.fsync != "never" and self._unsynced:
                self.sync()
        finally:
            self._fh.close()


def _lock(fh, path: Path) -> None:
    """Hold the log for this writer alone (an advisory lock the kernel drops with the process,
    SIGKILL included): two processes appending to one log would interleave their records.

    Raises:
        MemoryFileError: another writer holds it (the file is closed first).
    """
    if fcntl is None:  # no flock here (Windows): one writer per log is the user's to keep
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        fh.close()
        raise MemoryFileError(f"{path} is in use: another memory (in this process or another) "
                              "is appending to it; close that one first, or open a snapshot "
                              "of it (save) instead") from e


def read_record(fh, offset: int, where: str) -> bytes:
    """The body of the record at ``offset`` of an open log or snapshot file, checked.

    Raises:
        MemoryFileError: no intact record there (the file was changed or damaged since).
    """
    try:
        head = os.pread(fh.fileno(), RECORD_HEADER_SIZE, offset)
        length = int.from_bytes(head[len(RECORD_SYNC):len(RECORD_SYNC) + 4], "little") \
            if len(head) == RECORD_HEADER_SIZE else 0
        data = head + os.pread(fh.fileno(), length, offset + RECORD_HEADER_SIZE)
    except OSError as e:
        raise MemoryFileError(f"cannot read the record at {offset} of {where}: {e}") from e
    found = scan(data, 0)
    if not found.records or found.records[0][0] != 0:
        raise MemoryFileError(f"{where}: no intact record at offset {offset} (the file was "
                              "changed or damaged after it was written)")
    return found.records[0][1]


def write_atomic(path: str | os.PathLike[str], bodies: list[Body]) -> int:
    """Write a complete log file (a snapshot) at ``path`` atomically: into a temporary file
    beside it, fsynced, then renamed over it (and the directory fsynced). A crash at any point
    leaves either the old file or the new one, never a mix. Returns the bytes written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(file_header())
            for body in bodies:
                for part in frame_parts(body if isinstance(body, list) else [body]):
                    fh.write(part)
            fh.flush()
            os.fsync(fh.fileno())
            size = fh.tell()
        os.replace(tmp, path)
        _sync_directory(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MemoryFileError(f"cannot save the memory to {path}: {e}") from e
    return size


def _sync_directory(directory: Path) -> None:
    """Make a new or renamed file's directory entry durable (POSIX needs the directory
    fsynced, not only the file)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. some network or Windows file systems)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["LOG_NAME", "LogWriter", "log_file", "read_log", "read_record", "write_atomic"]
