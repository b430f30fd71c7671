"""Checkpoint config mapping: what is accepted, what is refused with a clear error."""

from __future__ import annotations

import pytest

from streamvxl.errors import CheckpointError
from streamvxl.model.config import from_checkpoint_dict

LLAMA = {"model_type": "llama", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


def test_llama_maps_to_qwen2_without_bias() -> None:
    cfg = from_checkpoint_dict({**LLAMA, "rope_parameters": {"rope_type": "default",
                                                             "rope_theta": 5e4}})
    assert not cfg.llm.attention_bias and cfg.llm.rope_theta == 5e4 and cfg.visual is None


@pytest.mark.parametrize("key", ["rope_scaling", "rope_parameters"])
def test_scaled_rope_is_refused(key: str) -> None:
    with pytest.raises(CheckpointError, match=key):
        from_checkpoint_dict({**LLAMA, key: {"rope_type": "llama3", "factor": 8.0}})


def test_wrong_types_are_checkpoint_errors() -> None:
    with pytest.raises(CheckpointError, match="num_attention_heads"):
        from_checkpoint_dict({**LLAMA, "num_attention_heads": "4"})
    with pytest.raises(CheckpointError, match="invalid model shape"):
        from_checkpoint_dict({**LLAMA, "num_key_value_heads": 3})


def test_a_cells_pooling_mode_round_trips_and_unknown_modes_are_refused(tmp_path) -> None:
    """``mm_spatial_pool_mode``: "average" (Video-XL) and "concat" (side-by-side cells) are
    read and written back through a saved checkpoint; anything else is a CheckpointError."""
    import torch
    from transformers import CLIPVisionConfig

    from streamvxl.model.loading import load_videoxl
    from streamvxl.model.saving import checkpoint_config, save_videoxl
    from streamvxl.model.videoxl import VideoXL

    visual = {"mm_hidden_size": 16, "mm_vision_tower": "vision_tower"}
    assert from_checkpoint_dict({**LLAMA, **visual}).visual.cell == "average"
    for mode, cell in (("average", "average"), ("concat", "side_by_side")):
        cfg = from_checkpoint_dict({**LLAMA, **visual, "mm_spatial_pool_mode": mode})
        assert cfg.visual.cell == cell
        vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, image_size=32, patch_size=8)
        model = VideoXL(cfg, vision)
        assert checkpoint_config(model)["mm_spatial_pool_mode"] == mode
        folder = save_videoxl(model, tmp_path / mode)
        loaded = load_videoxl(folder, device="cpu", dtype=torch.float32)
        assert loaded.config.visual == cfg.visual
        assert loaded.model.mm_projector[0].in_features == (64 if cell == "side_by_side" else 16)
    with pytest.raises(CheckpointError, match="mm_spatial_pool_mode 'max'"):
        from_checkpoint_dict({**LLAMA, **visual, "mm_spatial_pool_mode": "max"})
