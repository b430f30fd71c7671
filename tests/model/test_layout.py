"""Window layouts: VST placement rules, against a direct enumeration."""

from __future__ import annotations

import pytest
import torch

from streamvxl.model.layout import split_windows, window_layout


def enumerate_layout(n: int, r: int, remainder: str) -> list[str]:
    """'v' raw / 'B' VST, built token by token: a VST after every r raw tokens."""
    out, in_group = [], 0
    for _ in range(n):
        out.append("v")
        in_group += 1
        if in_group == r:
            out.append("B")
            in_group = 0
    if in_group and remainder == "summarize":
        out.append("B")
    return out


@pytest.mark.parametrize("remainder", ["summarize", "drop"])
@pytest.mark.parametrize("r", [1, 2, 3, 4, 7, 8, 16])
@pytest.mark.parametrize("n", [1, 2, 5, 16, 20, 40, 41])
def test_layout_matches_enumeration(n: int, r: int, remainder: str) -> None:
    lay = window_layout(n, r, remainder)
    want = enumerate_layout(n, r, remainder)
    got = ["v"] * lay.length
    for s in lay.vst_slots.tolist():
        got[s] = "B"
    assert got == want
    assert sorted(lay.raw_slots.tolist() + lay.vst_slots.tolist()) == list(range(lay.length))
    assert torch.equal(lay.is_vst().nonzero().squeeze(1), lay.vst_slots)


def test_reference_rule_matches_readme_formula() -> None:
    """Conformance README: with remainder 0, slot j is a VST iff j % (r+1) == r."""
    for r in (2, 4, 8):
        lay = window_layout(40, r, "drop")
        assert lay.vst_slots.tolist() == [j for j in range(lay.length) if j % (r + 1) == r]


def test_no_compression_keeps_all() -> None:
    lay = window_layout(9, None)
    assert lay.num_vst == 0 and lay.raw_slots.tolist() == list(range(9))


def test_split_windows_cover_once() -> None:
    assert split_windows(100, 40) == [(0, 40), (40, 80), (80, 100)]
    assert split_windows(40, 40) == [(0, 40)]
