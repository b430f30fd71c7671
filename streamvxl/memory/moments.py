"""Which moment a question asks about, and which span of the video shows that moment.

"When did the star appear?" and "when did the star leave?" name the same object; a span that
shows the star matches both equally, and an object on screen for half a minute spans several
intervals. What tells the answer's evidence apart is the *change*: the star appears where the
question's text-to-frame match rises from the frame before, and leaves where it falls to the
frame after. Two pieces:

- `MomentProbe`: a linear read-out of the answering model's own queries for the question (the
  last token's pre-RoPE queries in one layer, as `streamvxl.model.queries` computes them for
  retrieval) into ``other`` / ``appear`` / ``leave``. The model has read the words; the probe
  only asks it which end of an event they point at. It is trained per model
  (``python -m training.moment_probe``) and records the digest of the weights it was trained
  on, so it is never applied to another model.
- `moment_scores`: per span, how well its frames match what the question names plus how much
  that match rises (appear) or falls (leave) there, in time order, mixed by the probe's
  probabilities (a question that asks no "when" keeps the plain match).

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

log = logging.getLogger(__name__)

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
                  probabilities: torch.Tensor) -> torch.Tensor:
    """(S,) how well each span shows the moment a question asks about.

    ``looks`` are the spans' text-to-frame embeddings in time order. With every row's cosine
    c (in time order, across spans), row j's *rise* is c[j] - c[j-1] (the first row of all
    rises from the lowest cosine seen: what is on screen from the start appeared there) and
    its *fall* c[j] - c[j+1] (the last row of all does not fall: what is still on screen has
    not left). A span scores its best row's

        c[j] + P(appear) * rise[j] + P(leave) * fall[j]

    -- the row must show what the question names (c) *and* change there: a scene cut changes
    every frame's cosine a little, and an object's stay matches in every span; only its first
    (last) frames do both. With P(other) = 1 it is the plain match
    (`streamvxl.memory.recall.look_scores`). Spans without looks score the lowest of the
    others.

    Example:
        >>> e = torch.eye(2)
        >>> looks = [e[[0, 0]], e[[1, 1]], e[[1, 0]]]  # the thing (e[1]) in spans 1 and 2
        >>> moment_scores(looks, e[1], torch.tensor([0., 1., 0.])).tolist()  # appear
        [0.0, 2.0, 1.0]
        >>> moment_scores(looks, e[1], torch.tensor([0., 0., 1.])).tolist()  # leave
        [0.0, 1.0, 2.0]
    """
    cos = row_cosines(looks, text)
    flat = torch.cat(cos) if cos else torch.zeros(0)  # (R,) every row, in time order
    scores = torch.full((len(cos),), float("nan"))
    if flat.numel() == 0:
        return torch.zeros(len(cos))
    before = torch.cat((flat.min()[None], flat[:-1]))  # (R,) the row before each
    after = torch.cat((flat[1:], flat[-1:]))  # (R,) the row after (the last: itself)
    _, p_appear, p_leave = probabilities.float().tolist()
    rows = flat + p_appear * (flat - before) + p_leave * (flat - after)  # (R,)
    at = 0
    for i, c in enumerate(cos):
        n = c.shape[0]
        if n:
            scores[i] = rows[at:at + n].max()
        at += n
    known = ~scores.isnan()
    return torch.where(known, scores, scores[known].min())


__all__ = ["MOMENTS", "SHIPPED_PROBE_FILE", "Moment", "MomentProbe", "moment_scores", "row_cosines"]
