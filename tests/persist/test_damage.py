"""A damaged memory log never crashes or hangs its reader: cut at every record boundary and
inside every record, a thousand flipped bytes, a foreign file, an empty one, a forged record --
each is a typed error or a recovered memory whose every interval is one the log really held."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from streamvxl import VideoMemory
from streamvxl.errors import MemoryFileError
from streamvxl.persist.codec import pack
from streamvxl.persist.framing import HEADER_SIZE, frame, scan
from streamvxl.persist.log import log_file, read_log
from streamvxl.persist.records import fold
from streamvxl.runtime.runtime import Runtime
from tests.runtime.helpers import config, scenes


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint: Path) -> Runtime:
    return Runtime.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def original(runtime: Runtime, tmp_path_factory) -> bytes:
    """A real memory log: 6 intervals, 2 evicted by the budget."""
    directory = tmp_path_factory.mktemp("log")
    mem = VideoMemory.on(runtime, config(log_dir=directory, token_budget=60), background=False)
    mem.extend(scenes(6, 9), timestamps=[float(i) for i in range(54)])
    mem.flush()
    mem.close()
    return log_file(directory).read_bytes()


def check_recovered(data: bytes, path: Path, originals: dict) -> str:
    """Read ``data`` as a log: a typed error, or intervals that are all the original's."""
    path.write_bytes(data)
    try:
        contents, _ = read_log(path)
    except MemoryFileError:
        return "refused"
    for interval in contents.intervals:
        ref = originals[interval.record.id]
        assert interval.record == ref.record
        assert torch.equal(interval.keys, ref.keys) and torch.equal(interval.values, ref.values)
    return "recovered"


def intervals_by_id(data: bytes) -> dict:
    bodies = [b for _, b in scan(data).records]
    out = {}
    for k in range(2, len(bodies) + 1):  # every interval, even those evicted later
        for i in fold(bodies[:k], "original").intervals:
            out.setdefault(i.record.id, i)
    return out


def test_a_cut_anywhere_recovers_the_records_before_it(original, tmp_path) -> None:
    found = scan(original)
    bodies = [b for _, b in found.records]
    ends = [off + 12 + len(b) for off, b in found.records]
    cuts = {0, 5, HEADER_SIZE}
    for (start, _), end in zip(found.records, ends, strict=True):
        cuts |= {start + 1, start + 11, (start + end) // 2, end - 1, end}
    originals = intervals_by_id(original)
    for cut in sorted(cuts):
        path = tmp_path / "cut.svxl"
        outcome = check_recovered(original[:cut], path, originals)
        complete = sum(1 for e in ends if e <= cut)
        if complete == 0:
            assert outcome == "refused", cut  # no memory record: nothing to check a model by
            continue
        contents, valid_end = read_log(path)
        expected = fold(bodies[:complete], "original")
        assert [i.record.id for i in contents.intervals] == [i.record.id for i in expected.intervals], cut
        assert valid_end == ends[complete - 1]


def test_a_thousand_flipped_bytes_are_refused_or_skipped(original, tmp_path) -> None:
    rng = random.Random(7)
    originals = intervals_by_id(original)
    first_offset, first_body = scan(original).records[0]
    memory_record_end = first_offset + 12 + len(first_body)
    outcomes = {"refused": 0, "recovered": 0}
    for _ in range(1000):
        data = bytearray(original)
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
        outcome = check_recovered(bytes(data), tmp_path / "flipped.svxl", originals)
        # refused exactly when the flip hits the header or the memory record (the model and
        # settings every interval is checked against); anywhere else one record is skipped
        assert outcome == ("refused" if at < memory_record_end else "recovered"), at
        outcomes[outcome] += 1
    assert outcomes["refused"] > 0 and outcomes["recovered"] > 0, outcomes


def test_a_damaged_middle_record_is_skipped_and_counted(original, runtime, tmp_path) -> None:
    found = scan(original)
    second_interval = found.records[2][0]
    data = bytearray(original)
    data[second_interval + 40] ^= 0xFF
    (tmp_path / "log").mkdir()
    log_file(tmp_path / "log").write_bytes(bytes(data))
    contents, _ = read_log(log_file(tmp_path / "log"))
    assert contents.damaged == 1 and 1 not in [i.record.id for i in contents.intervals]
    mem = VideoMemory.open(tmp_path / "log", runtime=runtime, background=False)
    assert mem.stats().intervals_in_memory == len(contents.intervals)
    mem.close()


def test_a_forged_record_with_a_good_checksum_is_skipped(original, tmp_path) -> None:
    forged = frame(pack({"kind": "interval", "id": "seven"}, {}))
    path = tmp_path / "forged.svxl"
    path.write_bytes(original + forged + frame(pack({"kind": "mystery"}, {})))
    contents, _ = read_log(path)
    assert contents.damaged == 2
    assert len(contents.intervals) == len(read_log_bytes(original, tmp_path).intervals)


def read_log_bytes(data: bytes, tmp_path: Path):
    path = tmp_path / "plain.svxl"
    path.write_bytes(data)
    return read_log(path)[0]


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a streamvxl memory log"),
    (b"time,value\n0,1\n1,2\n", "not a streamvxl memory log"),
    (b"STREAMVXL-LOG\x00\x01\x00", "holds no records"),
])
def test_what_is_not_a_memory_is_a_typed_error(runtime, tmp_path, content, message) -> None:
    path = tmp_path / "file.svxl"
    path.write_bytes(content)
    with pytest.raises(MemoryFileError, match=message):
        VideoMemory.open(path, runtime=runtime, background=False)
