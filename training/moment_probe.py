"""Train a model's moment probe: which end of an event a question asks about.

Citations of "when did the <object> appear / leave?" point at the span where the named thing's
stay on screen begins or ends (`streamvxl.memory.moments`); which of the two the question means is
read from the answering model's own queries for it by a linear probe. This fits that probe for
one model, on the world's questions:

- every question form of the world, one fact of a random episode per draw, its label "appear"
  (``when_appear``), "leave" (``when_leave``) or "other" (every other form: "which appeared
  first", "did the <a> appear before the <b>", counts, colours, signs ...);
- training texts in training phrasings (the template lists and the training grammar), the
  layer and the regularisation chosen on held-out *templates*, and the result reported on the
  held-out *grammar* (sentence shapes and words no training phrasing has: "make its entrance",
  "departure time"), which nothing here was chosen on;
- features as the product computes them (`streamvxl.runtime.citations.question_moment`): the
  last question token's pre-RoPE queries over [sink | question], eager, on the CPU; classes
  weighted to balance (two "when" forms among ~30).

The shipped probe (``streamvxl/weights/streamvxl-tiny-moments.safetensors``) is this, on the
2-core CPU in ~5 minutes (2,960 questions through the model, one thread, beside other work)::

    python -m training.moment_probe --out streamvxl/weights/streamvxl-tiny-moments.safetensors

It records the model's tensor digest: a probe is used only with the weights it was trained on,
so a new default model ships with a probe trained on it (a test checks the pair).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from streamvxl.config import MemoryConfig
from streamvxl.memory.moments import MOMENTS, MomentProbe
from streamvxl.memory.recall import digest_layers
from streamvxl.runtime.retrieval import own_queries
from streamvxl.runtime.runtime import Runtime
from streamvxl.world.questions import FORMS, form_facts, phrase
from streamvxl.world.scene import sample_episode

log = logging.getLogger("training.moment_probe")

LABELS = {"when_appear": 1, "when_leave": 2}
"""Forms whose questions ask for a moment, by index in `MOMENTS`; every other form is 0."""
WHEN_SHARE = 8
"""Questions of each "when" form per question of another form: each moment has one form and
"other" has ~30, so the moments' wordings get enough examples (their loss is also weighted)."""

# Shapes: N questions, L' digest layers, F features (H heads x D head_dim), K moments.


def questions(per_form: int, split: str, held_out: str, seed: int) -> list[tuple[str, int]]:
    """``per_form`` (text, label) of each world form that has a fact (`WHEN_SHARE` times as
    many of the "when" forms), in ``split``'s phrasings (eval: always a held-out one, from
    ``held_out``)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, int]] = []
    for name, form in FORMS.items():
        if form.task == "offline":  # asked only where the world draws outages; the shipped
            continue                # probe was trained before they existed
        want = per_form * (WHEN_SHARE if name in LABELS else 1)
        drawn, tries = 0, 0
        while drawn < want and tries < 50 * want:
            tries += 1
            facts = form_facts(name, sample_episode(rng, split=split), rng)  # type: ignore[arg-type]
            if not facts:
                continue
            fact = facts[int(rng.integers(len(facts)))]
            text, _, _ = phrase(form, fact.slots, rng, split,  # type: ignore[arg-type]
                                novel_phrasing_prob=1.0, held_out=held_out,  # type: ignore[arg-type]
                                grammar_prob=0.5)
            out.append((text, LABELS.get(name, 0)))
            drawn += 1
        if drawn < want:
            log.warning("%s: %d of %d questions (the world seldom has its facts)", name, drawn,
                        want)
    return out


@torch.no_grad()
def features(runtime: Runtime, texts: list[str]) -> torch.Tensor:
    """(N, L', F) float32: each question's own queries in the digest layers, as citations
    read them (`streamvxl.runtime.retrieval.own_queries`)."""
    state = runtime.new_stream(MemoryConfig())
    prompt = state.settings.config.prompt
    rows = []
    start = time.perf_counter()
    for i, text in enumerate(texts):
        ids = torch.tensor(runtime.tokenizer(prompt.format_question(text),
                                             add_special_tokens=False)["input_ids"])
        rows.append(own_queries(runtime, state.store, ids).flatten(1).float().cpu())  # (L', F)
        if (i + 1) % 200 == 0:
            log.info("features: %d / %d questions (%.0f s)", i + 1, len(texts),
                     time.perf_counter() - start)
    return torch.stack(rows)


def fit(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, ...]:
    """Multinomial logistic regression on standardised ``x`` (N, F), classes weighted to
    balance: (mean, std, weight (K, F), bias (K,))."""
    mean, std = x.mean(0), x.std(0) + 1e-4
    z = (x - mean) / std
    counts = torch.bincount(y, minlength=len(MOMENTS)).float().clamp(min=1)
    balance = counts.sum() / (len(MOMENTS) * counts)
    w = torch.zeros(len(MOMENTS), x.shape[1], requires_grad=True)
    b = torch.zeros(len(MOMENTS), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w.T + b, y, weight=balance) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, w.detach(), b.detach()


def balanced_nll(probe: MomentProbe, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over classes of the mean negative log-likelihood of their questions: what the
    layer and the regularisation are chosen by (accuracy ties at 1.0 on held-out templates)."""
    p = torch.stack([probe.probabilities(row) for row in x])  # (N, K)
    nll = -p[torch.arange(len(y)), y].clamp(min=1e-9).log()
    return float(torch.stack([nll[y == k].mean() for k in range(len(MOMENTS))
                              if (y == k).any()]).mean())


def scores(probe: MomentProbe, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Accuracy per true class and the confusion table (rows: truth, columns: guess)."""
    guess = torch.stack([probe.probabilities(row).argmax() for row in x])
    table = torch.zeros(len(MOMENTS), len(MOMENTS), dtype=torch.long)
    for t, g in zip(y.tolist(), guess.tolist(), strict=True):
        table[t, g] += 1
    per = {m: round(float(table[k, k] / max(1, int(table[k].sum()))), 4)
           for k, m in enumerate(MOMENTS)}
    return {"per_class": per, "balanced": round(sum(per.values()) / len(per), 4),
            "n": {m: int(table[k].sum()) for k, m in enumerate(MOMENTS)},
            "confusion": table.tolist()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None,
                   help="a streamvxl-tiny delta (default: the shipped one)")
    p.add_argument("--out", type=Path, required=True, help="the probe's .safetensors file")
    p.add_argument("--per-form", type=int, default=40, help="training questions per form")
    p.add_argument("--eval-per-form", type=int, default=20)
    p.add_argument("--l2", type=str, default="1e-3,1e-2,1e-1",
                   help="regularisation strengths to choose from (on held-out templates)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    from streamvxl.model.default import DEFAULT_DELTA, load_default_model, tensors_digest
    from streamvxl.model.loading import read_tensors

    delta = args.model or DEFAULT_DELTA
    model, tokenizer = load_default_model(device="cpu", delta_path=delta)
    runtime = Runtime(model, tokenizer)
    digest = tensors_digest(read_tensors([Path(delta)]))
    sets = {"train": questions(args.per_form, "train", "templates", args.seed),
            "held-out templates": questions(args.eval_per_form, "eval", "templates",
                                            args.seed + 1),
            "held-out grammar": questions(args.eval_per_form, "eval", "grammar", args.seed + 2)}
    data = {}
    for name, items in sets.items():
        log.info("%s: %d questions (%d appear, %d leave)", name, len(items),
                 sum(lab == 1 for _, lab in items), sum(lab == 2 for _, lab in items))
        data[name] = (features(runtime, [t for t, _ in items]),
                      torch.tensor([lab for _, lab in items]))
    kept = digest_layers(model.config.llm.num_hidden_layers)  # what `own_queries` keeps
    best: tuple[float, MomentProbe, float] | None = None
    x, y = data["train"]
    for layer in range(kept.start, kept.stop):
        for l2 in (float(v) for v in args.l2.split(",")):
            probe = MomentProbe(layer, *fit(x[:, layer - kept.start], y, l2), model_digest=digest)
            vx, vy = data["held-out templates"]
            got = balanced_nll(probe, vx[:, layer - kept.start], vy)
            log.info("layer %d, l2 %g: held-out templates, balanced NLL %.3f", layer, l2, got)
            if best is None or got < best[0]:
                best = (got, probe, l2)
    assert best is not None
    _, probe, l2 = best
    record: dict[str, Any] = {"layer": probe.layer, "l2": l2, "seed": args.seed,
                              "model": Path(delta).name, "model_tensors_sha256": digest,
                              "per_form": args.per_form, "eval_per_form": args.eval_per_form}
    for name, (fx, fy) in data.items():
        record[name] = scores(probe, fx[:, probe.layer - kept.start], fy)
        log.info("%s: %s", name, json.dumps(record[name]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    probe.save(args.out, record)
    log.info("wrote %s (layer %d)", args.out, probe.layer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
