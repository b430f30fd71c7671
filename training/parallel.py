"""Process group, device and FSDP2 sharding for the recipe (a no-op in a single process).

Under ``torchrun`` (``WORLD_SIZE > 1``) every rank runs the same recipe on different examples;
parameters, gradients and optimizer state are sharded with FSDP2 (`fully_shard`).

Sharding units. FSDP2 all-gathers a unit's parameters in its module's ``forward`` hooks. The
vision tower's encoder layers are ordinary modules called once per example, so each is a unit.
The decoder is different: `Decoder.forward_chunk` runs its layers inline (norms, projections
and MLP called one by one, never ``DecoderLayer.forward``), and the same layer runs once per
window, several times in one example; per-layer units would see partial, repeated calls that
FSDP2's hooks do not pair with backward. So the decoder stays in the root unit, the
`TrainModule` whose ``forward`` is the whole example loss: its parameters are gathered once at
the start of an example's forward and kept until that example's backward has reduce-scattered
the gradients (the root never reshards after forward). At rest (between steps) everything,
optimizer state included, is sharded over the ranks.

Gradient reduction: FSDP2 averages gradients over ranks; the recipe scales each rank's loss so
that the average is the gradient of the global token-mean loss (see `training.recipe`).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.forward import TrainModule

log = logging.getLogger(__name__)


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


def shard(module: TrainModule, info: DistInfo) -> TrainModule:
    """Apply FSDP2 in place: each vision encoder layer, then the root (see module docstring)."""
    if not info.distributed:
        return module
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    model = module.videoxl
    if model.has_vision:
        clip = model.model.vision_tower.vision_tower
        clip = getattr(clip, "vision_model", clip)
        for layer in clip.encoder.layers:
            fully_shard(layer, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


def set_gradient_sync(module: TrainModule, sync: bool) -> None:
    """FSDP: reduce-scatter gradients only on the last micro-batch of a step."""
    if hasattr(module, "set_requires_gradient_sync"):
        module.set_requires_gradient_sync(sync)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum host numbers over ranks (float64, on the process group's device)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def close(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistInfo", "all_reduce_sum", "barrier", "close", "init_distributed", "set_gradient_sync",
           "shard"]
