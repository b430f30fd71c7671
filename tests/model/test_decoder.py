"""Decoder building blocks: fused q/k/v projection and the one-token RoPE matrix."""

from __future__ import annotations

import copy

import torch

from streamvxl.memory.engine import MemoryEngine
from streamvxl.model.rope import Rotation, apply_rope, rope_cos_sin
from streamvxl.testing import random_videoxl


def test_fused_qkv_gives_the_same_answer() -> None:
    model = random_videoxl(seed=5).double()
    fused = copy.deepcopy(model)
    for layer in fused.model.layers:
        layer.self_attn.fused_qkv = layer.self_attn.fused_weights()
    gen = torch.Generator().manual_seed(1)
    prefix, question = torch.randint(0, 400, (6,), generator=gen), torch.randint(0, 400, (5,),
                                                                                  generator=gen)
    tokens = torch.randn(30, 64, generator=gen, dtype=torch.float64)
    outs = []
    for m in (model, fused):
        engine = MemoryEngine.for_model(m, window=12)
        engine.set_prefix(prefix)
        engine.compress(tokens, 3, t_start=0, t_end=1, frame_start=0, frame_end=0)
        outs.append(engine.answer(tokens[:4], question, 4, all_logits=True))
    torch.testing.assert_close(outs[1].prefill_logits, outs[0].prefill_logits, atol=1e-10, rtol=0)
    assert outs[1].generation.ids == outs[0].generation.ids


def test_one_token_rotation_matrix_equals_rotate_half() -> None:
    x = torch.randn(2, 4, 1, 16, dtype=torch.float64)
    for pos in (0, 7, 12345):
        p = torch.tensor([pos])
        rot = Rotation(p, 16, 1e6, torch.float64)
        cos, sin = rope_cos_sin(p, 16, 1e6, torch.float64)
        torch.testing.assert_close(rot(x), apply_rope(x, cos, sin), atol=1e-12, rtol=0)
        torch.testing.assert_close(rot.queries(x), apply_rope(x, cos, sin) / 4, atol=1e-12,
                                   rtol=0)
