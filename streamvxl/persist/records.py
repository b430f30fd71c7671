"""What a memory log's records say, and how a run of them folds back into a memory.

Three kinds of record, each one `codec` body (msgpack meta + safetensors tensors):

- ``memory``, first in every log: the `ModelIdentity` the K/V were computed under, the
  memory's settings (`settings.config_to_dict`), the prompt prefix's ids and its K/V (the
  sink), once.
- ``interval``, one per closed interval, written before it counts as stored: its id, time
  span, frame range, ratio, the ids of the intervals it evicted to fit the budget, its
  pre-RoPE keys and values (L, G, n, D) and mean embedding, and the stream's gaps and recent
  frame spacing at that moment. Keys are stored before RoPE, so any subset re-packs exactly.
- ``reset``: everything before it was forgotten (`VideoMemory.reset`).

`fold` replays records in order into a `LogContents`: the intervals still in memory (evictions
applied), with their tensors, and the counters the stream continues from. A record whose meta
is malformed is skipped and counted like a record whose checksum failed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import MemoryFileError
from ..frames import Gap
from ..memory.store import IntervalRecord
from .codec import pack, pack_parts, unpack, unpack_meta
from .identity import ModelIdentity

log = logging.getLogger(__name__)

# Shapes: L layers, G kv heads, S sink tokens, n an interval's tokens, D head_dim, E embedding.

MEMORY, INTERVAL, RESET = "memory", "interval", "reset"


@dataclass(frozen=True)
class LoggedInterval:
    """One interval as its record holds it: the store's record and its tensors."""

    record: IntervalRecord
    """Id, time span, frames, ratio, tokens and mean embedding."""
    keys: torch.Tensor
    """(L, G, n, D) pre-RoPE keys, on the CPU."""
    values: torch.Tensor
    """(L, G, n, D)."""


@dataclass
class LogContents:
    """A log replayed: what the memory held when its last record was written."""

    identity: ModelIdentity
    settings: dict[str, Any]
    """The recorded `MemoryConfig`, as plain data (`settings.config_from_dict`)."""
    prefix_ids: tuple[int, ...]
    sink_keys: torch.Tensor
    """(L, G, S, D) the prompt prefix's pre-RoPE keys."""
    sink_values: torch.Tensor
    intervals: list[LoggedInterval] = field(default_factory=list)
    """The intervals in memory, oldest first (evicted ones left out)."""
    archived: list[tuple[IntervalRecord, int]] = field(default_factory=list)
    """Intervals evicted from memory whose records are still in the file, oldest first, with
    their record's offset (the disk tier of ``eviction="offload"``; not decoded). Empty unless
    `fold` was given the offsets."""
    offsets: dict[int, int] = field(default_factory=dict)
    """Record offset of each interval held (in memory or archived), by id, when `fold` was
    given the offsets."""
    next_id: int = 0
    """The next interval's id (intervals ever stored)."""
    evicted: int = 0
    """Intervals evicted over the memory's life."""
    gaps: list[Gap] = field(default_factory=list)
    spacing: list[float] = field(default_factory=list)
    """The last intervals between frames, seconds (the automatic gap threshold)."""
    preprocess: dict[str, Any] | None = None
    """How the writer turned frames into pixels (`identity.preprocess_record`); None in a log
    written before streamvxl recorded it, or under a model without vision."""
    looks_by: dict[int, str] = field(default_factory=dict)
    """Which text-to-frame scorer made each held interval's looks (`Retrieval.frames`), by id,
    for those that have them."""
    last_time: float | None = None
    """Stream time of the newest frame the last record knew of."""
    time_origin: float | None = None
    """Stream time of its first frame (what frame time stamps count from); None in a log
    written before streamvxl recorded it."""
    last_wall: float | None = None
    """`time.time()` when the last record was written (with ``last_time``: how much time
    passed while the memory was closed)."""
    frames_seen: int = 0
    """Frames the stored intervals cover: the next frame's index."""
    records: int = 0
    """Records read (valid ones)."""
    damaged: int = 0
    """Records skipped: a checksum that failed in the middle of the log, or a malformed meta."""


# -- writing -------------------------------------------------------------------------------------
def memory_body(identity: ModelIdentity, settings: dict[str, Any], prefix_ids: Sequence[int],
                sink_keys: torch.Tensor, sink_values: torch.Tensor, wall: float,
                evicted: int = 0, preprocess: dict[str, Any] | None = None) -> bytes:
    """The ``memory`` record: sink K/V (L, G, S, D); ``evicted``: intervals evicted before
    it (a snapshot's history); ``preprocess``: how frames became pixels
    (`identity.preprocess_record`; None for a model without vision)."""
    from .. import __version__

    meta = {"kind": MEMORY, "identity": identity.to_dict(), "settings": settings,
            "prefix_ids": [int(i) for i in prefix_ids], "created": wall,
            "evicted": int(evicted), "writer": f"streamvxl {__version__}"}
    if preprocess is not None:
        meta["preprocess"] = preprocess
    return pack(meta, {"sink_keys": sink_keys, "sink_values": sink_values})


def interval_body(*, id: int, t_start: float, t_end: float, frame_start: int, frame_end: int,
                  ratio: int | None, keys: torch.Tensor, values: torch.Tensor,
                  embedding: torch.Tensor | None, evicts: Sequence[int], gaps: Sequence[Gap],
                  spacing: Sequence[float], last_time: float | None, wall: float,
                  looks: torch.Tensor | None = None, looks_by: str | None = None,
                  time_origin: float | None = None) -> list[bytes | memoryview]:
    """An ``interval`` record's body, as parts (`codec.pack_parts`): keys and values
    (L, G, n, D) pre-RoPE, embedding (E,); the text-to-frame embeddings ``looks`` (k, E')
    made by the scorer ``looks_by`` (`Retrieval.frames`) go in the meta, as float16 bytes:
    they are small, and `fold` reads every record's meta, so a reopened log's disk tier is
    scored without reading its K/V. ``time_origin``: the stream's first frame's time, which
    frame time stamps count from."""
    tensors = {"keys": keys, "values": values}
    if embedding is not None:
        tensors["embedding"] = embedding.float()
    meta = {"kind": INTERVAL, "id": id, "t_start": t_start, "t_end": t_end,
            "frame_start": frame_start, "frame_end": frame_end, "ratio": ratio,
            "num_tokens": int(keys.shape[2]), "evicts": [int(i) for i in evicts],
            "gaps": [[g.start, g.end, g.cause] for g in gaps],
            "spacing": [float(s) for s in spacing], "last_time": last_time, "wall": wall,
            "time_origin": time_origin}
    if looks is not None and looks_by is not None:
        rows = looks.detach().to("cpu", torch.float16).contiguous()
        meta["looks"] = {"by": looks_by, "shape": list(rows.shape),
                         "f16": rows.view(torch.int16).numpy().tobytes()}
    return pack_parts(meta, tensors)


def reset_body(wall: float) -> bytes:
    return pack({"kind": RESET, "wall": wall}, {})


# -- reading -------------------------------------------------------------------------------------
class _Malformed(Exception):
    """A record whose meta does not say what its kind requires."""


def fold(bodies: Sequence[bytes], where: str, damaged: int = 0,
         offsets: Sequence[int] | None = None) -> LogContents:
    """Replay record bodies (in file order) into the memory they describe.

    Args:
        bodies: every record whose checksum passed.
        where: the log's name, for messages.
        damaged: records already skipped for a failed checksum (counted on).
        offsets: where each body's record starts in the file; given, evicted intervals are
            listed in ``LogContents.archived``.

    Raises:
        MemoryFileError: the log has no valid ``memory`` record first (not a memory log, or
            its first record is damaged: nothing can be checked against a model then).
    """
    if not bodies:
        raise MemoryFileError(f"{where} holds no records: the process that created it stopped "
                              "before writing its first one; delete it and start again")
    try:
        meta, tensors = unpack(bodies[0])
        contents = _memory(meta, tensors)
    except (MemoryFileError, _Malformed) as e:
        raise MemoryFileError(f"{where}: its first record (the model and settings) is damaged "
                              f"({e}); the intervals cannot be checked against a model, so the "
                              "log cannot be opened") from e
    contents.damaged = damaged
    contents.records = 1
    live: dict[int, tuple[dict[str, Any], bytes]] = {}  # id -> (meta, body), in memory order
    at: dict[int, int] = {}  # id -> record offset
    archived: dict[int, dict[str, Any]] = {}  # evicted id -> meta, in time order
    for k, body in enumerate(bodies[1:], 1):
        try:
            meta = unpack_meta(body)
            kind = meta.get("kind")
            if kind == INTERVAL:
                meta = _check_interval(meta)
                for gone in meta["evicts"]:
                    if gone in live and offsets is not None:
                        archived[gone] = live[gone][0]
                _apply_interval(contents, live, meta, body)
                if offsets is not None:
                    at[meta["id"]] = offsets[k]
            elif kind == RESET:
                live.clear()
                archived.clear()
                contents.gaps, contents.spacing = [], []
                contents.next_id = contents.evicted = contents.frames_seen = 0
                contents.last_time = contents.time_origin = None
                contents.last_wall = _number(meta, "wall")
            else:
                raise _Malformed(f"unknown record kind {kind!r}")
            contents.records += 1
        except (MemoryFileError, _Malformed) as e:
            contents.damaged += 1
            log.warning("%s: skipped a damaged record (%s)", where, e)
    contents.intervals = _load(live, where, contents)
    contents.archived = [(_record(meta), at[i]) for i, meta in archived.items()]
    contents.looks_by = {i: by for i, meta in [*archived.items(), *((m["id"], m) for m, _ in
                                                                     live.values())]
                         if (by := looks_by(meta)) is not None}
    contents.offsets = {i: at[i] for i in [*archived, *(x.record.id for x in contents.intervals)]
                        if i in at}
    held = [r for r, _ in contents.archived] + [i.record for i in contents.intervals]
    if held:
        first = held[0].t_start  # earlier gaps were forgotten with it
        contents.gaps = [g for g in contents.gaps if g.end >= first]
    return contents


def _memory(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> LogContents:
    if meta.get("kind") != MEMORY:
        raise _Malformed(f"a {meta.get('kind')!r} record where the memory record belongs")
    prefix = meta.get("prefix_ids")
    if not isinstance(prefix, list) or not all(isinstance(i, int) for i in prefix):
        raise _Malformed("prefix_ids is not a list of ints")
    settings = meta.get("settings")
    if not isinstance(settings, dict):
        raise _Malformed("settings is not a map")
    keys, values = tensors.get("sink_keys"), tensors.get("sink_values")
    if keys is None or values is None or keys.dim() != 4 or keys.shape != values.shape:
        raise _Malformed("the sink's keys and values are missing or of different shapes")
    preprocess = meta.get("preprocess")
    if preprocess is not None and not isinstance(preprocess, dict):
        raise _Malformed("preprocess is not a map")
    return LogContents(ModelIdentity.from_dict(meta.get("identity")), settings, tuple(prefix),
                       keys, values, preprocess=preprocess, evicted=_int(meta, "evicted"),
                       last_wall=_number(meta, "created"))


def _number(meta: dict[str, Any], key: str, optional: bool = False) -> float | None:
    value = meta.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Malformed(f"{key} is not a finite number: {value!r}")
    return float(value)


def _int(meta: dict[str, Any], key: str, optional: bool = False) -> int | None:
    value = meta.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Malformed(f"{key} is not a non-negative int: {value!r}")
    return value


def _check_interval(meta: dict[str, Any]) -> dict[str, Any]:
    for key in ("id", "frame_start", "frame_end", "num_tokens"):
        _int(meta, key)
    _int(meta, "ratio", optional=True)
    for key in ("t_start", "t_end", "wall"):
        _number(meta, key)
    _number(meta, "last_time", optional=True)
    _number(meta, "time_origin", optional=True)
    evicts, gaps, spacing = meta.get("evicts"), meta.get("gaps"), meta.get("spacing")
    if not isinstance(evicts, list) or not all(isinstance(i, int) for i in evicts):
        raise _Malformed("evicts is not a list of ids")
    if not isinstance(gaps, list) or not all(
            isinstance(g, list) and len(g) == 3 and isinstance(g[2], str)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in g[:2])
            for g in gaps):
        raise _Malformed("gaps is not a list of [start, end, cause]")
    if not isinstance(spacing, list) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in spacing):
        raise _Malformed("spacing is not a list of numbers")
    if meta["frame_end"] < meta["frame_start"] or meta["t_end"] < meta["t_start"]:
        raise _Malformed("the interval ends before it starts")
    looks = meta.get("looks")
    if looks is not None:
        shape = looks.get("shape") if isinstance(looks, dict) else None
        if not (isinstance(shape, list) and len(shape) == 2
                and all(isinstance(x, int) and x > 0 for x in shape)
                and isinstance(looks.get("by"), str) and isinstance(looks.get("f16"), bytes)
                and len(looks["f16"]) == 2 * shape[0] * shape[1]):
            raise _Malformed("looks is not {by, shape [k, E], f16 bytes of that shape}")
    return meta


def _apply_interval(contents: LogContents, live: dict[int, tuple[dict[str, Any], bytes]],
                    meta: dict[str, Any], body: bytes) -> None:
    for gone in meta["evicts"]:
        if live.pop(gone, None) is not None:
            contents.evicted += 1
    live[meta["id"]] = (meta, body)
    contents.next_id = max(contents.next_id, meta["id"] + 1)
    contents.frames_seen = max(contents.frames_seen, meta["frame_end"] + 1)
    contents.gaps = [Gap(float(s), float(e), c) for s, e, c in meta["gaps"]]
    contents.spacing = [float(s) for s in meta["spacing"]]
    contents.last_time = meta["last_time"] if meta["last_time"] is not None else meta["t_end"]
    contents.time_origin = meta.get("time_origin")
    contents.last_wall = meta["wall"]


def _load(live: dict[int, tuple[dict[str, Any], bytes]], where: str,
          contents: LogContents) -> list[LoggedInterval]:
    """The live intervals' tensors (only theirs are decoded: evicted ones may be most of a
    long log)."""
    out: list[LoggedInterval] = []
    layers, heads, _, dim = contents.sink_keys.shape
    for meta, body in live.values():
        try:
            _, tensors = unpack(body)
            keys, values = tensors.get("keys"), tensors.get("values")
            if keys is None or values is None or keys.shape != values.shape or \
                    keys.shape != (layers, heads, meta["num_tokens"], dim) or \
                    keys.dtype != contents.sink_keys.dtype:
                raise _Malformed(f"its keys / values are missing or not of shape "
                                 f"({layers}, {heads}, {meta['num_tokens']}, {dim})")
        except (MemoryFileError, _Malformed) as e:
            contents.damaged += 1
            log.warning("%s: skipped interval %s (%s)", where, meta["id"], e)
            continue
        out.append(LoggedInterval(_record(meta, tensors.get("embedding")), keys, values))
    return out


def _record(meta: dict[str, Any], embedding: torch.Tensor | None = None) -> IntervalRecord:
    looks = meta.get("looks")
    rows = None
    if looks is not None:  # checked by _check_interval
        rows = torch.frombuffer(bytearray(looks["f16"]), dtype=torch.float16).reshape(
            looks["shape"])
    return IntervalRecord(meta["id"], float(meta["t_start"]), float(meta["t_end"]),
                          meta["frame_start"], meta["frame_end"], meta["ratio"],
                          meta["num_tokens"], embedding, rows)


def looks_by(meta: dict[str, Any]) -> str | None:
    """The scorer whose text-to-frame embeddings an interval record holds (None: none)."""
    looks = meta.get("looks")
    return looks["by"] if looks is not None else None


def interval_tensors(body: bytes, where: str, interval_id: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pre-RoPE keys and values (L, G, n, D) of one ``interval`` record body, which must be
    interval ``interval_id``'s.

    Raises:
        MemoryFileError: the body is not an intact record of that interval.
    """
    meta, tensors = unpack(body)
    keys, values = tensors.get("keys"), tensors.get("values")
    if meta.get("kind") != INTERVAL or keys is None or values is None or \
            keys.shape != values.shape or keys.dim() != 4:
        raise MemoryFileError(f"{where}: the record read back is not an interval's")
    if meta.get("id") != interval_id:
        raise MemoryFileError(f"{where}: the record read back is interval {meta.get('id')}'s, "
                              f"not {interval_id}'s (the file changed since it was indexed)")
    return keys, values


__all__ = ["INTERVAL", "MEMORY", "RESET", "LogContents", "LoggedInterval", "fold",
           "interval_body", "interval_tensors", "memory_body", "reset_body"]
