"""`VideoXL`: Qwen2 + VST parameters + CLIP tower + projector, under the checkpoint's names.

The module holds weights only; the interval encoder and generation are free functions
(`streamvxl.model.encoder`, `streamvxl.model.generate`) that take it as an argument.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPVisionConfig

from .config import VideoXLConfig
from .decoder import Decoder
from .frame_time import STAMP_TOKENS
from .vision import FrameTokens, VisionTower, build_projector, pool_patches, stack_patches

# Shapes: N frames, T tokens per frame, C hidden, V vocabulary, S image side.


class MultimodalDecoder(Decoder):
    """The decoder plus ``vision_tower`` and ``mm_projector`` (keys ``model.vision_tower...``)."""

    def __init__(self, cfg: VideoXLConfig, vision: CLIPVisionConfig | None) -> None:
        super().__init__(cfg.llm)
        if cfg.visual is not None:
            if vision is None:
                raise ValueError("a visual config needs a vision tower config")
            self.vision_tower = VisionTower(vision, cfg.visual.select_layer)
            self.mm_projector = build_projector(cfg.visual, cfg.llm.hidden_size)


class VideoXL(nn.Module):
    """A Video-XL model. ``model.*`` is the decoder (with vision), ``lm_head`` the output layer.

    Example:
        >>> from streamvxl.model import VideoXL, tiny_config
        >>> cfg, vision = tiny_config()
        >>> m = VideoXL(cfg, vision)
        >>> m.encode_frames(torch.randn(2, 3, 56, 56)).tokens.shape
        torch.Size([2, 4, 64])
    """

    def __init__(self, cfg: VideoXLConfig, vision: CLIPVisionConfig | None = None) -> None:
        super().__init__()
        self.config = cfg
        self.vision_config = vision
        self.model = MultimodalDecoder(cfg, vision)
        self.lm_head = nn.Linear(cfg.llm.hidden_size, cfg.llm.vocab_size, bias=False)
        if cfg.llm.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    # -- ids the layout uses (the reference appends them after the stored vocabulary) --------
    @property
    def placeholder_id(self) -> int:
        """Id of a visual-token slot in the reference's prompt layout (never embedded)."""
        return self.config.llm.vocab_size

    @property
    def vst_id(self) -> int:
        """Id of a VST in the reference's layout; embedded by ``beacon_embed_tokens[0]``."""
        return self.config.llm.vocab_size + 1

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    @property
    def has_vision(self) -> bool:
        return self.config.visual is not None

    @property
    def image_size(self) -> int:
        return self.model.vision_tower.image_size

    @property
    def visual_tokens_per_frame(self) -> int:
        """Tokens the vision path makes of one frame."""
        vc = self.vision_config
        side = vc.image_size // vc.patch_size
        stride = self.config.visual.pool_stride
        return (side // stride) ** 2

    @property
    def tokens_per_frame(self) -> int:
        """Raw tokens one frame is in the memory's windows: its visual tokens, after its time
        stamp when the model stamps frames (`VisualConfig.frame_time`)."""
        stamp = STAMP_TOKENS if self.config.visual.frame_time else 0
        return stamp + self.visual_tokens_per_frame

    def encode_frames(self, pixel_values: torch.Tensor) -> FrameTokens:
        """Preprocessed frames (N, 3, S, S) -> visual tokens (N, T, C) and CLS embeddings."""
        patches, cls = self.model.vision_tower(pixel_values.to(self.dtype))  # (N, P, Cv)
        visual = self.config.visual
        if visual.cell == "side_by_side":
            cells = stack_patches(patches, visual.pool_stride)  # (N, T, s^2 Cv)
            return FrameTokens(tokens=self.model.mm_projector(cells), embeddings=cls)
        projected = self.model.mm_projector(patches)  # (N, P, C)
        return FrameTokens(tokens=pool_patches(projected, visual.pool_stride), embeddings=cls)

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> embeddings (B, T, C)."""
        return self.model.embed_tokens(ids)

    def vst_embedding(self) -> torch.Tensor:
        """The single learned VST input embedding, (C,)."""
        return self.model.beacon_embed_tokens.weight[0]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final-normed hidden (..., C) -> logits (..., V) over the stored vocabulary."""
        return self.lm_head(hidden)


def tiny_config(vocab_size: int = 512) -> tuple[VideoXLConfig, CLIPVisionConfig]:
    """The shape of the conformance model (for tests and examples): 2 layers, 4 tokens/frame."""
    from .config import LLMConfig, VisualConfig, VSTConfig

    llm = LLMConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    rope_theta=1e6, bos_token_id=1, eos_token_id=2)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=56, patch_size=14,
                              hidden_act="quick_gelu", projection_dim=32)
    cfg = VideoXLConfig(llm=llm, visual=VisualConfig(mm_hidden_size=32),
                        vst=VSTConfig(window=40, ratios=(2, 4, 8)))
    return cfg, vision
