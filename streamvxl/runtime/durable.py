"""A stream's state on disk: its interval log while it runs, its snapshot, and its reopening.

`StreamLog` is the log of one live stream: the runtime writes each closed interval into it
before storing it (`Runtime.compress_next`), so an interval counts as stored only once it is
in the log, and a killed process loses at most the open interval and the one being written.
`restore_stream` replays a log (or a snapshot) into a `StreamState` equal to the one that wrote
it -- the same intervals with the same K/V in the same slots -- after checking it was written
under this runtime's model, dtype and prompt. `snapshot` is the memory as it is now, compacted
(evicted intervals and old records left out), in the same format.

What a reopened stream does not have: the open interval's frames and any interval that was being
compressed (never in the log), and the segmenter's recent similarities (the next interval's cut
starts afresh). Its time goes on from the log's: see `FrameQueue.resume`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import fields, replace
from pathlib import Path

import torch

from ..config import MemoryConfig
from ..errors import ConfigError, MemoryFileError, ModelMismatchError
from ..intervals.segmenter import IntervalSegmenter
from ..memory.store import IntervalRecord, MemoryStore
from ..persist.identity import check_identity, check_preprocess, preprocess_record
from ..persist.log import Body, LogWriter, log_file, read_log, read_record, write_atomic
from ..persist.records import (
    LogContents,
    interval_body,
    interval_tensors,
    memory_body,
    reset_body,
)
from ..persist.settings import config_from_dict, config_to_dict
from .job import IntervalJob
from .retrieval import remember, tiers_for
from .stream import StreamSettings, StreamState

log = logging.getLogger(__name__)

# Shapes: L layers, G kv heads, n tokens, D head_dim.

# Settings that only say how this process serves the stream: a reopened memory may change them.
SERVING_FIELDS = ("queue_frames", "overflow", "durability", "max_question_tokens",
                  "gap_seconds", "log_dir", "eviction", "host_budget", "retrieval")


class StreamLog:
    """The interval log of one running stream.

    Records are written by a thread of their own, one at a time: the worker hands an interval
    over (its K/V copied to the host asynchronously on a GPU) and goes on encoding, and waits
    for that record to be in the log before it hands over the next. So the log costs ingest
    little time, and a killed process loses at most the open interval and the one interval
    whose record was being written (`MemoryStats.intervals_logged` counts those written).
    A failed write (disk full) is the stream's error, reported once the next interval is
    stored (or by `close`); that interval's record is tried all the same.
    """

    def __init__(self, writer: LogWriter, logged: int = 0) -> None:
        self.writer = writer
        self.logged = logged
        """Intervals whose records the log holds (flushed to the OS; fsynced per
        `Durability`): those it was reopened with, then each one written."""
        self.offsets: dict[int, int] = {}
        """Where each interval's record starts in the log file, by id (the disk tier's index);
        written by the log's thread as records land."""
        self._records: RecordFile | None = None  # the disk tier's reads, opened on first use
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="streamvxl-log")
        self._inflight: Future | None = None
        self._staging: torch.Tensor | None = None  # pinned host buffer for a GPU's K/V

    @property
    def path(self) -> Path:
        return self.writer.path

    def interval(self, state: StreamState, job: IntervalJob, keys: torch.Tensor,
                 values: torch.Tensor, evicts: list[int]) -> BaseException | None:
        """Hand over a finished interval (keys, values (L, 1, G, n, D) pre-RoPE) and the ids
        it evicts, once the previous record is written; returns that record's error, if its
        write failed (this interval is handed over all the same: one failed write loses one
        record)."""
        try:
            self.wait()
            failed = None
        except Exception as e:  # noqa: BLE001 - the caller reports it; the log goes on
            failed = e
        keys, values, copied = self._to_host(keys[:, 0], values[:, 0])
        fields = dict(id=state.store.next_id, t_start=job.t_start, t_end=job.t_end,
                      frame_start=job.closed.start, frame_end=job.closed.end, ratio=job.ratio,
                      embedding=job.embedding, evicts=evicts, gaps=list(state.gaps),
                      spacing=list(state.spacing), last_time=state.last_time, wall=time.time(),
                      looks=job.looks, looks_by=state.settings.looks_tag,
                      time_origin=state.time_origin)

        def write() -> None:
            if copied is not None:
                copied.synchronize()
            offset = self.writer.append(interval_body(keys=keys, values=values, **fields))
            self.offsets[fields["id"]] = offset
            self.logged += 1

        self._inflight = self._pool.submit(write)
        return failed

    def when_written(self, done: Callable[[], None]) -> None:
        """Call ``done`` once every record handed over is in the log (now, if it is)."""
        inflight = self._inflight
        if inflight is None or inflight.done():
            done()
        else:
            inflight.add_done_callback(lambda _: done())

    def wait(self) -> None:
        """Until the record in flight is written; raises its error."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def reset(self) -> None:
        self.wait()
        self.offsets.clear()  # ids start again at 0: the old records are not theirs
        self.writer.append(reset_body(time.time()))

    def read_interval(self, offset: int, interval_id: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pre-RoPE keys and values (L, G, n, D) of interval ``interval_id``, whose record
        is at ``offset`` (the disk tier reads its intervals back through this)."""
        if self._records is None:
            self._records = RecordFile(self.path)
        return self._records.read_interval(offset, interval_id)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown()
            self.writer.close()
            if self._records is not None:
                self._records.close()

    def _to_host(self, keys: torch.Tensor, values: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]:
        """Host copies of (L, G, n, D) keys and values; on a GPU into a pinned buffer,
        asynchronously (the returned event marks the copy's end)."""
        if keys.device.type != "cuda":
            return keys, values, None  # the job's own tensors: nothing writes them again
        n = keys.numel()
        if self._staging is None or self._staging.numel() < 2 * n or \
                self._staging.dtype != keys.dtype:
            self._staging = torch.empty(2 * n, dtype=keys.dtype, pin_memory=True)
        host_k = self._staging[:n].view(keys.shape)
        host_v = self._staging[n:2 * n].view(values.shape)
        host_k.copy_(keys, non_blocking=True)
        host_v.copy_(values, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host_k, host_v, event


class RecordFile:
    """Reads interval records back from a log or snapshot file (the disk tier), through one
    read-only handle opened on first use."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh = None

    def read_interval(self, offset: int, interval_id: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pre-RoPE keys and values (L, G, n, D) of interval ``interval_id``, whose record
        is at ``offset``.

        Raises:
            MemoryFileError: the file cannot be read, or holds no intact interval record
                there.
        """
        if self._fh is None:
            try:
                self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            except OSError as e:
                raise MemoryFileError(f"cannot read the disk tier's {self.path}: {e}") from e
        return interval_tensors(read_record(self._fh, offset, str(self.path)), str(self.path),
                                interval_id)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def start_log(runtime, state: StreamState, directory: str | os.PathLike[str]) -> StreamLog:
    """A new log for a fresh stream, its first record the model, settings and sink.

    Raises:
        MemoryFileError: ``directory`` already holds a log, or cannot be written.
        ConfigError: the settings cannot be recorded (a custom ratio policy).
    """
    writer = LogWriter.create(directory, state.settings.config.durability,
                              _memory_record(runtime, state))
    log.info("memory log %s started", writer.path)
    return StreamLog(writer)


def snapshot(runtime, state: StreamState, path: str | os.PathLike[str]) -> int:
    """Write the memory as it is now to ``path`` atomically; returns its size in bytes."""
    size = write_atomic(path, [_memory_record(runtime, state),
                               *(b for _, b in _interval_bodies(state))])
    log.info("memory saved to %s: %d intervals, %d bytes", path, len(state.store.records), size)
    return size


def restore_stream(runtime, path: str | os.PathLike[str], config: MemoryConfig | None = None
                   ) -> StreamState:
    """The stream a log directory or snapshot file holds, checked against ``runtime``; a log
    directory goes on being appended to.

    Args:
        config: settings for the reopened stream; None keeps the recorded ones. Only how the
            stream is served may differ (`SERVING_FIELDS`): its prompt, cutting and compression
            made the stored K/V.

    Raises:
        MemoryFileError: no memory there, or not a readable one (see `read_log`).
        ModelMismatchError: written under another model, dtype, tokenizer or prompt.
        ConfigError: ``config`` differs from the recorded settings in more than serving.
    """
    path = Path(path)
    is_log = path.is_dir()
    file = log_file(path) if is_log else path
    contents, valid_end = read_log(file)
    check_identity(contents.identity, runtime.identity, str(file))
    check_preprocess(contents.preprocess, runtime.preprocessor, str(file))
    recorded = config_from_dict(contents.settings, str(file))
    config = _reopened_config(recorded, config, str(file))
    config = replace(config, log_dir=str(path) if is_log else config.log_dir)
    settings = runtime.settings(config)
    if settings.prefix_ids != contents.prefix_ids:
        raise ModelMismatchError(
            f"{file}: its prompt prefix was tokenized as {list(contents.prefix_ids)[:12]}..., "
            f"this tokenizer gives {list(settings.prefix_ids)[:12]}...; open it with the "
            "tokenizer that wrote it")
    _keep_looks(contents, settings, str(file))
    store = runtime.new_store(config.token_budget)
    device, dtype = runtime.model.device, runtime.model.dtype
    store.set_sink(contents.sink_keys[:, None].to(device, dtype),
                   contents.sink_values[:, None].to(device, dtype))
    _fill(store, contents, str(file))
    state = StreamState(settings, store, IntervalSegmenter(settings.boundary),
                        frames_seen=contents.frames_seen)
    state.gaps = list(contents.gaps)
    state.spacing.extend(contents.spacing)
    state.last_time = contents.last_time
    state.time_origin = contents.time_origin
    state.resumed_wall = contents.last_wall
    if config.token_budget is not None:
        runtime.workspace.reserve(config.token_budget + 2 * settings.window)
    if is_log:
        # what the log held counts as logged: intervals_logged stays comparable to
        # intervals_closed, which goes on from the reopened memory's ids
        state.log = StreamLog(LogWriter.resume(file, config.durability, valid_end),
                              logged=store.next_id)
    _restore_tiers(runtime, state, contents, None if is_log else file)
    if not is_log and config.log_dir is not None:  # the snapshot starts a new log
        state.log = start_log(runtime, state, config.log_dir)
        for interval_id, body in _interval_bodies(state):
            state.log.offsets[interval_id] = state.log.writer.append(body)
        state.log.logged = store.next_id
        if state.archive is not None:  # its disk tier is the new log from now on
            state.archive.reader, state.archive.locate = (state.log.read_interval,
                                                          state.log.offsets.get)
            for entry in state.archive.entries:
                entry.offset = state.log.offsets[entry.record.id]
        if state.snapshot is not None:  # every record it held was read into the new log
            state.snapshot.close()
            state.snapshot = None
    log.info("memory reopened from %s: %d intervals (%d records, %d damaged skipped), frames "
             "continue at %d", path, len(store.records), contents.records, contents.damaged,
             contents.frames_seen)
    return state


def _restore_tiers(runtime, state: StreamState, contents: LogContents,
                   snapshot_file: Path | None) -> None:
    """The reopened stream's archive (what the log holds beyond the GPU: on disk, read back
    on demand) and the key digests of every interval it holds."""
    if snapshot_file is not None:
        state.snapshot = RecordFile(snapshot_file)
    tiers_for(state, runtime.model.device,
              state.snapshot.read_interval if state.snapshot is not None else None)
    if state.log is not None:
        state.log.offsets.update(contents.offsets)
    if state.archive is not None:
        for record, offset in contents.archived:
            state.archive.on_disk_at(record, offset)
    elif state.store.records:  # gaps before the oldest interval in memory went with it
        state.forget_gaps_before(state.store.records[0].t_start)
    if state.digests is None:
        return
    archive = state.archive
    for entry in archive.entries if archive is not None else []:
        keys, _ = archive.load(entry)
        remember(state, entry.record, keys)
    store = state.store
    for record, at in zip(store.records, store.token_starts(), strict=True):
        remember(state, record, store.keys()[:, :, :, at:at + record.num_tokens])


def _keep_looks(contents: LogContents, settings: StreamSettings, where: str) -> None:
    """Drop the text-to-frame embeddings that another scorer made than the one ``settings``
    score with -- another name, or the same name with other weights (the tag's digest) -- or
    all of them when they score keys only: another scorer's space would rank nonsense. Those
    intervals score lowest until they age out (their frames are gone). A tag without a digest
    (logs from before streamvxl wrote one) is taken by its name."""
    wanted = settings.looks_wanted
    same = {settings.looks_tag, wanted} if wanted is not None else set()
    other = {i for i, by in contents.looks_by.items() if by not in same}
    if not other:
        return
    if wanted is not None:
        log.warning("%s: %d intervals' frame embeddings were made by another scorer than %r; "
                    "they rank lowest for it", where, len(other), wanted)
    contents.intervals = [dataclasses.replace(x, record=dataclasses.replace(x.record, looks=None))
                          if x.record.id in other else x for x in contents.intervals]
    contents.archived = [(dataclasses.replace(r, looks=None) if r.id in other else r, at)
                         for r, at in contents.archived]
    contents.looks_by = {i: by for i, by in contents.looks_by.items() if i not in other}


def _reopened_config(recorded: MemoryConfig, given: MemoryConfig | None,
                     where: str) -> MemoryConfig:
    if given is None:
        return recorded
    if not isinstance(given, MemoryConfig):
        raise ConfigError(f"config must be a MemoryConfig, got {type(given).__name__}")
    if given.prompt != recorded.prompt:
        raise ModelMismatchError(
            f"{where} was written with the prompt {recorded.prompt.prefix!r} ... "
            f"{recorded.prompt.question!r}; config asks for {given.prompt.prefix!r} ... "
            f"{given.prompt.question!r}. The sink and the questions must use the prompt the "
            "memory was made with: pass config=None or its prompt")
    for f in fields(MemoryConfig):
        if f.name not in SERVING_FIELDS and getattr(given, f.name) != getattr(recorded, f.name):
            raise ConfigError(
                f"{where} was made with {f.name}={getattr(recorded, f.name)!r}; a reopened "
                f"memory keeps it (config asks for {getattr(given, f.name)!r}). Only "
                f"{', '.join(SERVING_FIELDS)} may change; start a new memory for other "
                "settings")
    return given


def _fill(store: MemoryStore, contents: LogContents, where: str) -> None:
    device, dtype = store.arena.device, store.arena.dtype
    intervals = contents.intervals
    # a damaged record can leave more than the budget holds: keep the newest that fit
    while intervals and store.token_budget is not None and store.sink_tokens + sum(
            i.record.num_tokens for i in intervals) > store.token_budget:
        log.warning("%s: interval %d does not fit the budget after a damaged record; dropped",
                    where, intervals[0].record.id)
        intervals = intervals[1:]
    for i in intervals:
        r = i.record
        store.next_id = r.id  # the log's ids, gaps and all (evicted or damaged ones)
        store.add(i.keys[:, None].to(device, dtype), i.values[:, None].to(device, dtype),
                  t_start=r.t_start, t_end=r.t_end, frame_start=r.frame_start,
                  frame_end=r.frame_end, ratio=r.ratio, embedding=r.embedding, evict=0,
                  looks=r.looks)
    store.next_id = contents.next_id
    store.evicted = contents.evicted


def _interval_bodies(state: StreamState) -> list[tuple[int, Body]]:
    """(id, ``interval`` record) for every interval held (as a snapshot holds them): the
    archived ones (read back from disk where they are there), then those in memory, the first
    of which evicts the archived ones -- so a reopened memory has them on its disk tier."""
    store, archive = state.store, state.archive
    entries = archive.entries if archive is not None else []
    keys, values = store.keys(), store.values()
    out = []

    def body(record: IntervalRecord, k: torch.Tensor, v: torch.Tensor, evicts: list[int]
             ) -> Body:
        return interval_body(
            id=record.id, t_start=record.t_start, t_end=record.t_end,
            frame_start=record.frame_start, frame_end=record.frame_end, ratio=record.ratio,
            keys=k, values=v, embedding=record.embedding, evicts=evicts, gaps=state.gaps,
            spacing=list(state.spacing), last_time=state.last_time, wall=time.time(),
            looks=record.looks, looks_by=state.settings.looks_tag, time_origin=state.time_origin)

    for entry in entries:
        k, v = archive.load(entry)
        out.append((entry.record.id, body(entry.record, k[:, 0], v[:, 0], [])))
    evicts = [e.record.id for e in entries]
    for record, a in zip(store.records, store.token_starts(), strict=True):
        end = a + record.num_tokens
        out.append((record.id, body(record, keys[:, 0, :, a:end], values[:, 0, :, a:end],
                                    evicts)))
        evicts = []
    return out


def _memory_record(runtime, state: StreamState) -> bytes:
    return memory_body(runtime.identity, config_to_dict(state.settings.config),
                       state.settings.prefix_ids, *_sink(state.store), time.time(),
                       evicted=state.store.evicted - len(state.archive or ()),
                       preprocess=preprocess_record(runtime.preprocessor))


def _sink(store: MemoryStore) -> tuple[torch.Tensor, torch.Tensor]:
    """The sink's pre-RoPE keys and values (L, G, S, D)."""
    s = store.sink_tokens
    return store.keys()[:, 0, :, :s], store.values()[:, 0, :, :s]


__all__ = ["RecordFile", "StreamLog", "restore_stream", "snapshot", "start_log"]
