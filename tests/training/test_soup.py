"""training.soup: interpolated deltas, checked against explicit float64 arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamvxl.errors import CheckpointError
from streamvxl.model.default import (
    CAVEAT_KEY,
    LORA_A,
    LORA_B,
    apply_delta,
    read_delta,
    tensors_digest,
    write_delta,
)
from training.soup import interpolate_low_rank, main, soup

LOW = "layer.q.weight"  # (O, I) = (12, 10), rank 3
FULL = ("layer.norm.weight", "vision.patch.weight")
META = {"format": "streamvxl-delta", "format_version": 1, "base": {"name": "b0"},
        "model_type": "llava_qwen", "name": "streamvxl-tiny", "vision": {}, "visual": {},
        "vst": {}, "low_rank": [LOW], "training": {"steps": 1}, CAVEAT_KEY: "preview"}


def _delta(seed: int, *, scale: float = 1.0, start: dict | None = None) -> dict[str, torch.Tensor]:
    """A delta's tensors; with ``start``, a small step away from it (a continued run)."""
    g = torch.Generator().manual_seed(seed)
    if start is not None:
        return {k: v + (0.05 * torch.randn(v.shape, generator=g)).to(v.dtype)
                for k, v in start.items()}
    return {LOW + LORA_A: scale * torch.randn(3, 10, generator=g),  # (r, I)
            LOW + LORA_B: scale * torch.randn(12, 3, generator=g),  # (O, r)
            FULL[0]: torch.randn(12, generator=g),
            FULL[1]: torch.randn(4, 3, generator=g).half()}  # the tower ships in float16


def _product(t: dict[str, torch.Tensor]) -> torch.Tensor:
    return t[LOW + LORA_B].double() @ t[LOW + LORA_A].double()  # (O, I)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    ta = _delta(0)
    tb = _delta(1, start=ta)
    pa = write_delta(tmp_path / "a.safetensors", ta, META)
    pb = write_delta(tmp_path / "b.safetensors", tb,  # told apart from A in every field
                     {**META, "training": {"steps": 2}, CAVEAT_KEY: "b's own caveat"})
    return pa, pb, ta, tb


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_the_ends_give_the_inputs_back(pair, tmp_path: Path, alpha: float) -> None:
    pa, pb, ta, tb = pair
    report = soup(pa, pb, alpha, tmp_path / "s.safetensors", caveat="")
    _, ts = read_delta(report.path)
    assert report.tensors_sha256 == tensors_digest(ts)  # the digest of what was written
    want = tb if alpha else ta
    for name in FULL:
        assert ts[name].dtype == want[name].dtype and torch.equal(ts[name], want[name])
    # a rank-3 product is re-factored exactly: only the split between the factors changes
    torch.testing.assert_close(_product(ts), _product(want), rtol=1e-5, atol=1e-5)
    assert report.low_rank_error_max < 1e-6


def test_full_tensors_interpolate_and_products_are_the_best_rank_r_fit(pair, tmp_path) -> None:
    pa, pb, ta, tb = pair
    alpha = 0.3
    report = soup(pa, pb, alpha, tmp_path / "s.safetensors", caveat="")
    _, ts = read_delta(report.path)
    want = 0.7 * ta[FULL[0]].double() + 0.3 * tb[FULL[0]].double()
    torch.testing.assert_close(ts[FULL[0]].double(), want, rtol=0, atol=1e-6)
    assert ts[FULL[1]].dtype == torch.float16
    torch.testing.assert_close(ts[FULL[1]].double(),
                               0.7 * ta[FULL[1]].double() + 0.3 * tb[FULL[1]].double(),
                               rtol=0, atol=1e-3)
    # Eckart-Young: the error of the best rank-3 fit is the norm of the tail singular values
    exact = 0.7 * _product(ta) + 0.3 * _product(tb)
    tail = torch.linalg.svdvals(exact)[3:]
    got = (_product(ts) - exact).norm() / exact.norm()
    torch.testing.assert_close(got, tail.norm() / exact.norm(), rtol=1e-4, atol=1e-7)
    assert report.low_rank_error_max == pytest.approx(float(got), rel=1e-4, abs=1e-7)
    assert ts[LOW + LORA_A].shape == (3, 10) and ts[LOW + LORA_B].shape == (12, 3)
    # no worse than averaging the factors themselves (first-order right for close runs)
    naive = ((ta[LOW + LORA_B] + tb[LOW + LORA_B]).double() * 0.5) @ \
        ((ta[LOW + LORA_A] + tb[LOW + LORA_A]).double() * 0.5)
    exact_half = 0.5 * (_product(ta) + _product(tb))
    half = read_delta(soup(pa, pb, 0.5, tmp_path / "h.safetensors", caveat="").path)[1]
    assert (_product(half) - exact_half).norm() <= (naive - exact_half).norm() + 1e-9


def test_the_soup_lays_over_a_base_as_the_interpolated_models(pair, tmp_path: Path) -> None:
    pa, pb, ta, tb = pair
    g = torch.Generator().manual_seed(7)
    base = {LOW: torch.randn(12, 10, generator=g), FULL[0]: torch.zeros(12),
            FULL[1]: torch.zeros(4, 3).half()}

    def laid(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state = dict(base)
        apply_delta(state, tensors, [LOW], base.keys(), "test")
        return state

    ts = read_delta(soup(pa, pb, 0.5, tmp_path / "s.safetensors", caveat="").path)[1]
    sa, sb, ss = laid(ta), laid(tb), laid(ts)
    # close runs: the rank-3 fit of their mean update is near exact
    torch.testing.assert_close(ss[LOW], 0.5 * (sa[LOW] + sb[LOW]), rtol=0, atol=2e-2)
    # in float64 by hand: base + B @ A of the soup's own factors
    by_hand = base[LOW].double() + _product(ts)
    torch.testing.assert_close(ss[LOW].double(), by_hand, rtol=0, atol=1e-5)
    # full tensors replace the base's: the laid model holds the mean of the two laid models
    for name in FULL:
        assert ss[name].dtype == base[name].dtype
        torch.testing.assert_close(ss[name].double(), 0.5 * (sa[name].double() + sb[name].double()),
                                   rtol=0, atol=1e-3)


def test_metadata_records_both_inputs(pair, tmp_path: Path) -> None:
    pa, pb, _, _ = pair
    out = tmp_path / "s.safetensors"
    assert main([str(pa), str(pb), "--alpha", "0.25", "--out", str(out),
                 "--training", '{"command": "run 6"}', "--caveat", "a soup"]) == 0
    meta, _ = read_delta(out)
    assert meta[CAVEAT_KEY] == "a soup" and meta["base"] == META["base"]
    rec = meta["training"]
    assert rec["command"] == "run 6"
    assert rec["soup"]["alpha"] == 0.25 and rec["soup"]["a_training"] == {"steps": 1}
    assert rec["soup"]["b_training"] == {"steps": 2}
    assert rec["soup"]["a"] == str(pa) and rec["soup"]["b"] == str(pb)
    assert rec["soup"]["a_tensors_sha256"] == tensors_digest(read_delta(pa)[1])
    assert rec["soup"]["b_tensors_sha256"] == tensors_digest(read_delta(pb)[1])
    assert rec["soup"]["a_tensors_sha256"] != rec["soup"]["b_tensors_sha256"]
    assert 0.0 <= rec["soup"]["low_rank_error_median"] <= rec["soup"]["low_rank_error_max"] < 0.05
    meta = read_delta(soup(pa, pb, 0.5, tmp_path / "t.safetensors", caveat="").path)[0]
    assert CAVEAT_KEY not in meta  # B's caveat describes B, not the soup
    with pytest.raises(SystemExit):  # the CLI asks for the soup's own caveat
        main([str(pa), str(pb), "--out", str(tmp_path / "u.safetensors")])


def test_refusals(pair, tmp_path: Path) -> None:
    pa, pb, ta, tb = pair
    out = tmp_path / "s.safetensors"
    with pytest.raises(ValueError, match="alpha"):
        soup(pa, pb, 1.5, out, caveat="")
    other = write_delta(tmp_path / "o.safetensors", tb, {**META, "base": {"name": "b1"}})
    with pytest.raises(CheckpointError, match="'base'"):
        soup(pa, other, 0.5, out, caveat="")
    fewer = write_delta(tmp_path / "f.safetensors", {k: v for k, v in tb.items() if k != FULL[0]},
                        META)
    with pytest.raises(CheckpointError, match="different tensors"):
        soup(pa, fewer, 0.5, out, caveat="")
    reshaped = write_delta(tmp_path / "r.safetensors", {**tb, FULL[0]: torch.zeros(6)}, META)
    with pytest.raises(CheckpointError, match="shape"):
        soup(pa, reshaped, 0.5, out, caveat="")
    broken = write_delta(tmp_path / "n.safetensors", {**tb, FULL[0]: torch.full((12,), torch.inf)},
                         META)
    with pytest.raises(CheckpointError, match="non-finite"):
        soup(pa, broken, 0.0, out, caveat="")
    halved = write_delta(tmp_path / "d.safetensors", {**tb, FULL[0]: tb[FULL[0]].half()}, META)
    with pytest.raises(CheckpointError, match="float16"):
        soup(pa, halved, 0.5, out, caveat="")
    far = write_delta(tmp_path / "x.safetensors", _delta(9), META)  # an unrelated run
    with pytest.raises(CheckpointError, match="too far apart"):
        soup(pa, far, 0.5, out, caveat="")
    assert not out.exists()


def test_interpolate_low_rank_keeps_the_larger_rank() -> None:
    g = torch.Generator().manual_seed(3)
    a2, b2 = torch.randn(2, 6, generator=g), torch.randn(5, 2, generator=g)
    a4, b4 = torch.randn(4, 6, generator=g), torch.randn(5, 4, generator=g)
    a, b, err = interpolate_low_rank((a2, b2), (a4, b4), 0.0)
    assert a.shape == (4, 6) and b.shape == (5, 4) and err < 1e-6
    torch.testing.assert_close(b @ a, b2 @ a2, rtol=1e-5, atol=1e-5)


# one tensor of every part, named as the default model's delta names them
PART_NAMES = {"llm": "model.layers.0.self_attn.q_proj",
              "vst": "model.layers.0.self_attn.beacon_q_proj",
              "projector": "model.mm_projector.0.weight", "vision": "model.vision_tower.patch.weight"}


def _parts_delta(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for part in ("llm", "vst"):  # low-rank entries, (r, I) and (O, r)
        tensors[PART_NAMES[part] + LORA_A] = torch.randn(2, 6, generator=g)
        tensors[PART_NAMES[part] + LORA_B] = torch.randn(5, 2, generator=g)
    tensors[PART_NAMES["projector"]] = torch.randn(4, 4, generator=g)
    tensors[PART_NAMES["vision"]] = torch.randn(3, 3, generator=g).half()
    return tensors


@pytest.mark.parametrize("parts", [["projector"], ["llm"], ["vst", "vision"]])
def test_parts_take_only_those_parts_of_b(tmp_path: Path, parts: list[str]) -> None:
    meta = {**META, "low_rank": [PART_NAMES["llm"], PART_NAMES["vst"]]}
    ta, tb = _parts_delta(0), _parts_delta(1)
    pa = write_delta(tmp_path / "a.safetensors", ta, meta)
    pb = write_delta(tmp_path / "b.safetensors", tb, meta)
    out = tmp_path / "s.safetensors"
    assert main([str(pa), str(pb), "--alpha", "1", "--parts", ",".join(parts), "--out", str(out),
                 "--caveat", ""]) == 0
    smeta, ts = read_delta(out)
    assert smeta["training"]["soup"]["parts"] == sorted(parts)
    for part, name in PART_NAMES.items():
        want = tb if part in parts else ta
        if name + LORA_A in ts:  # low rank: B's product re-factored, or A's factors as they were
            torch.testing.assert_close(ts[name + LORA_B].double() @ ts[name + LORA_A].double(),
                                       want[name + LORA_B].double() @ want[name + LORA_A].double(),
                                       rtol=1e-5, atol=1e-5)
            if part not in parts:
                assert torch.equal(ts[name + LORA_A], ta[name + LORA_A])
        else:
            assert ts[name].dtype == want[name].dtype and torch.equal(ts[name], want[name])
    with pytest.raises(ValueError, match="subset"):
        soup(pa, pb, 1.0, tmp_path / "t.safetensors", caveat="", parts=["tower"])
    with pytest.raises(SystemExit):
        main([str(pa), str(pb), "--parts", "tower", "--out", str(tmp_path / "u.safetensors"),
              "--caveat", ""])
    assert not (tmp_path / "t.safetensors").exists()
