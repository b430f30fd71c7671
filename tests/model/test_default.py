"""The streamvxl-tiny delta format, without the base wheel.

- A missing delta is a clear error (the default one: "missing from this installation"), never random weights.
- A file that is not a delta, or is from a newer format, is refused before the base is touched.
- The metadata describes the model exactly: configs survive the JSON round trip.
- Applying a delta: full tensors replace, LoRA factors add B @ A, foreign names are refused.

The round trip over the real base is in ``tests/training/test_default_model.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from streamvxl.errors import CheckpointError
from streamvxl.model import default, tiny_config
from streamvxl.model.default import (
    FORMAT,
    FORMAT_VERSION,
    LORA_A,
    LORA_B,
    apply_delta,
    config_from_metadata,
    delta_metadata,
    load_default_model,
    read_delta,
    write_delta,
)
from streamvxl.model.videoxl import VideoXL

# Shapes: O output features, I input features, R LoRA rank.


def test_default_delta_not_shipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(default, "DEFAULT_DELTA", tmp_path / "streamvxl-tiny.safetensors")
    with pytest.raises(CheckpointError, match="missing from this installation"):
        load_default_model("cpu")


def test_missing_delta_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no streamvxl-tiny delta at .*nope"):
        load_default_model("cpu", delta_path=tmp_path / "nope.safetensors")


def test_plain_safetensors_is_not_a_delta(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a streamvxl-tiny delta"):
        load_default_model("cpu", delta_path=path)


def test_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.safetensors"
    write_delta(path, {"x": torch.zeros(2)},
                {"format": FORMAT, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(CheckpointError, match="upgrade streamvxl"):
        load_default_model("cpu", delta_path=path)


def test_metadata_round_trip(tmp_path: Path) -> None:
    cfg, vision = tiny_config()
    model = VideoXL(cfg, vision)
    meta = delta_metadata(model, "base-123", low_rank=["b", "a"])
    path = write_delta(tmp_path / "d.safetensors", {"x": torch.ones(3)}, meta)
    read_meta, tensors = read_delta(path)
    assert read_meta == json.loads(json.dumps(meta)) and read_meta["low_rank"] == ["a", "b"]
    assert torch.equal(tensors["x"], torch.ones(3))
    cfg2, vision2 = config_from_metadata(read_meta, cfg.llm)
    assert cfg2.visual == cfg.visual and cfg2.vst == cfg.vst and cfg2.llm == cfg.llm
    for k in default.VISION_FIELDS:
        assert getattr(vision2, k) == getattr(vision, k), k
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_delta_file_mode_follows_the_umask(tmp_path: Path, umask: int) -> None:
    # safetensors alone writes 0600 whatever the umask: an exported delta could not be shared
    before = os.umask(umask)
    try:
        path = write_delta(tmp_path / "d.safetensors", {"x": torch.ones(1)},
                           {"format": FORMAT, "format_version": FORMAT_VERSION})
    finally:
        os.umask(before)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.safetensors"]  # no probe left


def test_metadata_without_vision_is_refused() -> None:
    cfg, _ = tiny_config()
    with pytest.raises(CheckpointError, match="does not describe a model"):
        config_from_metadata({"format": FORMAT, "vst": {}}, cfg.llm)


def test_apply_delta() -> None:
    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(6, 5, generator=g).half(), "n": torch.ones(5)}
    a, b = torch.randn(2, 5, generator=g), torch.randn(6, 2, generator=g)  # (R, I), (O, R)
    state = dict(base)
    apply_delta(state, {"n": torch.zeros(5), "w" + LORA_A: a, "w" + LORA_B: b}, ["w"],
                expected={"w", "n"}, where="d")
    assert torch.equal(state["n"], torch.zeros(5))
    assert torch.equal(state["w"], base["w"].float() + b @ a)
    with pytest.raises(CheckpointError, match="not a parameter"):
        apply_delta(dict(base), {"other": torch.zeros(1)}, [], expected={"w", "n"}, where="d")
    with pytest.raises(CheckpointError, match="have shapes"):
        apply_delta(dict(base), {"w" + LORA_A: a.T, "w" + LORA_B: b}, ["w"],
                    expected={"w", "n"}, where="d")


def test_tensors_digest_names_the_tensors_not_the_file(tmp_path: Path) -> None:
    from streamvxl.model.default import tensors_digest

    g = torch.Generator().manual_seed(0)
    t = {"b.weight": torch.randn(3, 4, generator=g), "a.scale": torch.tensor(2.0),
         "c.half": torch.randn(5, generator=g).half()}
    digest = tensors_digest(t)
    assert len(digest) == 64 and digest == tensors_digest(dict(reversed(t.items())))
    meta = {"format": "streamvxl-delta", "format_version": 1}
    one = write_delta(tmp_path / "one.safetensors", t, {**meta, "caveat": "x"})
    two = write_delta(tmp_path / "two.safetensors", t, {**meta, "training": {"steps": 9}})
    assert one.read_bytes() != two.read_bytes()  # other metadata, other file
    assert tensors_digest(read_delta(one)[1]) == tensors_digest(read_delta(two)[1]) == digest
    flipped = {**t, "b.weight": t["b.weight"].clone()}
    flipped["b.weight"][2, 3] = torch.nextafter(flipped["b.weight"][2, 3], torch.tensor(9.0))
    assert tensors_digest(flipped) != digest  # one ulp of one element
    same_bytes = {**t, "b.weight": t["b.weight"].view(torch.int32)}
    assert tensors_digest(same_bytes) != digest  # the dtype counts, not only the bytes
    assert tensors_digest({**t, "b.weight": t["b.weight"].reshape(4, 3)}) != digest  # and shape
    renamed = {("d.weight" if k == "b.weight" else k): v for k, v in t.items()}
    assert tensors_digest(renamed) != digest
    assert tensors_digest({**t, "b.weight": t["b.weight"].t().contiguous().t()}) == digest
