"""Write a `VideoXL` as a Video-XL checkpoint folder that `load_videoxl` (and the reference) read."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import save_file

from .config import POOL_MODES
from .videoxl import VideoXL


def checkpoint_config(model: VideoXL) -> dict:
    """The ``config.json`` of a Video-XL (``llava_qwen``) checkpoint for this model."""
    cfg = model.config
    llm = asdict(cfg.llm)
    out = {
        "architectures": ["LlavaQwenForCausalLM"],
        "model_type": "llava_qwen",
        "hidden_act": "silu",
        "vocab_size": llm["vocab_size"],
        "hidden_size": llm["hidden_size"],
        "intermediate_size": llm["intermediate_size"],
        "num_hidden_layers": llm["num_hidden_layers"],
        "num_attention_heads": llm["num_attention_heads"],
        "num_key_value_heads": llm["num_key_value_heads"],
        "rms_norm_eps": llm["rms_norm_eps"],
        "rope_theta": llm["rope_theta"],
        "tie_word_embeddings": llm["tie_word_embeddings"],
        "bos_token_id": llm["bos_token_id"],
        "eos_token_id": llm["eos_token_id"],
        "torch_dtype": str(model.dtype).removeprefix("torch."),
        "enable_beacon": True,
        "beacon_window": cfg.vst.window,
        "beacon_stride": cfg.vst.window,
        "beacon_ratio": list(cfg.vst.ratios),
        "beacon_pos": "interleave",
        "beacon_attn": "full-coverage",
        "beacon_param": ["q", "k", "v"],
        "beacon_embed_init": cfg.vst.embed_init,
        "beacon_accum": True,
        "beacon_sink_size": 0,
    }
    if llm["head_dim"] is not None:
        out["head_dim"] = llm["head_dim"]
    if cfg.visual is not None:
        out.update({
            "mm_hidden_size": cfg.visual.mm_hidden_size,
            "mm_vision_select_layer": cfg.visual.select_layer,
            "mm_vision_select_feature": "patch",
            "mm_projector_type": cfg.visual.projector_type,
            "mm_spatial_pool_stride": cfg.visual.pool_stride,
            "mm_spatial_pool_mode": {v: k for k, v in POOL_MODES.items()}[cfg.visual.cell],
            "mm_vision_tower": "vision_tower",
        })
        if cfg.visual.frame_time:  # streamvxl's own key, absent from Video-XL's checkpoints
            out["mm_frame_time"] = True
    return out


def save_videoxl(model: VideoXL, path: str | os.PathLike) -> Path:
    """Save config.json, model.safetensors and the vision tower's config folder."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(checkpoint_config(model), indent=2))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.llm.tie_word_embeddings:
        state.pop("lm_head.weight")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if model.vision_config is not None:
        tower = folder / "vision_tower"
        tower.mkdir(exist_ok=True)
        model.vision_config.to_json_file(str(tower / "config.json"))
    return folder
