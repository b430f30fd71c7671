"""The log's framing and record codec: round trips, a cut at every boundary, 1,000 byte flips,
foreign files, newer formats and corrupt bodies, all refused with ``MemoryFileError`` or recovered.

The reference log is 30 records of varied sizes written to a real file; each test damages a copy.
"""

from __future__ import annotations

import doctest
import io
import mmap
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import torch

import streamvxl.persist.codec as codec_module
import streamvxl.persist.framing as framing_module
from streamvxl.errors import MemoryFileError
from streamvxl.persist.codec import pack, unpack, unpack_meta
from streamvxl.persist.framing import (
    FILE_MAGIC,
    FORMAT_VERSION,
    HEADER_SIZE,
    RECORD_HEADER_SIZE,
    RECORD_SYNC,
    Damage,
    Scan,
    file_header,
    frame,
    read_version,
    scan,
)

N_RECORDS = 30


@dataclass(frozen=True)
class Log:
    """The reference log: its file, its bytes, and what each record holds."""

    path: Path
    data: bytes
    items: list[tuple[dict[str, Any], dict[str, torch.Tensor]]]
    records: list[tuple[int, bytes]]  # (offset, body), as scan must return them

    def span(self, k: int) -> tuple[int, int]:
        """Record k's [start, end) in the file."""
        offset, body = self.records[k]
        return offset, offset + RECORD_HEADER_SIZE + len(body)


def make_items(seed: int = 0) -> list[tuple[dict[str, Any], dict[str, torch.Tensor]]]:
    """Record contents of varied sizes: meta-only records, and up to ~4 KiB of tensors in
    float32, bfloat16 and int64 (one non-contiguous)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(N_RECORDS):
        n = [0, 1, 5, 37, 300, 1000][i % 6]
        meta: dict[str, Any] = {
            "interval": i,
            "frames": [i * 8, i * 8 + 7],
            "label": f"interval-{i}" * (i % 4),
            "ratio": 0.5 + i,
            "digest": bytes(range(i % 7)),
            "nested": {"ok": i % 2 == 0, "none": None},
        }
        tensors: dict[str, torch.Tensor] = {}
        if n:
            tensors["keys"] = torch.randn(n, generator=g)
            tensors["values"] = torch.randn(n, generator=g).to(torch.bfloat16)
            tensors["positions"] = torch.randint(-(2**40), 2**40, (n,), generator=g)
        if i % 5 == 3:
            tensors["grid"] = torch.randn(4, 6, generator=g).t()  # (6, 4), not contiguous
        items.append((meta, tensors))
    return items


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    items = make_items()
    bodies = [pack(meta, tensors) for meta, tensors in items]
    path = tmp_path_factory.mktemp("log") / "memory.log"
    records = []
    with path.open("wb") as f:
        f.write(file_header())
        for body in bodies:
            records.append((f.tell(), body))
            f.write(frame(body))
    return Log(path=path, data=path.read_bytes(), items=items, records=records)


def read_log(path: Path) -> Scan:
    """What a reader does: check the header, then scan every record."""
    data = path.read_bytes()
    read_version(data[:HEADER_SIZE], str(path))
    found = scan(data)
    assert_tiles(found, len(data))
    return found


def assert_tiles(found: Scan, n: int, start: int = HEADER_SIZE) -> None:
    """Records, middle damage and the torn tail cover [start, n) in order, without gaps; every
    middle damage is followed by a record; the torn tail starts at valid_end and ends at n."""
    pieces = [(off, RECORD_HEADER_SIZE + len(body), "record") for off, body in found.records]
    pieces += [(d.offset, d.length, "skipped") for d in found.skipped]
    if found.torn_tail is not None:
        pieces.append((found.torn_tail.offset, found.torn_tail.length, "torn"))
    pieces.sort()
    pos = start
    for i, (offset, length, kind) in enumerate(pieces):
        assert offset == pos and length > 0
        if kind == "skipped":
            assert pieces[i + 1][2] == "record"
        if kind == "torn":
            assert i == len(pieces) - 1
        pos += length
    assert pos == n
    last_end = start
    if found.records:
        last_end = found.records[-1][0] + RECORD_HEADER_SIZE + len(found.records[-1][1])
    assert found.valid_end == last_end
    if found.torn_tail is not None:
        assert found.torn_tail.offset == found.valid_end


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- 1. round trip ---------------------------------------------------------------------------


def test_round_trip_gives_back_every_record(log: Log):
    found = read_log(log.path)
    assert found.records == log.records
    assert found.skipped == [] and found.torn_tail is None
    assert found.valid_end == len(log.data)
    dtypes = set()
    for (_, body), (meta, tensors) in zip(found.records, log.items, strict=True):
        got_meta, got_tensors = unpack(body)
        assert got_meta == meta == unpack_meta(body)
        assert got_tensors.keys() == tensors.keys()
        for name, t in tensors.items():
            got = got_tensors[name]
            assert got.dtype == t.dtype and got.device.type == "cpu" and got.is_contiguous()
            assert torch.equal(got, t)
            dtypes.add(got.dtype)
    assert {torch.float32, torch.bfloat16, torch.int64} <= dtypes


def test_pack_leaves_the_callers_tensors_alone_and_unpack_does_not_alias_the_body():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()  # (4, 3), not contiguous
    body = pack({"a": 1}, {"x": x})
    assert not x.is_contiguous()
    _, tensors = unpack(body)
    tensors["x"].add_(1)  # writable, and a fresh copy: the body is unchanged
    assert torch.equal(unpack(body)[1]["x"], x)


def test_empty_tensors_write_no_tensor_section():
    meta_bytes = msgpack.packb({"k": "v"}, use_bin_type=True)
    assert pack({"k": "v"}, {}) == struct.pack("<I", len(meta_bytes)) + meta_bytes
    assert unpack(pack({}, {})) == ({}, {})


def test_scan_of_a_memoryview_slice_or_an_mmap_equals_scan_of_bytes(log: Log):
    shifted = memoryview(b"xx" + log.data)[2:]  # not the whole buffer: the windowed sync search
    damaged = bytearray(log.data)
    damaged[log.records[3][0] + 20] ^= 0xFF
    for data in (log.data, bytes(damaged)):
        want = scan(data)
        assert scan(memoryview(b"xx" + data)[2:]) == want
        assert scan(bytearray(data)) == want
    assert scan(shifted).records == log.records
    with log.path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert scan(mm) == scan(log.data)  # and no buffer is left exported: the close works


# --- 2. truncation: a write cut by a killed process ------------------------------------------


def cut_points(log: Log) -> list[int]:
    """Every record boundary, a few offsets inside every record, and every offset in the header."""
    cuts = set(range(HEADER_SIZE + 1))
    for k in range(N_RECORDS):
        start, end = log.span(k)
        cuts.add(end)
        for inside in (1, 3, 4, 7, 8, 11, 12, 13, (end - start) // 2, end - start - 1):
            if inside < end - start:
                cuts.add(start + inside)
    return sorted(cuts)


def test_truncation_anywhere_keeps_exactly_the_complete_records(log: Log, tmp_path: Path):
    boundaries = {HEADER_SIZE} | {log.span(k)[1] for k in range(N_RECORDS)}
    cuts = cut_points(log)
    assert len(cuts) > 10 * N_RECORDS
    for cut in cuts:
        path = write(tmp_path, "cut.log", log.data[:cut])
        if cut < HEADER_SIZE:
            expected = "is empty" if cut == 0 else "torn header"
            with pytest.raises(MemoryFileError, match=expected):
                read_log(path)
            continue
        found = read_log(path)
        complete = [r for k, r in enumerate(log.records) if log.span(k)[1] <= cut]
        assert found.records == complete, cut
        assert found.skipped == []
        assert found.valid_end == (log.span(len(complete) - 1)[1] if complete else HEADER_SIZE)
        if cut in boundaries:
            assert found.torn_tail is None
        else:
            assert found.torn_tail is not None
            assert found.torn_tail.offset == found.valid_end
            assert found.torn_tail.length == cut - found.valid_end


def test_appending_after_a_torn_tail_recovers_the_new_records(log: Log, tmp_path: Path):
    """A writer that resumes at valid_end (dropping the torn tail) loses nothing it acknowledged."""
    start, end = log.span(10)
    torn = log.data[: start + (end - start) // 2]
    resumed = torn[: scan(torn).valid_end] + frame(b"after the crash")
    found = read_log(write(tmp_path, "resumed.log", resumed))
    assert found.records == log.records[:10] + [(start, b"after the crash")]
    assert found.torn_tail is None


# --- 3. single-byte flips: a bad block, a stray write ----------------------------------------


def test_1000_random_byte_flips_lose_only_the_record_they_hit(log: Log):
    rng = random.Random(20261203)
    starts = [log.span(k)[0] for k in range(N_RECORDS)]
    for _ in range(1000):
        at = rng.randrange(len(log.data))
        data = bytearray(log.data)  # a fresh copy each time
        data[at] ^= rng.randrange(1, 256)
        if at < HEADER_SIZE:
            with pytest.raises(MemoryFileError):
                read_version(bytes(data[:HEADER_SIZE]), "flipped.log")
            continue
        found = scan(data)
        assert_tiles(found, len(data))
        k = max(i for i, s in enumerate(starts) if s <= at)  # the record the flip landed in
        # Every record returned is an original, byte for byte, at its place; only record k is gone.
        assert found.records == log.records[:k] + log.records[k + 1 :], at
        start, end = log.span(k)
        damage = found.torn_tail if k == N_RECORDS - 1 else found.skipped[0]
        assert (damage.offset, damage.length) == (start, end - start)
        assert len(found.skipped) == (0 if k == N_RECORDS - 1 else 1)


def test_chance_sync_sequences_inside_bodies_do_not_fake_records(tmp_path: Path):
    """Bodies full of RECORD_SYNC: after damage the scan tries each one, and the CRC refuses."""
    bodies = [RECORD_SYNC * 50 + struct.pack("<II", 4, 0) + bytes([i]) * 40 for i in range(5)]
    data = bytearray(file_header() + b"".join(frame(b) for b in bodies))
    offsets = [HEADER_SIZE + i * (RECORD_HEADER_SIZE + len(bodies[0])) for i in range(5)]
    data[offsets[1]] ^= 0x01  # record 1's sync
    data[offsets[3] + 5] ^= 0x80  # record 3's length
    found = read_log(write(tmp_path, "syncs.log", bytes(data)))
    assert found.records == [(offsets[i], bodies[i]) for i in (0, 2, 4)]
    assert [(d.offset, d.reason) for d in found.skipped] == [
        (offsets[1], "bad sync"),
        (offsets[3], f"body of {len(bodies[0]) + 0x8000} bytes runs past the end of the data"),
    ]


def test_junk_between_records_is_skipped_and_reported(log: Log):
    _, end = log.span(4)
    data = log.data[:end] + b"\x00" * 100 + RECORD_SYNC + b"\xff" * 9 + log.data[end:]
    found = scan(data)
    assert_tiles(found, len(data))
    assert found.records == log.records[:5] + [(o + 113, b) for o, b in log.records[5:]]
    assert found.skipped == [Damage(end, 113, "bad sync")]


def test_a_length_past_the_maximum_is_damage_and_frame_refuses_it(monkeypatch):
    data = file_header() + frame(b"123456789") + frame(b"ok")
    monkeypatch.setattr(framing_module, "MAX_BODY_LEN", 8)
    with pytest.raises(ValueError, match="at most 8 bytes"):
        frame(b"123456789")
    found = scan(data)
    assert found.records == [(HEADER_SIZE + RECORD_HEADER_SIZE + 9, b"ok")]
    assert "exceeds the maximum 8" in found.skipped[0].reason


# --- 4. foreign, empty and header-only files -------------------------------------------------


def test_foreign_files_are_refused_by_the_header(tmp_path: Path):
    rng = random.Random(7)
    png = b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(5000))
    text = b"interval,frames\n0,8\n1,16\n" * 20
    for name, data in (("image.png", png), ("notes.csv", text)):
        path = write(tmp_path, name, data)
        with pytest.raises(MemoryFileError, match="is not a streamvxl memory log") as info:
            read_log(path)
        assert name in str(info.value) and repr(data[:HEADER_SIZE]) in str(info.value)
        # Even without the header check, scanning foreign bytes finds nothing and never fails.
        found = scan(data, start=0)
        assert found.records == [] and found.torn_tail == Damage(0, len(data), "bad sync")


def test_an_empty_file_is_refused(tmp_path: Path):
    with pytest.raises(MemoryFileError, match="empty.log is empty: not a streamvxl memory log"):
        read_log(write(tmp_path, "empty.log", b""))


def test_a_header_only_file_is_an_empty_log(tmp_path: Path):
    found = read_log(write(tmp_path, "new.log", file_header()))
    assert found == Scan(records=[], skipped=[], valid_end=HEADER_SIZE, torn_tail=None)


def test_scan_start_must_lie_within_the_data():
    with pytest.raises(ValueError, match="outside"):
        scan(b"", start=HEADER_SIZE)
    assert scan(b"", start=0) == Scan(records=[], skipped=[], valid_end=0, torn_tail=None)


# --- 5. format versions ----------------------------------------------------------------------


def test_a_newer_format_is_refused_naming_both_versions(tmp_path: Path):
    path = write(tmp_path, "future.log", file_header(FORMAT_VERSION + 1) + frame(b"x"))
    with pytest.raises(MemoryFileError) as info:
        read_log(path)
    message = str(info.value)
    assert f"log format {FORMAT_VERSION + 1}" in message
    assert f"reads format {FORMAT_VERSION}" in message and "upgrade streamvxl" in message


def test_format_zero_is_refused_as_a_corrupt_header():
    with pytest.raises(MemoryFileError, match="log format 0, which no streamvxl ever wrote"):
        read_version(file_header(0), "zero.log")


def test_file_header_layout_and_range():
    assert file_header() == FILE_MAGIC + b"\x01\x00" and len(file_header()) == HEADER_SIZE == 16
    assert read_version(file_header() + b"more bytes", "x") == FORMAT_VERSION
    with pytest.raises(ValueError, match="u16"):
        file_header(1 << 16)


# --- 6. corrupt record bodies ----------------------------------------------------------------


def _meta_section(obj: Any) -> bytes:
    packed = msgpack.packb(obj, use_bin_type=True)
    return struct.pack("<I", len(packed)) + packed


def _torch_pickle() -> bytes:
    buffer = io.BytesIO()
    torch.save({"x": torch.ones(2)}, buffer)
    return buffer.getvalue()


GOOD = pack({"interval": 1}, {"x": torch.ones(3)})
META_LEN = struct.unpack_from("<I", GOOD)[0]

CORRUPT_BODIES = {
    "empty": (b"", "too short"),
    "short length": (b"\x05\x00", "too short"),
    "meta past the end": (GOOD[: 4 + META_LEN - 1], "claims"),
    "truncated meta": (struct.pack("<I", META_LEN - 1) + GOOD[4:], "not valid msgpack"),
    "meta that is a list": (_meta_section([1, 2, 3]), "a msgpack list, not a map"),
    "meta that is a string": (_meta_section("meta"), "a msgpack str, not a map"),
    "int map keys": (_meta_section({1: "a"}), "not valid msgpack"),
    "bytes map keys": (_meta_section({b"k": 1}), "keys that are not str"),
    "extension type": (_meta_section({"a": msgpack.ExtType(5, b"x")}), "extension type 5"),
    "bad msgpack": (struct.pack("<I", 1) + b"\xc1", "not valid msgpack"),
    "extra bytes in meta": (
        struct.pack("<I", META_LEN + 1) + GOOD[4 : 4 + META_LEN] + b"\x00",
        "ExtraData",
    ),
    "garbage safetensors": (_meta_section({}) + b"garbage!", "not valid safetensors"),
    "truncated safetensors": (GOOD[:-1], "not valid safetensors"),
    "extra bytes after safetensors": (GOOD + b"\x00", "not valid safetensors"),
    "a torch pickle, never loaded": (_meta_section({}) + _torch_pickle(), "not valid safetensors"),
}


@pytest.mark.parametrize("name", list(CORRUPT_BODIES))
def test_corrupt_bodies_are_refused(name: str):
    body, expected = CORRUPT_BODIES[name]
    with pytest.raises(MemoryFileError, match=expected):
        unpack(body)
    if "safetensors" not in expected:  # the meta alone is as strict; tensors are not parsed
        with pytest.raises(MemoryFileError, match=expected):
            unpack_meta(body)


def test_pack_refuses_meta_it_could_not_read_back():
    with pytest.raises(TypeError, match="str keys"):
        pack({1: "a"}, {})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="would not read back"):
        pack({"nested": {1: "a"}}, {})
    with pytest.raises(TypeError, match="torch.Tensor"):
        pack({}, {"x": [1.0, 2.0]})  # type: ignore[dict-item]


def test_docstring_examples_run():
    for module in (framing_module, codec_module):
        assert doctest.testmod(module, raise_on_error=True).attempted > 0
