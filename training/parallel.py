"""Process group, device and FSDP2 sharding for the recipe (a no-op in a single process).

Under ``torchrun`` (``WORLD_SIZE > 1``) every rank runs the same recipe on different examples;
parameters, gradients and optimizer state are sharded with FSDP2 (`fully_shard`).

Sharding units (ZeRO-3). FSDP2 all-gathers a unit's parameters in its module's ``forward``
hooks and frees them again after the call (``reshard_after_forward``); backward gathers them
once more and reduce-scatters the gradients. The units are each vision encoder layer, each
decoder layer (the training forward calls `DecoderLayer.forward_sequence` once per layer,
registered as an FSDP forward method) and the root, the
`TrainModule` whose ``forward`` is the whole example loss and which owns what is left
(embeddings, VST embedding, projector, final norm, ``lm_head``). Layer-major, a decoder layer
runs over all windows and the answers in that one call, so it is gathered once per forward
and once per backward, and every rank makes the same collectives in the same order however
its examples were cut into windows (window by window, rank 0's three windows would meet
rank 1's two, and the collectives would hang). So at most one or two decoder layers' full
parameters are on a GPU at a time, besides the root's. At rest (between steps) everything,
optimizer state included, is sharded over the ranks.

Every rank must also run the same number of forwards per step: `balance_groups` splits
groups until the ranks agree.

Under bfloat16 autocast (CUDA) the ranks can gather bfloat16 copies of the weights and reduce
gradients in float32 (FSDP's mixed precision; `RecipeConfig.fsdp_param_dtype`). Gathering
float32 and letting autocast cast keeps a bfloat16 copy of every weight alive from its first
use to the end of the backward (autocast caches its casts, and the matmuls save them): the
whole model again, 16 GB at 7B, on every GPU. Matmuls see the same bfloat16 weights either
way; only ops that autocast runs in float32 (CLIP's layer norms) see rounded weights, and
LoRA's merged W0 + B A is rounded twice. Gathering float32 (and on the CPU, in the tests) the
ranks compute exactly as one process does (`tests/training/test_fsdp.py`).

Gradient reduction: FSDP2 averages gradients over ranks; the recipe scales each rank's loss so
that the average is the gradient of the global token-mean loss (see `training.recipe`).
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from training.forward import TrainModule

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, gloo on CPU); a no-op
    for the group when already joined, so it may be called again to get the `DistInfo`.

    ``device``: "auto" (CUDA when available), "cpu", or "cuda".
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10),
                                **({"device_id": dev} if dev.type == "cuda" else {}))
        log.info("rank %d/%d joined (%s) on %s", rank, world, backend, dev)
    return DistInfo(rank, world, local_rank, dev)


def shard(module: TrainModule, info: DistInfo, param_dtype: torch.dtype | None = None
          ) -> TrainModule:
    """Apply FSDP2 in place: each vision encoder layer, each decoder layer, then the root (see
    the module docstring). ``param_dtype``: gather weights in this dtype (gradients are
    reduced in float32); None: as stored."""
    if not info.distributed:
        return module
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import (
        MixedPrecisionPolicy,
        fully_shard,
        register_fsdp_forward_method,
    )

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) \
        if param_dtype is not None else MixedPrecisionPolicy()
    fully_shard = functools.partial(fully_shard, mesh=mesh, mp_policy=policy)
    model = module.videoxl
    if model.has_vision:
        clip = model.model.vision_tower.vision_tower
        clip = getattr(clip, "vision_model", clip)
        for layer in clip.encoder.layers:
            fully_shard(layer)
    for layer in model.model.layers:
        fully_shard(layer)
        # the training forward calls this method, once per layer (`layer_major_loss`)
        register_fsdp_forward_method(layer, "forward_sequence")
    fully_shard(module)
    return module


def set_gradient_sync(module: TrainModule, sync: bool) -> None:
    """FSDP: whether the next backward reduce-scatters the gradients (False: they accumulate
    unsharded until a backward that does)."""
    if hasattr(module, "set_requires_gradient_sync"):
        module.set_requires_gradient_sync(sync)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum host numbers over ranks (float64, on the process group's device)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_max(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise maximum of host numbers over ranks."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def balance_groups(groups: list[list[T]], count: int) -> list[list[T]]:
    """Split the largest groups (first one on ties, halves in order) until there are ``count``.

    Every rank must run the same number of forwards in a step: each forward gathers and
    reduce-scatters every sharded unit once, and those collectives pair up across ranks.
    A rank with fewer (larger) groups splits them; the examples and their order stay.
    """
    out = [list(g) for g in groups]
    if count > sum(len(g) for g in out):
        raise ValueError(f"cannot make {count} groups of {sum(len(g) for g in out)} examples")
    while len(out) < count:
        i = max(range(len(out)), key=lambda j: len(out[j]))
        half = (len(out[i]) + 1) // 2
        out[i:i + 1] = [out[i][:half], out[i][half:]]
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def close(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistInfo", "all_reduce_max", "all_reduce_sum", "balance_groups", "barrier", "close",
           "init_distributed", "set_gradient_sync", "shard"]
