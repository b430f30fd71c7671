"""Decoder building blocks: fused q/k/v projection and the one-token RoPE matrix."""

from __future__ import annotations

import torch

from streamvxl.model.cache import RotatedCache
from streamvxl.model.generate import decode_one_token, prefill
from streamvxl.model.rope import Rotation, apply_rope, rope_cos_sin
from streamvxl.testing import random_videoxl


def test_fused_qkv_gives_the_same_answer() -> None:
    """A cache carrying the fused q/k/v snapshot (what graph decoding uses) computes what the
    three separate projections compute, prefill and one-token steps alike."""
    model = random_videoxl(seed=5).double()
    llm = model.config.llm
    fused = [layer.self_attn.fused_weights() for layer in model.model.layers]
    gen = torch.Generator().manual_seed(1)
    memory = [torch.randn(llm.num_hidden_layers, 1, llm.num_key_value_heads, 9,
                          llm.dim_per_head, generator=gen, dtype=torch.float64) for _ in range(2)]
    prompt = torch.randn(1, 5, llm.hidden_size, generator=gen, dtype=torch.float64)
    outs = []
    for snapshot in (None, fused):
        cache = RotatedCache(llm.num_hidden_layers, 1, llm.num_key_value_heads,
                             llm.dim_per_head, 32, torch.float64, torch.device("cpu"))
        cache.fused_qkv = snapshot
        cache.load(*memory)
        logits = prefill(model, cache, prompt, all_logits=True)  # (1, 5, V)
        step = decode_one_token(model, cache, logits[:, -1].argmax(-1))  # (1, V)
        outs.append((logits, step))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-10, rtol=0)
    torch.testing.assert_close(outs[1][1], outs[0][1], atol=1e-10, rtol=0)


def test_one_token_rotation_matrix_equals_rotate_half() -> None:
    x = torch.randn(2, 4, 1, 16, dtype=torch.float64)
    for pos in (0, 7, 12345):
        p = torch.tensor([pos])
        rot = Rotation(p, 16, 1e6, torch.float64)
        cos, sin = rope_cos_sin(p, 16, 1e6, torch.float64)
        torch.testing.assert_close(rot(x), apply_rope(x, cos, sin), atol=1e-12, rtol=0)
        torch.testing.assert_close(rot.queries(x), apply_rope(x, cos, sin) / 4, atol=1e-12,
                                   rtol=0)
