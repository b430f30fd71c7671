"""Load a Video-XL checkpoint folder (or a plain Qwen2/Llama one) into `VideoXL`.

No renaming step: the module's parameter names are the checkpoint's. Load-time behaviour of the
reference that changes outputs is reproduced: missing VST weights start as copies of q/k/v and of
the EOS embedding row; placeholder and VST ids sit right after the stored vocabulary (see
`VideoXL.placeholder_id`). The reference's extra embedding/lm_head row (a random row added by
``resize_token_embeddings``) is *not* added: it never carries information, and leaving it out means
an answer can never contain a token the tokenizer cannot decode.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import CLIPVisionConfig

from ..errors import CheckpointError
from .config import VideoXLConfig, from_checkpoint_dict
from .videoxl import VideoXL

log = logging.getLogger(__name__)

VISION_PREFIX = "model.vision_tower.vision_tower."

# Vision towers a checkpoint may name by hub id. No hub is reachable here, and the real Video-XL
# checkpoint stores the tower's weights in its own safetensors, so the shape is all we need.
KNOWN_VISION_TOWERS: dict[str, dict] = {
    "openai/clip-vit-large-patch14-336": dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, hidden_act="quick_gelu", projection_dim=768),
    "openai/clip-vit-large-patch14": dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=224, patch_size=14, hidden_act="quick_gelu", projection_dim=768),
}


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder; pass the checkpoint folder that holds "
                              "config.json and *.safetensors")
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json; is it a Video-XL/Qwen2 checkpoint "
                              "folder?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e


def safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{index} is not a valid safetensors index (needs a "
                                  f"'weight_map' of tensor -> shard file): {e}") from e
        return [folder / s for s in shards]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no *.safetensors weights (pytorch .bin files are "
                              "not read: they would need unpickling)")
    return files


def read_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"weight shard {f} named by the index is missing")
        try:
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():  # noqa: SIM118 - safe_open is not a dict
                    tensors[key] = fh.get_tensor(key)
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read {f}: {e}") from e
    return tensors


def vision_config(cfg: dict, folder: Path) -> CLIPVisionConfig:
    """Resolve ``mm_vision_tower``: a folder (next to the checkpoint or cwd) or a known hub id."""
    if "vision_config" in cfg:  # streamvxl's own checkpoints embed it
        return CLIPVisionConfig(**cfg["vision_config"])
    name = cfg.get("mm_vision_tower")
    if name is None:
        raise CheckpointError(f"{folder}/config.json has mm_hidden_size but no mm_vision_tower")
    for base in (folder, Path.cwd()):
        cand = base / name
        if (cand / "config.json").is_file():
            return CLIPVisionConfig.from_pretrained(str(cand))
    if name in KNOWN_VISION_TOWERS:
        return CLIPVisionConfig(**KNOWN_VISION_TOWERS[name])
    raise CheckpointError(
        f"vision tower {name!r} (mm_vision_tower) is neither a folder with config.json next to "
        f"{folder} nor a known tower ({', '.join(KNOWN_VISION_TOWERS)}); copy the tower folder "
        "into the checkpoint folder")


def _vision_weights_from_folder(cfg: dict, folder: Path) -> dict[str, torch.Tensor]:
    name = cfg.get("mm_vision_tower", "")
    for base in (folder, Path.cwd()):
        cand = base / name
        if cand.is_dir() and list(cand.glob("*.safetensors")):
            raw = read_tensors(safetensors_files(cand))
            return {VISION_PREFIX + k: v for k, v in raw.items()}
    return {}


def fill_missing_vst(model: VideoXL, state: dict[str, torch.Tensor]) -> list[str]:
    """Initialise absent VST weights as Video-XL does: beacon q/k/v <- q/k/v, embed <- EOS row."""
    filled = []
    for i in range(model.config.llm.num_hidden_layers):
        pre = f"model.layers.{i}.self_attn."
        for p in ("q", "k", "v"):
            for kind in ("weight", "bias"):
                key, src = f"{pre}beacon_{p}_proj.{kind}", f"{pre}{p}_proj.{kind}"
                if key not in state and src in state:
                    state[key] = state[src].clone()
                    filled.append(key)
    key = "model.beacon_embed_tokens.weight"
    if key not in state and "model.embed_tokens.weight" in state:
        eos = model.config.llm.eos_ids
        if model.config.vst.embed_init == "eos" and eos:
            state[key] = state["model.embed_tokens.weight"][eos[0]][None].clone()
        else:
            state[key] = torch.randn(1, model.config.llm.hidden_size) * 0.02
        filled.append(key)
    return filled


def load_state(model: VideoXL, state: dict[str, torch.Tensor], where: str) -> None:
    """Copy ``state`` into the model: zero q/k/v bias for Llama, VST fill-in, strict checking."""
    llm = model.config.llm
    for i in range(llm.num_hidden_layers):
        for p in ("q", "k", "v"):
            key = f"model.layers.{i}.self_attn.{p}_proj.bias"
            if key not in state and not llm.attention_bias:
                state[key] = torch.zeros(getattr(model.model.layers[i].self_attn,
                                                 f"{p}_proj").out_features)
    filled = fill_missing_vst(model, state)
    if filled:
        log.info("%s: %d VST weights absent, initialised from q/k/v and the EOS row", where,
                 len(filled))
    if llm.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    expected = model.state_dict()
    if llm.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{where} lacks {len(missing)} weights, e.g. {missing[:4]}; is it "
                              "the checkpoint that config.json describes?")
    for key, param in expected.items():
        if tuple(state[key].shape) != tuple(param.shape):
            raise CheckpointError(f"{where}: {key} has shape {tuple(state[key].shape)}, config "
                                  f"implies {tuple(param.shape)}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        log.warning("%s: ignoring %d unexpected weights, e.g. %s", where, len(unexpected),
                    unexpected[:4])
    model.load_state_dict({k: state[k] for k in expected}, strict=not llm.tie_word_embeddings)


def empty_model(cfg: VideoXLConfig, vision: CLIPVisionConfig | None) -> VideoXL:
    """A float32 CPU `VideoXL` with uninitialised parameters, built without initialising 7B
    random weights first (meta device); fill it with `load_state`."""
    with torch.device("meta"):
        model = VideoXL(cfg, vision)
    model.to_empty(device="cpu")
    if cfg.llm.tie_word_embeddings:  # to_empty gives the tied pair separate storage: re-tie
        model.lm_head.weight = model.model.embed_tokens.weight
    if model.has_vision:
        model.model.vision_tower.reset_buffers()  # non-persistent buffers are not in the state
    return model


def load_videoxl(path: str | os.PathLike, *, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None) -> VideoXL:
    """Build a `VideoXL` from a checkpoint folder.

    Args:
        path: folder with ``config.json`` and ``*.safetensors`` (sharded or not). A Video-XL
            folder names its vision tower in ``mm_vision_tower``; its weights are read from the
            main safetensors or, failing that, from the tower folder.
        device: where to put the model (default: CUDA when available, else CPU).
        dtype: parameter dtype (default: bfloat16 on CUDA, float32 on CPU).

    Raises:
        CheckpointError: the folder is not such a checkpoint; the message names what is missing.

    Example:
        >>> model = load_videoxl("VideoXL_weight_8")  # doctest: +SKIP
    """
    folder = Path(path)
    cfg_dict = read_config(folder)
    cfg: VideoXLConfig = from_checkpoint_dict(cfg_dict, where=str(folder / "config.json"))
    vision = vision_config(cfg_dict, folder) if cfg.visual is not None else None
    state = read_tensors(safetensors_files(folder))
    if cfg.visual is not None and not any(k.startswith(VISION_PREFIX) for k in state):
        state.update(_vision_weights_from_folder(cfg_dict, folder))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = empty_model(cfg, vision)
    load_state(model, state, str(folder))
    model.to(device=device, dtype=dtype).eval()
    log.info("loaded %s: %d layers, hidden %d, %s on %s", folder, cfg.llm.num_hidden_layers,
             cfg.llm.hidden_size, dtype, device)
    return model


def load_tokenizer(folder: Path):
    """The tokenizer saved in a checkpoint folder (tokenizer.json / tokenizer_config.json)."""
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                                  "vocab.json", "tokenizer.model")):
        raise CheckpointError(f"{folder} has no tokenizer files (tokenizer.json or "
                              "tokenizer_config.json); copy the model's tokenizer into it")
    import warnings

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # AutoTokenizer also parses config.json, whose llava_qwen type it does not know; the
    # warnings that causes say nothing about the tokenizer.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # transformers raises many types here
        raise CheckpointError(f"cannot load the tokenizer in {folder}: {e}") from e
    finally:
        hf_logging.set_verbosity(verbosity)
