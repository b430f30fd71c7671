"""Which moment a question asks about, and which span of the video shows that moment.

"When did the star appear?" and "when did the star leave?" name the same object; a span that
shows the star matches both equally, and an object on screen for half a minute spans several
intervals. What tells the answer's evidence apart is where the stay *begins* and *ends*: the
star appears at the first frame of the run of frames that match it, and leaves after the last.
Two pieces:

- `MomentProbe`: a linear read-out of the answering model's own queries for the question (the
  last token's pre-RoPE queries in one layer, as `streamvxl.model.queries` computes them for
  retrieval) into ``other`` / ``appear`` / ``leave``. The model has read the words; the probe
  only asks it which end of an event they point at. It is trained per model
  (``python -m training.moment_probe``) and records the digest of the weights it was trained
  on, so it is never applied to another model.
- `moment_scores`: per span, how well its frames match what the question names, and whether
  it holds the first (appear) or last (leave) frame of that thing's stay on screen -- the run
  of frames that keep matching around the best match in the span the evidence points at --
  mixed by the probe's probabilities (a question that asks no "when" keeps the plain match).

Shapes: S spans, k rows (frames with a text-to-frame embedding) of a span, E' embedding width,
F probe features (H query heads x D head_dim), K moments (3).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import torch

from ..errors import CheckpointError
from .recall import look_scores

log = logging.getLogger(__name__)

STAY_FLOOR = 0.25
"""A stay runs through frames whose cosine is at least this share of the way from the median
cosine up to its peak's. At the midpoint (0.5) an object's match that dipped for a few frames,
or fell as it left through an edge, ended its stay an interval early or began it an interval
late (six of seven misses over eight 1- and 4-hour haystacks; docs/retrieval.md)."""

SHIPPED_PROBE_FILE = "streamvxl-tiny-moments.safetensors"
"""The embedded model's probe, in ``streamvxl/weights``."""

Moment = Literal["other", "appear", "leave"]
MOMENTS: tuple[Moment, ...] = ("other", "appear", "leave")
"""The probe's classes, in the order of its outputs."""


@dataclass(frozen=True)
class MomentProbe:
    """A linear classifier of a question's moment over its last token's queries in ``layer``.

    Example:
        >>> probe = MomentProbe(layer=0, mean=torch.zeros(2), std=torch.ones(2),
        ...                     weight=torch.tensor([[0., 0.], [4., 0.], [0., 4.]]),
        ...                     bias=torch.zeros(3), model_digest="x")
        >>> probe.moment(torch.tensor([2., 0.]))
        'appear'
    """

    layer: int
    """The decoder layer whose queries it reads (0-based, of all the model's layers)."""
    mean: torch.Tensor
    """(F,) feature mean over its training questions (features are standardised first)."""
    std: torch.Tensor
    """(F,) feature standard deviation."""
    weight: torch.Tensor
    """(K, F) logistic-regression weights over `MOMENTS`."""
    bias: torch.Tensor
    """(K,)"""
    model_digest: str
    """`streamvxl.model.default.tensors_digest` of the weights it was trained on."""

    def __post_init__(self) -> None:
        f = self.mean.shape[0]
        if self.std.shape != (f,) or self.weight.shape != (len(MOMENTS), f) or \
                self.bias.shape != (len(MOMENTS),) or self.layer < 0:
            raise CheckpointError(
                f"a moment probe needs mean/std (F,), weight ({len(MOMENTS)}, F), bias "
                f"({len(MOMENTS)},) and a layer >= 0; got {tuple(self.mean.shape)}, "
                f"{tuple(self.std.shape)}, {tuple(self.weight.shape)}, "
                f"{tuple(self.bias.shape)}, layer {self.layer}")

    @property
    def features(self) -> int:
        return self.mean.shape[0]

    def probabilities(self, queries: torch.Tensor) -> torch.Tensor:
        """(K,) float32 on the CPU: P(other), P(appear), P(leave) for one question's
        ``queries`` (F,) (or (H, D)) in `layer`."""
        x = queries.detach().float().cpu().reshape(-1)
        if x.shape[0] != self.features:
            raise ValueError(f"the probe reads {self.features} features, got {x.shape[0]}: a "
                             "model of another width")
        x = (x - self.mean) / self.std
        return torch.softmax(self.weight @ x + self.bias, 0)

    def moment(self, queries: torch.Tensor) -> Moment:
        """The most probable of `MOMENTS`."""
        return MOMENTS[int(self.probabilities(queries).argmax())]

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: str | Path, record: dict | None = None) -> None:
        """Write a ``.safetensors`` file; ``record`` (JSON) says how it was trained."""
        from safetensors.torch import save_file

        tensors = {"mean": self.mean, "std": self.std, "weight": self.weight, "bias": self.bias}
        meta = {"layer": str(self.layer), "model_digest": self.model_digest,
                "moments": ",".join(MOMENTS), "record": json.dumps(record or {})}
        save_file({k: v.float().contiguous() for k, v in tensors.items()}, str(path), meta)

    @classmethod
    def load(cls, path: str | Path) -> MomentProbe:
        """Read a file `save` wrote.

        Raises:
            CheckpointError: it is missing, unreadable, or not a moment probe.
        """
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        except Exception as e:  # safetensors raises its own errors, OSError, ...
            raise CheckpointError(f"{path} is not a readable moment probe: {e}") from e
        if meta.get("moments") != ",".join(MOMENTS) or \
                not {"mean", "std", "weight", "bias"} <= set(tensors):
            raise CheckpointError(f"{path} is not a moment probe (metadata {sorted(meta)}, "
                                  f"tensors {sorted(tensors)})")
        try:
            layer = int(meta["layer"])
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: the probe's layer is missing or not a number") from e
        return cls(layer, tensors["mean"], tensors["std"], tensors["weight"], tensors["bias"],
                   meta.get("model_digest", ""))

    @classmethod
    def shipped(cls, model_digest: str) -> MomentProbe | None:
        """The probe shipped for the embedded model, if it was trained on the weights whose
        `streamvxl.model.default.tensors_digest` is ``model_digest``; None (logged) when the
        file is missing or belongs to other weights -- a probe read from another model's
        queries would guess.

        Raises:
            CheckpointError: the shipped file is damaged.
        """
        file = resources.files("streamvxl") / "weights" / SHIPPED_PROBE_FILE
        if not file.is_file():
            log.info("no %s in this installation: citations weigh the plain frames match",
                     SHIPPED_PROBE_FILE)
            return None
        with resources.as_file(file) as path:
            probe = cls.load(path)
        if probe.model_digest != model_digest:
            log.warning("%s was trained on other weights (%s..., these are %s...): not used; "
                        "train one with python -m training.moment_probe", SHIPPED_PROBE_FILE,
                        probe.model_digest[:12], model_digest[:12])
            return None
        return probe


def row_cosines(looks: Sequence[torch.Tensor | None], text: torch.Tensor) -> list[torch.Tensor]:
    """Per span, the cosine (k,) of each of its rows with the question's text embedding
    ``text`` (E'); empty for a span without looks."""
    t = text.float()
    return [torch.zeros(0) if rows is None else (rows.float() @ t).cpu() for rows in looks]


def moment_scores(looks: Sequence[torch.Tensor | None], text: torch.Tensor,
                  probabilities: torch.Tensor, follows: Sequence[bool] | None = None,
                  around: int | None = None) -> torch.Tensor:
    """(S,) how well each span shows the moment a question asks about.

    ``looks`` are the spans' text-to-frame embeddings in time order; c is every kept frame's
    cosine with the question's text embedding ``text``, in that order. What the question names
    is on screen around a peak -- the best-matching frame of span ``around`` (the one the
    answer's evidence points at; None, a span without looks, or one whose frames match under
    the floor a stay around the best cosine would have: the best-matching frame of all) --
    for as long as c stays at or above `stay_floor` and the spans follow one another in the
    stream (`stay`; ``follows[i]``: span i comes right after span i - 1, nothing between;
    None: all do): its first frame is where it appeared, its last where it left. Retrieval
    reads intervals hours apart side by side, and a stay must not run from one into another;
    over hours, a look-alike (a circle of the object's colour) can match the words a little
    better than the object the answer read, and the stay must be the object's. A span scores

        match + P(appear) * [it holds the stay's first frame] + P(leave) * [... its last]

    where match is its best cosine (as `streamvxl.memory.recall.look_scores`): a question
    that asks no "when" (P(other) = 1) keeps the plain match, and one that does points at the
    stay's edge, not at the middle of it, which matches as well. Spans without looks match as
    the lowest of the others.

    Example:
        >>> e = torch.eye(2)
        >>> looks = [e[[0, 0]], e[[1, 1]], e[[1, 1]], e[[1, 0]], e[[0, 0]]]  # spans 1-3
        >>> moment_scores(looks, e[1], torch.tensor([0., 1., 0.])).tolist()  # appear
        [0.0, 2.0, 1.0, 1.0, 0.0]
        >>> moment_scores(looks, e[1], torch.tensor([0., 0., 1.])).tolist()  # leave
        [0.0, 1.0, 1.0, 2.0, 0.0]
    """
    match = look_scores(looks, text)  # (S,)
    cos = row_cosines(looks, text)
    if not any(c.numel() for c in cos):
        return match
    span_of = torch.repeat_interleave(torch.arange(len(cos)),
                                      torch.tensor([c.shape[0] for c in cos]))  # (R,)
    runs = None
    if follows is not None:  # (S,) which stretch of contiguous spans each span is in
        runs = torch.cumsum(torch.tensor([i > 0 and not f for i, f in enumerate(follows)]),
                            0)[span_of]  # (R,)
    rows = torch.cat(cos)  # (R,)
    peak = None
    # the evidence's span, if it matches at all: at or above the floor a stay around the best
    # frame would have
    if around is not None and cos[around].numel() and (
            cos[around].max() >= stay_floor(rows, rows.max())):
        peak = sum(c.shape[0] for c in cos[:around]) + int(cos[around].argmax())
    first, last = stay(rows, runs, peak)
    _, p_appear, p_leave = probabilities.float().tolist()
    edges = torch.zeros(len(cos))
    edges[span_of[first]] += p_appear
    edges[span_of[last]] += p_leave
    return match + edges


def stay_floor(cosines: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """The lowest cosine a stay peaking at ``peak`` runs through: `STAY_FLOOR` of the way from
    the median of ``cosines`` (R,) up to the peak.

    Example:
        >>> round(float(stay_floor(torch.tensor([0.2, 0.2, 0.6, 1.0]), torch.tensor(1.0))), 3)
        0.4
    """
    median = cosines.median()
    return median + STAY_FLOOR * (peak - median)


def stay(cosines: torch.Tensor, runs: torch.Tensor | None = None, peak: int | None = None
         ) -> tuple[int, int]:
    """The first and last row of the run of ``cosines`` (R,) around row ``peak`` (None: the
    highest) that stays at or above `stay_floor`, within the peak's stretch of ``runs`` (R,)
    (rows with one label are contiguous in time; None: all are).

    Example:
        >>> stay(torch.tensor([0.1, 0.1, 0.6, 0.9, 0.7, 0.1, 0.8, 0.1]))
        (2, 4)
        >>> stay(torch.tensor([0.1, 0.1, 0.6, 0.9, 0.7, 0.1]), torch.tensor([0, 0, 0, 1, 1, 1]))
        (3, 4)
        >>> stay(torch.tensor([0.1, 0.1, 0.6, 0.9, 0.7, 0.1, 0.8, 0.8]), peak=6)
        (6, 7)
    """
    if peak is None:
        peak = int(cosines.argmax())
    floor = stay_floor(cosines, cosines[peak])
    run = torch.zeros_like(cosines, dtype=torch.long) if runs is None else runs
    first = last = peak
    while first > 0 and cosines[first - 1] >= floor and run[first - 1] == run[peak]:
        first -= 1
    while (last + 1 < cosines.shape[0] and cosines[last + 1] >= floor
           and run[last + 1] == run[peak]):
        last += 1
    return first, last


__all__ = ["MOMENTS", "SHIPPED_PROBE_FILE", "STAY_FLOOR", "Moment", "MomentProbe", "moment_scores",
           "row_cosines", "stay", "stay_floor"]
