"""What a memory's keys and values were computed under, as a digest a log is checked against.

Stored K/V are only meaningful to the model that made them: the same frames through other
weights, another config or another dtype give other keys. A log records the `ModelIdentity` of
the runtime that wrote it, and opening it under a different one is refused (`check_identity`)
instead of answering from keys the model cannot read.

The digest covers every weight that feeds the LLM's keys and values -- the vision tower, the
projector, the embeddings, every decoder layer with its VST projections -- and leaves out the
two that act only after the last layer (the final norm and ``lm_head``: changing them changes
answers, not memories). It is device-independent: the tensors' bytes are hashed on the host, so
a log written on a GPU opens on a CPU in the same dtype.

How frames become pixels shapes the keys too, and is not in the weights: the same model reads a
wide frame centre-cropped or padded (`Preprocessor.fit`). A log records its writer's
preprocessing beside the digest (`preprocess_record`) and opening it under another is refused
(`check_preprocess`), so one memory never mixes cropped and padded intervals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ..errors import MemoryFileError, ModelMismatchError
from ..preprocess import Preprocessor

# Parameters that act after the last decoder layer: they never shape a key or a value.
AFTER_LAST_LAYER = ("lm_head.weight", "model.norm.weight")
HASH_CHUNK = 64 << 20
"""Bytes copied to the host and hashed at a time (bounds the host memory the digest needs)."""


@dataclass(frozen=True)
class ModelIdentity:
    """The digest of what shapes a memory's K/V, with the facts a person can compare."""

    digest: str
    """sha256 over the config, the dtype and every K/V-shaping weight (hex)."""
    dtype: str
    """The model's dtype, e.g. ``"bfloat16"``."""
    summary: str
    """What the model is, in a few words (for error messages)."""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> ModelIdentity:
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str)
                                              for k in ("digest", "dtype", "summary")):
            raise MemoryFileError(f"the log's model identity is malformed: {d!r}")
        return cls(d["digest"], d["dtype"], d["summary"])


def model_identity(model: torch.nn.Module, config: object, threads: int = 8) -> ModelIdentity:
    """Hash ``model``'s K/V-shaping weights (see the module docstring) and ``config`` (a
    dataclass). Tensors are hashed in parallel (hashlib releases the GIL), so a 7B model takes
    seconds, once per runtime."""
    tensors = [(name, t) for name, t in model.named_parameters()
               if name not in AFTER_LAST_LAYER]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        digests = list(pool.map(lambda item: _tensor_digest(item[1]), tensors))
    h = hashlib.sha256()
    config_json = json.dumps(_hashed_config(config), sort_keys=True, default=str)
    h.update(config_json.encode())
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    h.update(dtype.encode())
    for (name, t), d in zip(tensors, digests, strict=True):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(d)
    params = sum(t.numel() for _, t in tensors)
    llm = getattr(config, "llm", None)
    shape = (f"{llm.num_hidden_layers} layers x {llm.hidden_size}" if llm is not None else "")
    return ModelIdentity(h.hexdigest(), dtype,
                         f"{params / 1e6:.1f}M K/V-shaping parameters, {shape}, {dtype}")


LATER_FIELDS = {("visual", "frame_time"): False}
"""Config fields added after logs were first written, with the value every earlier model had:
hashed only when set otherwise, so that memories written before them still open."""


def _hashed_config(config: object) -> dict:
    cfg = dataclasses.asdict(config)  # type: ignore[call-overload]
    for (part, name), default in LATER_FIELDS.items():
        section = cfg.get(part)
        if isinstance(section, dict) and section.get(name, default) == default:
            section.pop(name, None)
    return cfg


def check_identity(written: ModelIdentity, current: ModelIdentity, where: str) -> None:
    """Refuse a memory written under another model.

    Raises:
        ModelMismatchError: naming what differs and both sides.
    """
    if written.digest == current.digest:
        return
    if written.dtype != current.dtype:
        raise ModelMismatchError(
            f"{where} was written in {written.dtype}; this model runs in {current.dtype}. Load "
            f"the model with dtype={written.dtype} to open it (keys differ between dtypes)")
    raise ModelMismatchError(
        f"{where} was written under another model: written under {written.summary} (digest "
        f"{written.digest[:16]}), opened under {current.summary} (digest "
        f"{current.digest[:16]}). Open it with the model that wrote it; its keys and values "
        "mean nothing to another one")


def preprocess_record(preprocessor: Preprocessor | None) -> dict[str, object] | None:
    """``preprocessor`` as the plain data a log records (None: a model without vision)."""
    if preprocessor is None:
        return None
    return {"image_size": preprocessor.image_size, "mean": list(preprocessor.mean),
            "std": list(preprocessor.std), "fit": preprocessor.fit}


def check_preprocess(written: dict[str, object] | None, current: Preprocessor | None,
                     where: str) -> None:
    """Refuse a memory whose frames were preprocessed otherwise than this runtime's would be.

    A log written before streamvxl recorded its preprocessing (``written`` None) is opened
    unchecked: its writer used what the model's weights said, as this runtime does unless it
    was given another `Preprocessor`.

    Raises:
        ModelMismatchError: naming the fields that differ, both sides, and the fix.
    """
    now = preprocess_record(current)
    if written is None or now is None:
        return
    differ = sorted(k for k in set(written) | set(now) if written.get(k) != now.get(k))
    if not differ:
        return
    sides = "; ".join(f"{k}: written {written.get(k)!r}, this runtime {now.get(k)!r}"
                      for k in differ)
    raise ModelMismatchError(
        f"{where} was written from frames preprocessed otherwise ({sides}): its keys and "
        "values would mix with ones this runtime makes. Open it with a runtime built with the "
        "writer's preprocessing (`Runtime(..., preprocessor=Preprocessor(...))`; in `streamvxl "
        "serve`, the `[model] fit` it was written with)")


def _tensor_digest(t: torch.Tensor) -> bytes:
    flat = t.detach().reshape(-1)
    h = hashlib.sha256()
    step = max(1, HASH_CHUNK // max(1, flat.element_size()))
    for s in range(0, flat.numel(), step):
        chunk = flat[s:s + step].contiguous().cpu()
        h.update(chunk.view(torch.uint8).numpy())  # the raw bytes, any dtype
    return h.digest()


__all__ = ["ModelIdentity", "check_identity", "check_preprocess", "model_identity",
           "preprocess_record"]
