"""The vision tower runs only the layers it needs and still equals HF's full forward."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig

from streamvxl.model.vision import VisionTower


@pytest.mark.parametrize("select_layer", [-2, -1, 1, 3])
def test_truncated_tower_equals_hf_hidden_state(select_layer: int) -> None:
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=2, image_size=56, patch_size=14,
                           hidden_act="quick_gelu")
    tower = VisionTower(cfg, select_layer).double().eval()
    pixels = torch.randn(3, 3, 56, 56, dtype=torch.float64)
    with torch.no_grad():
        patches, cls = tower(pixels)
        full = tower.vision_tower(pixels, output_hidden_states=True).hidden_states[select_layer]
    assert tower.layers_needed == select_layer % 4
    torch.testing.assert_close(patches, full[:, 1:], rtol=0, atol=1e-12)
    torch.testing.assert_close(cls, full[:, 0], rtol=0, atol=1e-12)


def test_unused_layers_do_not_change_the_features() -> None:
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=2, image_size=56, patch_size=14)
    tower = VisionTower(cfg, -2).eval()
    pixels = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        before = tower(pixels)[0].clone()
        tower.vision_tower.vision_model.encoder.layers[-1].mlp.fc1.weight.mul_(5.0)
        assert torch.equal(tower(pixels)[0], before)


def _stack_by_loops(features: torch.Tensor, stride: int) -> torch.Tensor:
    """Each cell's patches side by side, by explicit indices (the slow, obvious way)."""
    n, p, c = features.shape
    side = int(round(p ** 0.5))
    g = side // stride
    out = torch.empty(n, g * g, stride * stride * c, dtype=features.dtype)
    for f in range(n):
        for row in range(g):
            for col in range(g):
                parts = [features[f, (row * stride + dy) * side + col * stride + dx]
                         for dy in range(stride) for dx in range(stride)]
                out[f, row * g + col] = torch.cat(parts)
    return out


@pytest.mark.parametrize("stride, side", [(2, 8), (2, 4), (3, 6), (1, 3)])
def test_stacked_cells_hold_their_patches_in_row_major_order(stride: int, side: int) -> None:
    from streamvxl.model.vision import pool_patches, stack_patches

    features = torch.randn(2, side * side, 5, dtype=torch.float64)
    stacked = stack_patches(features, stride)  # (N, T, s^2 C)
    assert torch.equal(stacked, _stack_by_loops(features, stride))
    # the average of a cell's parts is what an averaging cell makes of it
    parts = stacked.reshape(2, -1, stride * stride, 5).mean(dim=2)
    torch.testing.assert_close(parts, pool_patches(features, stride), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="cells"):
        stack_patches(torch.randn(1, 7 * 7, 5), 2)


def test_a_side_by_side_cell_projects_each_cells_patches_at_once() -> None:
    """encode_frames of a side-by-side model = its projector over the tower's cells stacked by
    loops; the projector reads 4 x the tower's width; the averaging model is Video-XL's."""
    from streamvxl.model.config import LLMConfig, VideoXLConfig, VisualConfig
    from streamvxl.model.videoxl import VideoXL

    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=8)
    llm = LLMConfig(vocab_size=64, hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=1)
    cfg = VideoXLConfig(llm=llm, visual=VisualConfig(mm_hidden_size=16, cell="side_by_side"))
    model = VideoXL(cfg, vision).double().eval()
    assert model.model.mm_projector[0].in_features == 4 * 16 and model.tokens_per_frame == 4
    pixels = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        got = model.encode_frames(pixels)
        patches, cls = model.model.vision_tower(pixels)  # (N, 16, 16)
        want = model.model.mm_projector(_stack_by_loops(patches, 2))
    assert got.tokens.shape == (3, 4, 24)
    torch.testing.assert_close(got.tokens, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.embeddings, cls, rtol=0, atol=0)
