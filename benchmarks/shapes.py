"""Model shapes for benchmarks: Video-XL-7B (Qwen2-7B + CLIP-L/336) and the tiny test shape."""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig

from streamvxl.model import LLMConfig, VideoXL, VideoXLConfig, VisualConfig, VSTConfig
from streamvxl.model.loading import KNOWN_VISION_TOWERS


def videoxl_7b() -> tuple[VideoXLConfig, CLIPVisionConfig]:
    """Qwen2-7B dims, CLIP-L/336 tower (24x24 patches -> 144 tokens/frame), 1440-token window."""
    llm = LLMConfig(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                    num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                    rope_theta=1e6, bos_token_id=None, eos_token_id=151645)
    vision = CLIPVisionConfig(**KNOWN_VISION_TOWERS["openai/clip-vit-large-patch14-336"])
    cfg = VideoXLConfig(llm=llm, visual=VisualConfig(mm_hidden_size=1024),
                        vst=VSTConfig(window=1440, ratios=(2, 4, 8, 16)))
    return cfg, vision


def random_model(cfg: VideoXLConfig, vision: CLIPVisionConfig, device: torch.device,
                 dtype: torch.dtype, seed: int = 0) -> VideoXL:
    """Build directly on ``device`` in ``dtype`` with random weights (same FLOPs, no download)."""
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
