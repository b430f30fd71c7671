"""Interpolate two exported deltas of one base: ``(1 - alpha) * A + alpha * B`` per weight.

A step of the default model's recipe, after a continuation (``CONTINUE=`` in
``training/train_default.sh``): when a run continues a model and trades one skill for another
(a stage that finds long haystacks but loses points on short videos, say), averaging the
weights of the fine-tuned model with its start (WiSE-FT, Wortsman et al. 2022) often keeps much
of both. A soup costs no training and is measured like any export (`training.evaluate`,
`training.niah`) and chosen like one (`training.compare_models`): ship it only where it beats
the export on the paired comparison (two of the default model's continuations shipped as
soups, a later one as its export; docs/results.md, History).

``parts`` limits the soup to some parts of the model (`training.default_model.group_of`: llm,
vst, projector, vision); the others are A's as they are. At alpha 1 that puts one part of B
into A: which part of a continuation's drift costs a skill (docs/results.md: the numbers a
continuation loses), or a continuation kept only where it helps.

Full tensors interpolate elementwise (in float64, stored back in their own dtype). A low-rank
entry is the product ``B @ A`` laid over the base, and the interpolation of two products has
up to twice their rank; it is re-factored to the rank the inputs had by a truncated SVD, the
best approximation of that rank (Eckart-Young), so the file keeps its size. The relative
error of every re-factored product is measured and logged, and the soup is refused above
``max_lowrank_error``: then the two runs are too far apart for a soup of that rank.

Run it::

    python -m training.soup streamvxl/weights/streamvxl-tiny.safetensors export.safetensors \\
        --alpha 0.5 --out soup.safetensors --caveat "preview: ..."
    python -m training.soup streamvxl/weights/streamvxl-tiny.safetensors export.safetensors \\
        --alpha 1 --parts projector --out shipped_with_export_projector.safetensors --caveat ""
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from streamvxl.errors import CheckpointError
from streamvxl.model.default import (
    CAVEAT_KEY,
    LORA_A,
    LORA_B,
    read_delta,
    tensors_digest,
    write_delta,
)
from training.default_model import GROUPS, group_of

log = logging.getLogger(__name__)

SHAPE_KEYS = ("base", "model_type", "name", "vision", "visual", "vst", "low_rank")
"""Metadata both deltas must share: the same base and architecture, the same low-rank names."""


@dataclass(frozen=True)
class SoupReport:
    path: Path
    alpha: float
    low_rank_error_max: float
    """Largest relative Frobenius error of a re-factored low-rank product (0 when none)."""
    low_rank_error_median: float
    tensors_sha256: str
    """`tensors_digest` of the soup: what evaluations of it record as model_tensors_sha256."""


def interpolate_low_rank(a_pair: tuple[torch.Tensor, torch.Tensor],
                         b_pair: tuple[torch.Tensor, torch.Tensor], alpha: float
                         ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A, B, relative error): rank-r factors of ``(1 - alpha) Ba @ Aa + alpha Bb @ Ab``.

    ``a_pair`` and ``b_pair`` are (A (r, I), B (O, r)) as the delta stores them; the result
    has rank ``r = max(ra, rb)``; the singular values are split evenly between the factors."""
    (aa, ba), (ab, bb) = a_pair, b_pair
    exact = (1 - alpha) * (ba.double() @ aa.double()) + alpha * (bb.double() @ ab.double())  # (O, I)
    rank = max(aa.shape[0], ab.shape[0])
    u, s, vh = torch.linalg.svd(exact, full_matrices=False)  # (O, k), (k,), (k, I)
    root = s[:rank].sqrt()
    b = (u[:, :rank] * root).to(ba.dtype)  # (O, r), as stored
    a = (root[:, None] * vh[:rank]).to(aa.dtype)  # (r, I)
    norm = exact.norm()  # the error of the stored factors, rounding included
    error = float((exact - b.double() @ a.double()).norm() / norm) if norm > 0 else 0.0
    return a, b, error


def _same_dtype(name: str, ta: torch.Tensor, tb: torch.Tensor) -> None:
    # the soup is stored in A's dtype: a float16 B laid into float32 (or back) would silently
    # change what one input was trained as, so two exports of one model must agree
    if ta.dtype != tb.dtype:
        raise CheckpointError(f"{name!r} is {ta.dtype} in one delta and {tb.dtype} in the other")


def check_parts(parts: Collection[str] | None) -> None:
    """Refuse a ``parts`` that is empty or names what `group_of` does not (None: all parts)."""
    if parts is not None and (not parts or not set(parts) <= set(GROUPS)):
        raise ValueError(f"parts must be a non-empty subset of {GROUPS}, got {sorted(parts)}")


def soup_tensors(meta_a: Mapping[str, Any], tensors_a: Mapping[str, torch.Tensor],
                 meta_b: Mapping[str, Any], tensors_b: Mapping[str, torch.Tensor],
                 alpha: float, parts: Collection[str] | None = None
                 ) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The interpolated tensors and the relative error of each re-factored low-rank product;
    with ``parts``, tensors of other parts are A's, untouched."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    check_parts(parts)

    def a_keeps(name: str) -> bool:  # a tensor (or low-rank factor) of a part left as A's
        return parts is not None and group_of(name) not in parts

    for key in SHAPE_KEYS:
        if meta_a.get(key) != meta_b.get(key):
            raise CheckpointError(f"the deltas differ in {key!r}: they are not two trainings of "
                                  "one model, and their weights cannot be averaged")
    if tensors_a.keys() != tensors_b.keys():
        only = sorted(tensors_a.keys() ^ tensors_b.keys())
        raise CheckpointError(f"the deltas change different tensors (e.g. {only[:3]}); a tensor "
                              "one leaves at the base would need the base to average")
    out: dict[str, torch.Tensor] = {}
    errors: list[float] = []
    bad = [k for k, t in (*tensors_a.items(), *tensors_b.items())
           if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"non-finite values in {bad[:3]}: a damaged delta cannot be averaged")
    for name in meta_a.get("low_rank", []):
        if name + LORA_A not in tensors_a or name + LORA_B not in tensors_a:
            raise CheckpointError(f"low-rank entry {name!r} lacks its factors; the file is damaged")
        if a_keeps(name):
            continue  # A's factors, copied below with A's other tensors
        for factor in (LORA_A, LORA_B):
            _same_dtype(name + factor, tensors_a[name + factor], tensors_b[name + factor])
        a, b, err = interpolate_low_rank((tensors_a[name + LORA_A], tensors_a[name + LORA_B]),
                                         (tensors_b[name + LORA_A], tensors_b[name + LORA_B]),
                                         alpha)
        out[name + LORA_A], out[name + LORA_B] = a, b
        errors.append(err)
    for name, ta in tensors_a.items():
        if name in out:
            continue
        if a_keeps(name):
            out[name] = ta
            continue
        tb = tensors_b[name]
        if ta.shape != tb.shape:
            raise CheckpointError(f"{name!r} has shape {tuple(ta.shape)} in one delta and "
                                  f"{tuple(tb.shape)} in the other")
        _same_dtype(name, ta, tb)
        out[name] = ((1 - alpha) * ta.double() + alpha * tb.double()).to(ta.dtype)
    return out, errors


def soup(path_a: str | Path, path_b: str | Path, alpha: float, out: str | Path, *,
         caveat: str, training: Mapping[str, Any] | None = None,
         max_lowrank_error: float = 0.05, parts: Collection[str] | None = None) -> SoupReport:
    """Write the soup of two deltas to ``out``: B's metadata, with ``training`` recording both
    inputs, alpha and ``parts`` (and the given record, e.g. the runs' commands).

    ``caveat`` is the soup's own known limitation ("" for none): neither input's describes the
    soup, so it is never inherited."""
    meta_a, tensors_a = read_delta(path_a)
    meta_b, tensors_b = read_delta(path_b)
    tensors, errors = soup_tensors(meta_a, tensors_a, meta_b, tensors_b, alpha, parts)
    worst = max(errors, default=0.0)
    median = sorted(errors)[len(errors) // 2] if errors else 0.0
    log.info("soup of %s and %s at alpha %.3f (parts: %s): %d tensors, %d low-rank re-factored "
             "(relative error median %.2e, max %.2e)", path_a, path_b, alpha,
             ", ".join(sorted(parts)) if parts is not None else "all", len(tensors), len(errors),
             median, worst)
    if not worst <= max_lowrank_error:  # a NaN limit refuses too
        raise CheckpointError(f"a re-factored low-rank product is off by {worst:.1%} (limit "
                              f"{max_lowrank_error:.1%}): the runs are too far apart for a "
                              "soup of this rank")
    meta = dict(meta_b)
    meta["training"] = {**dict(training or {}),
                        "soup": {"a": str(path_a), "b": str(path_b), "alpha": alpha,
                                 "parts": sorted(parts) if parts is not None else list(GROUPS),
                                 # the paths are local; the digests name the inputs anywhere
                                 "a_tensors_sha256": tensors_digest(tensors_a),
                                 "b_tensors_sha256": tensors_digest(tensors_b),
                                 "a_training": meta_a.get("training"),
                                 "b_training": meta_b.get("training"),
                                 "low_rank_error_max": worst,
                                 "low_rank_error_median": median}}
    meta.pop(CAVEAT_KEY, None)
    if caveat:
        meta[CAVEAT_KEY] = caveat
    path = write_delta(out, tensors, meta)
    digest = tensors_digest(tensors)
    log.info("the soup's tensors: sha256 %s", digest)
    return SoupReport(path, alpha, worst, median, digest)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="the first delta (alpha 0 gives it back)")
    p.add_argument("b", help="the second delta (alpha 1 gives it back); its metadata is kept")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--out", required=True)
    p.add_argument("--training", help="JSON: a record of how the inputs were made")
    p.add_argument("--caveat", required=True,
                   help="the soup's own known limitation, shown when it loads ('' for none)")
    p.add_argument("--max-lowrank-error", type=float, default=0.05)
    p.add_argument("--parts", help=f"comma-separated parts to interpolate, of {', '.join(GROUPS)} "
                   "(default: all); the others are A's")
    args = p.parse_args(argv)
    parts = args.parts.split(",") if args.parts else None
    try:
        check_parts(parts)
    except ValueError as e:
        p.error(f"--parts: {e}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    report = soup(args.a, args.b, args.alpha, args.out,
                  training=json.loads(args.training) if args.training else None,
                  caveat=args.caveat, max_lowrank_error=args.max_lowrank_error, parts=parts)
    log.info("wrote %s", report.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
