"""Put a newly trained vision tower into a streamvxl-tiny delta, its projector fitted to it.

A tower pre-trained again on its own (`training.vision_pretrain`, minutes on a CPU) describes
frames in new features, which the delta's projector and language model never read. Rather than
a curriculum run to teach them (a GPU), the projector alone is fitted so that the new tower's
patches come out where the old tower's did: ``P1(T1(x)) ~ P0(T0(x))`` on frames of the training
world (mean squared error, relative to the targets' energy). What the two towers both see
reaches the language model as before; what only the new one sees (a shape told apart from its
colour, in the held-out pairings the old one confused: docs/results.md) arrives in the same
space. The language model, the VST embedding and the adapters are untouched.

The fit error is measured on held-out frames before the fit (the plain swap) and after it (a
fit that does not help keeps the delta's projector); a tower whose features cannot be mapped
onto the old ones (error above ``max_fit_error``) is refused. The result is measured and
chosen like any export (`training.evaluate`, `training.compare_models`).

Run it::

    python -m training.swap_tower streamvxl/weights/streamvxl-tiny.safetensors tower.safetensors \\
        --out swapped.safetensors --caveat "preview: ..."

Letters: N frames, P patches per frame, Cv tower width, C LLM width.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from streamvxl.errors import CheckpointError
from streamvxl.model.default import CAVEAT_KEY, read_delta, tensors_digest, write_delta
from streamvxl.model.vision import VisionTower
from streamvxl.preprocess import Preprocessor
from streamvxl.world import WorldConfig
from training.default_model import tiny_vision_config
from training.vision_pretrain import (
    PROJECTOR_PREFIX,
    SELECT_LAYER,
    TOWER_PREFIX,
    draw_frames,
    load_projector,
    load_tower_state,
    torch_device,
)

log = logging.getLogger(__name__)

FIT_WORLD = {"max_objects": 3, "sign_prob": 0.5}
"""The frames the fit sees: the default model's training world (objects and signs)."""


@dataclass(frozen=True)
class SwapReport:
    path: Path
    fit_error_before: float
    """Relative squared error of the plain swap (the old projector on the new tower)."""
    fit_error_after: float
    """The same after fitting the projector (held-out frames)."""
    tensors_sha256: str


def _frames(rng: np.random.Generator, n: int, preprocess: Preprocessor) -> torch.Tensor:
    world = WorldConfig(height=preprocess.image_size, width=preprocess.image_size, **FIT_WORLD)
    pixels, _ = draw_frames(rng, world, n, per_episode=8)
    return preprocess(list(pixels))  # (N, 3, S, S)


def _relative_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target) / target.pow(2).mean()


def swap_tower(delta: str | Path, tower: str | Path, out: str | Path, *, caveat: str,
               steps: int = 400, batch: int = 64, lr: float = 1e-3, seed: int = 0,
               eval_frames: int = 256, max_fit_error: float = 0.1,
               device: str = "cpu") -> SwapReport:
    """Write ``delta`` with ``tower``'s weights (a `training.vision_pretrain` file or another
    delta) and its projector fitted to them (``steps`` of AdamW, cosine to zero) to ``out``.

    ``caveat`` is the new delta's own known limitation ("" for none); its metadata records the
    inputs' digests and the fit errors under ``training.swap_tower``.

    Raises:
        CheckpointError: the tower does not fit the delta's shape, or the fitted projector is
            still off by more than ``max_fit_error``.
    """
    if steps < 1 or batch < 1 or eval_frames < 1:
        raise ValueError("steps, batch and eval_frames must be >= 1")
    meta, tensors = read_delta(delta)
    vision = tiny_vision_config()
    old_tower = VisionTower(vision, SELECT_LAYER)
    new_tower = VisionTower(vision, SELECT_LAYER)
    new_state = load_tower_state(tower)
    try:
        old_tower.load_state_dict(load_tower_state(delta))
        new_tower.load_state_dict(new_state)
    except RuntimeError as e:
        raise CheckpointError(f"{tower} is not a tower of {delta}'s shape: {e}") from e
    dev = torch_device(device)
    old_tower, new_tower = old_tower.to(dev).eval(), new_tower.to(dev).eval()
    old_projector = load_projector(delta).to(dev).eval().requires_grad_(False)
    projector = copy.deepcopy(old_projector).requires_grad_(True).train()
    preprocess = Preprocessor(vision.image_size)

    @torch.no_grad()
    def pairs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(new tower's patches (N, P, Cv), the old path's projected patches (N, P, C))."""
        x = x.to(dev)
        return new_tower(x)[0], old_projector(old_tower(x)[0])

    # a seed sequence of its own: no training batch (an integer seed each) draws these frames
    held_features, held_target = pairs(_frames(np.random.default_rng([seed, 1]), eval_frames,
                                               preprocess))

    @torch.no_grad()
    def held_out_error() -> float:
        return float(_relative_error(projector(held_features), held_target))

    before = held_out_error()
    optimizer = torch.optim.AdamW(projector.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / steps))))
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        features, target = pairs(_frames(np.random.default_rng(seed * 1_000_003 + step), batch,
                                         preprocess))
        loss = _relative_error(projector(features), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps:
            log.info("step %d/%d fit error %.4f (%.0f s)", step, steps, float(loss.detach()),
                     time.perf_counter() - t0)
    after = held_out_error()
    log.info("held-out fit error: %.4f as swapped, %.4f fitted", before, after)
    if after >= before:  # a tower close to the old one: the fit only wandered off
        log.info("the fit did not help: the delta's projector is kept")
        projector, after = old_projector, before
    if not after <= max_fit_error:
        raise CheckpointError(f"the fitted projector is off by {after:.1%} of the old path's "
                              f"output (limit {max_fit_error:.1%}): {tower} does not see what "
                              f"{delta}'s tower saw")

    swapped = dict(tensors)
    for prefix, state in ((TOWER_PREFIX, new_state),
                          (PROJECTOR_PREFIX, projector.state_dict())):
        for name, value in state.items():
            key = prefix + name
            if key not in swapped:
                raise CheckpointError(f"{delta} has no {key}: not a streamvxl-tiny delta")
            swapped[key] = value.detach().to("cpu", swapped[key].dtype).contiguous()
    record = {"delta_tensors_sha256": tensors_digest(tensors), "tower": str(tower),
              "steps": steps, "batch": batch, "lr": lr, "seed": seed, "world": FIT_WORLD,
              "fit_error_before": before, "fit_error_after": after}
    new_meta = dict(meta)
    new_meta["training"] = {**dict(meta.get("training") or {}), "swap_tower": record}
    new_meta.pop(CAVEAT_KEY, None)
    if caveat:
        new_meta[CAVEAT_KEY] = caveat
    path = write_delta(out, swapped, new_meta)
    digest = tensors_digest(swapped)
    log.info("wrote %s (tensors sha256 %s)", path, digest[:16])
    return SwapReport(path, before, after, digest)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.swap_tower", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("delta", help="the streamvxl-tiny delta whose tower is replaced")
    p.add_argument("tower", help="the new tower (training.vision_pretrain --out, or a delta)")
    p.add_argument("--out", required=True)
    p.add_argument("--caveat", required=True,
                   help="the new delta's own known limitation, shown when it loads ('' for none)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-fit-error", type=float, default=0.1)
    p.add_argument("--device", default="cpu", help='"cpu", "cuda" or "auto" (a GPU if any)')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    report = swap_tower(args.delta, args.tower, args.out, caveat=args.caveat, steps=args.steps,
                        batch=args.batch, lr=args.lr, seed=args.seed,
                        max_fit_error=args.max_fit_error, device=args.device)
    log.info("done: %s", json.dumps({"path": str(report.path),
                                     "fit_error_before": report.fit_error_before,
                                     "fit_error_after": report.fit_error_after}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
