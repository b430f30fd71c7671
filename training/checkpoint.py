"""Training checkpoints without pickle: weights, optimizer, scheduler, RNG and step.

A checkpoint is a folder ``<output_dir>/step_<NNNNNNN>/``:

- ``model/``: a Video-XL checkpoint (`save_videoxl`) plus the tokenizer, so the folder is also
  a model `load_videoxl` and `VideoMemory.from_pretrained` read directly;
- ``optimizer.safetensors``: every optimizer state tensor, keyed ``<param name>/<state name>``
  (full, unsharded tensors: a checkpoint resumes on any number of ranks);
- ``rng.safetensors``: each rank's torch RNG states (``rank<r>/cpu``, ``rank<r>/cuda``);
- ``heads.safetensors``: the `TrainModule`'s own training-only heads (its keys outside
  ``videoxl.``, e.g. the reading head), when it has any;
- ``trainer.json``: step, stage, the optimizer's param groups, the LR scheduler's state and the
  recipe config.

It is written to a temporary folder and renamed into place, then ``latest.json`` is updated: a
crash mid-save leaves the previous checkpoint intact. Model and optimizer state are gathered with
`torch.distributed.checkpoint.state_dict` (full state dicts), which works for FSDP2 modules and
plain ones alike. Nothing here calls ``torch.save`` / ``torch.load``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from streamvxl.model.saving import save_videoxl
from streamvxl.model.videoxl import VideoXL
from training.forward import TrainModule
from training.parallel import DistInfo, all_reduce_sum, barrier

log = logging.getLogger(__name__)

PREFIX = "videoxl."  # TrainModule's attribute holding the model
LATEST = "latest.json"
HEADS_FILE = "heads.safetensors"


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The folder ``latest.json`` names, or None when there is none."""
    pointer = Path(output_dir) / LATEST
    if not pointer.is_file():
        return None
    folder = Path(output_dir) / json.loads(pointer.read_text())["checkpoint"]
    if not (folder / "trainer.json").is_file():
        raise FileNotFoundError(f"{pointer} names {folder}, which is not a complete checkpoint; "
                                "delete latest.json to start afresh")
    return folder


def _cpu_model(module: TrainModule, state: dict[str, torch.Tensor]) -> VideoXL:
    """A CPU `VideoXL` holding the full weights ``state`` (keys without the prefix)."""
    src = module.videoxl
    with torch.device("meta"):
        model = VideoXL(src.config, src.vision_config)
    if src.config.llm.tie_word_embeddings:
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    model.load_state_dict(state, assign=True)  # non-persistent buffers (unsaved) stay meta
    if src.config.llm.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model


def _optimizer_tensors(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, entries in osd["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(name, {})[key] = value
    return tensors, scalars


def save_checkpoint(output_dir: str | Path, step: int, module: TrainModule,
                    optimizer: torch.optim.Optimizer, scheduler: Any, tokenizer: Any,
                    info: DistInfo, trainer: dict[str, Any], keep: int = 2) -> Path:
    """Write the checkpoint of ``step`` (collective: every rank calls it); returns its folder."""
    out = Path(output_dir)
    final = out / checkpoint_name(step)
    tmp = out / (checkpoint_name(step) + ".tmp")
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(module, options=opts)
    optim_state = get_optimizer_state_dict(module, optimizer, options=opts)
    rng = {f"rank{info.rank}/cpu": torch.get_rng_state()}
    if info.device.type == "cuda":
        rng[f"rank{info.rank}/cuda"] = torch.cuda.get_rng_state(info.device)
    if info.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    barrier(info)
    save_file(rng, str(tmp / f"rng_rank{info.rank}.safetensors"))
    if info.is_main:
        state = {k.removeprefix(PREFIX): v for k, v in model_state.items()
                 if k.startswith(PREFIX)}
        heads = {k: v.contiguous() for k, v in model_state.items() if not k.startswith(PREFIX)}
        save_videoxl(_cpu_model(module, state), tmp / "model")
        if heads:
            save_file(heads, str(tmp / HEADS_FILE))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp / "model"))
        tensors, scalars = _optimizer_tensors(optim_state)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        meta = dict(trainer, step=step, world_size=info.world_size,
                    param_groups=optim_state["param_groups"], optimizer_scalars=scalars,
                    scheduler=scheduler.state_dict())
        (tmp / "trainer.json").write_text(json.dumps(meta, indent=1))
    barrier(info)
    if info.is_main:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        (out / LATEST).write_text(json.dumps({"checkpoint": final.name, "step": step}))
        _prune(out, keep)
        log.info("checkpoint %s", final)
    barrier(info)
    return final


def _prune(out: Path, keep: int) -> None:
    if keep <= 0:
        return
    for old in sorted(out.glob("step_???????"))[:-keep]:
        shutil.rmtree(old)


def load_heads(folder: str | Path, module: TrainModule) -> None:
    """Load a checkpoint's training-only heads into ``module`` (before sharding); a module
    with none needs none, one with heads needs exactly theirs."""
    own = {k for k in module.state_dict() if not k.startswith(PREFIX)}
    path = Path(folder) / HEADS_FILE
    if not own:
        return
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {HEADS_FILE}, but this run trains heads "
                                f"{sorted(own)} (e.g. reading_loss > 0): start a new run from "
                                f"{Path(folder) / 'model'} instead of resuming")
    load_heads_file(path, module)


def load_heads_file(path: str | Path, module: TrainModule) -> None:
    """Start ``module``'s training-only heads from a ``heads.safetensors`` (another run's
    checkpoint): it must hold exactly the module's head tensors, in their shapes."""
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(PREFIX)}
    state = load_file(str(path))
    if set(state) != set(own):
        raise ValueError(f"{path} holds {sorted(state)}, the run's heads are {sorted(own)}")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise ValueError(f"{path}: {key} is {tuple(value.shape)}, the run's "
                             f"{tuple(own[key].shape)}")
    module.load_state_dict(state, strict=False)


def load_training_state(folder: str | Path, module: TrainModule,
                        optimizer: torch.optim.Optimizer, scheduler: Any,
                        info: DistInfo) -> dict[str, Any]:
    """Restore optimizer, scheduler and this rank's RNG from ``folder`` (the model weights are
    loaded before sharding, from ``folder/model``); returns ``trainer.json``."""
    folder = Path(folder)
    meta = json.loads((folder / "trainer.json").read_text())
    tensors = load_file(str(folder / "optimizer.safetensors"))
    state: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        name, _, entry = key.rpartition("/")
        state.setdefault(name, {})[entry] = value.to(info.device)
    for name, entries in meta["optimizer_scalars"].items():
        state.setdefault(name, {}).update(entries)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    if unknown := sorted(set(state) - trainable):
        raise ValueError(f"{folder}: optimizer state for {unknown[:3]}, which this run does not "
                         "train: the checkpoint was written by another run configuration")
    # a parameter no gradient has reached yet has no state to save (AdamW creates it on its
    # first step): the VSTs' while every memory is uncompressed (training/train_binding.sh)
    if unstepped := sorted(trainable - set(state)):
        log.info("%s: %d trained parameters have no optimizer state yet (never stepped), e.g. %s",
                 folder, len(unstepped), unstepped[0])
    osd = {"state": state, "param_groups": meta["param_groups"]}
    set_optimizer_state_dict(module, optimizer, osd,
                             options=StateDictOptions(full_state_dict=True,
                                                      strict=not unstepped))
    scheduler.load_state_dict(meta["scheduler"])
    rng_file = folder / f"rng_rank{info.rank}.safetensors"
    if meta["world_size"] == info.world_size and rng_file.is_file():
        rng = load_file(str(rng_file))
        torch.set_rng_state(rng[f"rank{info.rank}/cpu"])
        if info.device.type == "cuda" and f"rank{info.rank}/cuda" in rng:
            torch.cuda.set_rng_state(rng[f"rank{info.rank}/cuda"], info.device)
    else:
        log.warning("%s was written by %d ranks, resuming on %d: RNG states not restored",
                    folder, meta["world_size"], info.world_size)
    all_reduce_sum([0.0], info)  # every rank has finished reading before anyone moves on
    return meta


__all__ = ["HEADS_FILE", "latest_checkpoint", "load_heads", "load_heads_file",
           "load_training_state", "save_checkpoint"]
