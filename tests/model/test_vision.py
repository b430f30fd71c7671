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
