"""The moment probe's recipe (`training.moment_probe`): its questions and its fit.

- Questions are labelled by form ("when_appear" -> appear, "when_leave" -> leave, every other
  form -> other), the "when" forms `WHEN_SHARE` times as often; the held-out grammar's
  phrasings of the "when" forms are none of the training ones.
- The fit separates classes a linear read-out can separate, however unbalanced, and its file
  gives the same probabilities.
"""

from __future__ import annotations

import torch

from streamvxl.memory.moments import MOMENTS, MomentProbe
from training.moment_probe import LABELS, WHEN_SHARE, balanced_nll, fit, questions, scores


def test_questions_are_labelled_by_form_and_held_out_wordings_are_new() -> None:
    train = questions(2, "train", "templates", seed=0)
    grammar = questions(2, "eval", "grammar", seed=1)
    counts = torch.bincount(torch.tensor([lab for _, lab in train]), minlength=3).tolist()
    assert counts[1] == counts[2] == 2 * WHEN_SHARE and counts[0] > counts[1]
    when = {t for t, lab in train if lab}
    assert not {t for t, lab in grammar if lab} & when
    assert set(LABELS.values()) == {1, 2} and MOMENTS[1:] == ("appear", "leave")


def test_the_fit_separates_unbalanced_classes(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 3
    y = torch.tensor([0] * 300 + [1] * 20 + [2] * 20)
    x = centres[y] + torch.randn(len(y), 16, generator=g)
    probe = MomentProbe(0, *fit(x, y, 1e-3), model_digest="d")
    got = scores(probe, x, y)
    assert got["per_class"] == {"other": 1.0, "appear": 1.0, "leave": 1.0}
    assert balanced_nll(probe, x, y) < 0.1
    probe.save(tmp_path / "p.safetensors")
    back = MomentProbe.load(tmp_path / "p.safetensors")
    assert torch.allclose(back.probabilities(x[0]), probe.probabilities(x[0]))
