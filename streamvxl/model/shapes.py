"""Named model shapes (a config table) and random weights for them: full-size work with no
download (benchmarks, scaling runs of the training recipe) and tiny work in tests.

Example:
    >>> cfg, vision = model_shape("videoxl-7b")
    >>> cfg.llm.num_hidden_layers, vision.image_size
    (28, 336)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import CLIPVisionConfig

from .config import LLMConfig, VideoXLConfig, VisualConfig, VSTConfig
from .loading import KNOWN_VISION_TOWERS
from .videoxl import VideoXL, tiny_config


def videoxl_7b() -> tuple[VideoXLConfig, CLIPVisionConfig]:
    """Qwen2-7B dims, CLIP-L/336 tower (24x24 patches -> 144 tokens/frame), 1440-token window."""
    llm = LLMConfig(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                    num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                    rope_theta=1e6, bos_token_id=None, eos_token_id=151645)
    vision = CLIPVisionConfig(**KNOWN_VISION_TOWERS["openai/clip-vit-large-patch14-336"])
    cfg = VideoXLConfig(llm=llm, visual=VisualConfig(mm_hidden_size=1024),
                        vst=VSTConfig(window=1440, ratios=(2, 4, 8, 16)))
    return cfg, vision


SHAPES: dict[str, Callable[[], tuple[VideoXLConfig, CLIPVisionConfig]]] = {
    "videoxl-7b": videoxl_7b,
    "tiny": tiny_config,
}
"""Shape name -> (model config, vision config)."""


def model_shape(name: str) -> tuple[VideoXLConfig, CLIPVisionConfig]:
    """The configs of a named shape; ValueError naming the known ones otherwise."""
    if name not in SHAPES:
        raise ValueError(f"unknown model shape {name!r}; known: {', '.join(SHAPES)}")
    return SHAPES[name]()


def random_model(cfg: VideoXLConfig, vision: CLIPVisionConfig, device: torch.device | str,
                 dtype: torch.dtype, seed: int = 0) -> VideoXL:
    """Build directly on ``device`` in ``dtype`` with random weights (norm weights 1, all else
    N(0, 0.02)): the FLOPs of the real model, nothing to carry.

    The draw depends only on ``seed`` and the device type, so every process of a distributed
    run builds the same model before sharding it.
    """
    torch.manual_seed(seed)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = VideoXL(cfg, vision)
    finally:
        torch.set_default_dtype(prev)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    return model.eval()


__all__ = ["SHAPES", "model_shape", "random_model", "videoxl_7b"]
