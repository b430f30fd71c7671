"""Moments (`streamvxl.memory.moments`): which end of an event a question asks about, and which
span shows it.

- `moment_scores` equals a slow loop over the rows in time order, for any mixture of the three
  moments, spans without looks included; with P(other) = 1 it is the plain match
  (`look_scores`).
- An object entering in one span and leaving in a later one: "appear" picks the first, "leave"
  the last, though the spans in between match as well; a stay never runs between spans that do
  not follow each other in the stream; it is the stay of the span the evidence points at, not
  of a look-alike that matches the words better; a scene cut that moves every cosine
  more than the entry does is not cited; on screen from the first row: it appeared in the
  first span.
- A probe survives its file; a file that is not one, a damaged one, a probe of another width or
  for other weights is refused (typed error) or not used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from streamvxl.errors import CheckpointError
from streamvxl.memory import moments
from streamvxl.memory.moments import MOMENTS, STAY_FLOOR, MomentProbe, moment_scores
from streamvxl.memory.recall import look_scores

# Shapes: S spans, k rows per span, E embedding width, F features.
E = 8


def slow_scores(looks: list[torch.Tensor | None], text: torch.Tensor,
                p: torch.Tensor, follows: list[bool] | None = None,
                around: int | None = None) -> torch.Tensor:
    """The definition, row by row: the stay is walked both ways from the best row of span
    ``around`` (or of all, where that span has none), never between two spans with a span
    boundary between them that does not follow."""
    rows = [(i, float(r @ text)) for i, span in enumerate(looks) if span is not None
            for r in span.float()]
    values = sorted(c for _, c in rows)
    median = values[(len(values) - 1) // 2]  # torch.median: the lower of the two middles
    best = max(c for _, c in rows)
    candidates = [j for j in range(len(rows)) if rows[j][0] == around and max(
        c for i, c in rows if i == around) >= median + STAY_FLOOR * (best - median)]
    peak = max(candidates or range(len(rows)), key=lambda j: (rows[j][1], -j))
    floor = median + STAY_FLOOR * (rows[peak][1] - median)

    def joined(a: int, b: int) -> bool:  # rows a < b: every span boundary between follows
        return follows is None or all(follows[k] for k in range(rows[a][0] + 1, rows[b][0] + 1))

    first = last = peak
    while first > 0 and rows[first - 1][1] >= floor and joined(first - 1, first):
        first -= 1
    while last + 1 < len(rows) and rows[last + 1][1] >= floor and joined(last, last + 1):
        last += 1
    best = [max((c for k, c in rows if k == i), default=None) for i in range(len(looks))]
    lowest_match = min(v for v in best if v is not None)
    return torch.tensor([(lowest_match if m is None else m) + float(p[1]) * (rows[first][0] == i)
                         + float(p[2]) * (rows[last][0] == i) for i, m in enumerate(best)])


def visits(on: list[list[bool]]) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """Looks of spans whose rows show the object (True) or something else, and the text
    that names the object."""
    thing, other = torch.zeros(E), torch.zeros(E)
    thing[0], other[1] = 1.0, 1.0
    noise = torch.Generator().manual_seed(0)
    looks: list[torch.Tensor | None] = [
        torch.stack([(thing if v else other) + 0.05 * torch.randn(E, generator=noise)
                     for v in span]) for span in on]
    return looks, thing


@pytest.mark.parametrize("seed", range(5))
def test_scores_equal_the_row_by_row_definition(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    looks: list[torch.Tensor | None] = [
        None if torch.rand(1, generator=g) < 0.2 else
        torch.randn(int(torch.randint(1, 5, (1,), generator=g)), E, generator=g)
        for _ in range(7)]
    looks[0] = torch.randn(3, E, generator=g)  # at least one span with looks
    text = torch.randn(E, generator=g)
    p = torch.softmax(torch.randn(3, generator=g), 0)
    assert torch.allclose(moment_scores(looks, text, p), slow_scores(looks, text, p), atol=1e-5)
    follows = (torch.rand(7, generator=g) < 0.6).tolist()
    assert torch.allclose(moment_scores(looks, text, p, follows),
                          slow_scores(looks, text, p, follows), atol=1e-5)
    for around in range(7):  # spans without looks (None) fall back to the best row of all
        assert torch.allclose(moment_scores(looks, text, p, follows, around),
                              slow_scores(looks, text, p, follows, around), atol=1e-5)
    other = torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(moment_scores(looks, text, other), look_scores(looks, text))
    assert torch.allclose(moment_scores(looks, text, other, follows), look_scores(looks, text))


def test_a_stay_does_not_run_into_an_interval_hours_away() -> None:
    """Retrieval reads intervals from anywhere in the stream side by side: a look-alike's
    interval an hour before the object's must not become the first frame of its stay (a
    4-hour haystack's "when did the pink star show up" was cited at a pink triangle's interval
    2,300 s earlier that way)."""
    text = torch.zeros(E)
    text[0] = 1.0
    cosines = [[0.1, 0.1], [0.1, 0.1], [0.8, 0.85], [0.9, 0.95], [0.9, 0.6], [0.1, 0.1],
               [0.1, 0.1]]  # span 2: the look-alike; 3-4: the object's stay
    looks: list[torch.Tensor | None] = [torch.stack([c * text for c in span]) for span in cosines]
    appear = torch.tensor([0.0, 1.0, 0.0])
    assert int(moment_scores(looks, text, appear).argmax()) == 2  # read as one stretch of time
    follows = [False, True, False, False, True, False, True]  # 2 and 3 are far apart
    assert int(moment_scores(looks, text, appear, follows).argmax()) == 3
    assert torch.allclose(moment_scores(looks, text, appear, follows),
                          slow_scores(looks, text, appear, follows))


def test_the_stay_is_that_of_the_span_the_evidence_points_at() -> None:
    """Over hours, a look-alike can match the words a little better than the object the
    answer read (a 4-hour haystack's yellow circle 0.598 against its yellow diamond 0.589): the
    stay is built around the best frame of the span the plain citation chose, so the moment
    weighs up the object's arrival, not the look-alike's."""
    text = torch.zeros(E)
    text[0] = 1.0
    cosines = [[0.1, 0.1], [0.1, 0.59], [0.6, 0.6], [0.1, 0.1], [0.1, 0.58], [0.58, 0.55],
               [0.1, 0.1]]  # spans 1-2: the look-alike's stay; 4-5: the object's
    looks: list[torch.Tensor | None] = [torch.stack([c * text for c in span]) for span in cosines]
    appear = torch.tensor([0.0, 1.0, 0.0])
    assert int(moment_scores(looks, text, appear).argmax()) == 1  # around the best frame
    assert int(moment_scores(looks, text, appear, around=5).argmax()) == 4
    leave = torch.tensor([0.0, 0.0, 1.0])
    assert int(moment_scores(looks, text, leave, around=4).argmax()) == 5
    assert torch.allclose(moment_scores(looks, text, appear, around=5),
                          slow_scores(looks, text, appear, around=5))
    # a span the evidence points at that does not show it (0.1 against a best of 0.6 and a
    # median of 0.1): the stay is the best frame's, not one spread over everything
    assert torch.equal(moment_scores(looks, text, appear, around=3),
                       moment_scores(looks, text, appear))


def test_a_stay_outlasts_a_dip_and_a_partial_exit() -> None:
    """Two held-out 4-hour haystacks' misses, their cosines as kept: a pink diamond matched
    0.557 on arrival, 0.33-0.38 for six frames, then 0.43-0.56 (a stay floored at the midpoint,
    0.39, began after the dip: one interval late); a purple square leaving through an edge
    matched 0.26-0.35 in its last interval (the stay ended one interval early)."""
    text = torch.zeros(E)
    text[0] = 1.0
    background = [[0.23, 0.2, 0.25, 0.22]] * 5
    diamond = background + [[0.557, 0.557, 0.379, 0.379], [0.379, 0.379, 0.329, 0.329],
                            [0.427, 0.557, 0.3, 0.3], [0.2, 0.21, 0.22, 0.2]]
    looks: list[torch.Tensor | None] = [torch.stack([c * text for c in span]) for span in diamond]
    assert int(moment_scores(looks, text, torch.tensor([0.0, 1.0, 0.0]), around=7).argmax()) == 5
    square = background + [[0.56, 0.57, 0.55, 0.56], [0.476, 0.557, 0.463, 0.342],
                           [0.318, 0.353, 0.322, 0.258], [0.2, 0.21, 0.22, 0.2]]
    looks = [torch.stack([c * text for c in span]) for span in square]
    assert int(moment_scores(looks, text, torch.tensor([0.0, 0.0, 1.0]), around=6).argmax()) == 7


def test_a_scene_cut_is_no_moment() -> None:
    """A scene cut moves every frame's cosine, here by more than the object's own entry does
    (-0.6 -> 0.3 against 0.3 -> 0.9); the entry is the first frame of the object's stay, so the
    cut is not cited for "appear" (the largest rise would cite it)."""
    text = torch.zeros(E)
    text[0] = 1.0
    cosines = [[0.0, 0.0], [-0.6, 0.3, 0.3], [0.9, 1.0], [1.0, 0.95], [0.2, 0.0]]
    looks: list[torch.Tensor | None] = [torch.stack([c * text for c in span]) for span in cosines]
    appear = moment_scores(looks, text, torch.tensor([0.0, 1.0, 0.0]))
    leave = moment_scores(looks, text, torch.tensor([0.0, 0.0, 1.0]))
    assert int(appear.argmax()) == 2 and int(leave.argmax()) == 3
    for p in ([0.0, 1.0, 0.0], [0.0, 0.0, 1.0]):
        assert torch.allclose(moment_scores(looks, text, torch.tensor(p)),
                              slow_scores(looks, text, torch.tensor(p)))


def test_appear_and_leave_point_at_the_two_ends_of_a_stay() -> None:
    on = [[False] * 4, [False, False, True, True], [True] * 4, [True] * 4, [True, False, False,
                                                                             False], [False] * 4]
    looks, text = visits(on)
    appear = moment_scores(looks, text, torch.tensor([0.0, 1.0, 0.0]))
    leave = moment_scores(looks, text, torch.tensor([0.0, 0.0, 1.0]))
    match = moment_scores(looks, text, torch.tensor([1.0, 0.0, 0.0]))
    assert int(appear.argmax()) == 1 and int(leave.argmax()) == 4
    assert (match[1:5] > 0.8).all()  # every span of the stay matches "the thing" alike


def test_on_screen_from_the_start_and_to_the_end() -> None:
    looks, text = visits([[True] * 3, [True] * 3, [False] * 3, [False] * 3])
    appear = moment_scores(looks, text, torch.tensor([0.0, 1.0, 0.0]))
    leave = moment_scores(looks, text, torch.tensor([0.0, 0.0, 1.0]))
    assert int(appear.argmax()) == 0 and int(leave.argmax()) == 1
    looks, text = visits([[False] * 3, [False, True, True], [True] * 3])
    leave = moment_scores(looks, text, torch.tensor([0.0, 0.0, 1.0]))
    assert int(leave.argmax()) == 2  # still there at the end: the last span is its stay's end


def test_spans_without_looks_score_the_lowest() -> None:
    looks, text = visits([[False] * 2, [True] * 2])
    got = moment_scores([looks[0], None, looks[1]], text, torch.tensor([0.0, 1.0, 0.0]))
    assert got[1] == got.min() and int(got.argmax()) == 2
    assert moment_scores([None, None], text, torch.tensor([0.0, 1.0, 0.0])).tolist() == [0, 0]


def probe(features: int = 4, digest: str = "abc") -> MomentProbe:
    g = torch.Generator().manual_seed(1)
    return MomentProbe(3, torch.randn(features, generator=g), torch.rand(features, generator=g)
                       + 0.5, torch.randn(len(MOMENTS), features, generator=g),
                       torch.randn(len(MOMENTS), generator=g), digest)


def test_a_probe_survives_its_file(tmp_path: Path) -> None:
    p = probe()
    p.save(tmp_path / "p.safetensors", {"trained": "here"})
    back = MomentProbe.load(tmp_path / "p.safetensors")
    assert back.layer == 3 and back.model_digest == "abc"
    x = torch.randn(2, 2)  # (H, D) flattens to F
    assert torch.allclose(back.probabilities(x), p.probabilities(x))
    assert float(p.probabilities(x).sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reads 4 features, got 6"):
        p.probabilities(torch.randn(6))


def test_files_that_are_not_probes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="not a readable moment probe"):
        MomentProbe.load(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not a readable moment probe"):
        MomentProbe.load(tmp_path / "missing.safetensors")
    save_file({"mean": torch.zeros(4)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a moment probe"):
        MomentProbe.load(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="weight"):
        MomentProbe(0, torch.zeros(4), torch.ones(4), torch.zeros(2, 4), torch.zeros(3), "x")


def test_a_probe_for_other_weights_is_not_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    weights = tmp_path / "streamvxl" / "weights"
    weights.mkdir(parents=True)
    probe(digest="trained-on-these").save(weights / moments.SHIPPED_PROBE_FILE)
    monkeypatch.setattr(moments.resources, "files", lambda _package: tmp_path / "streamvxl")
    assert MomentProbe.shipped("trained-on-these") is not None
    with caplog.at_level(logging.WARNING):
        assert MomentProbe.shipped("other-weights") is None
    assert "trained on other weights" in caplog.text
    (weights / moments.SHIPPED_PROBE_FILE).unlink()
    assert MomentProbe.shipped("trained-on-these") is None
