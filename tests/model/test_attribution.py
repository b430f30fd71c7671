"""The attention an answer paid each memory token (what `Answer.cited` ranks by) equals the
float64 reference's explicit attention probabilities."""

from __future__ import annotations

import pytest
import torch

from streamvxl.model.attribution import memory_attention, span_weights
from streamvxl.model.cache import rotate_memory
from streamvxl.testing import random_videoxl
from tests.model.reference import ref_forward, ref_from_videoxl

# Shapes: L layers, G kv heads, M memory tokens, T chunk tokens, C hidden, D head_dim.


def test_memory_attention_is_the_reference_attention() -> None:
    model = random_videoxl(seed=5).double()
    ref = ref_from_videoxl(model)
    gen = torch.Generator().manual_seed(0)
    llm = model.config.llm
    m, t = 9, 7
    keys = torch.randn(llm.num_hidden_layers, llm.num_key_value_heads, m, llm.dim_per_head,
                       generator=gen, dtype=torch.float64)  # (L, G, M, D) pre-RoPE
    values = torch.randn(keys.shape, generator=gen, dtype=torch.float64)
    chunk = torch.randn(t, llm.hidden_size, generator=gen, dtype=torch.float64)  # (T, C)
    rows = torch.tensor([1, 3, 4])
    probs: list[torch.Tensor] = []
    ref_forward(ref, keys, values, chunk, torch.zeros(t, dtype=torch.bool), probs)
    expected = torch.stack(probs)[:, :, rows].mean(2)  # (L, H, M+T)
    got = memory_attention(model, rotate_memory(keys[:, None], llm.rope_theta), values[:, None],
                           chunk[None], rows)
    assert got.shape == (llm.num_hidden_layers, llm.num_attention_heads, m + t)
    assert torch.allclose(got.double().cpu(), expected, atol=1e-6, rtol=0)
    # causal: no row looks past itself
    assert got[..., m + rows.max() + 1:].abs().max() == 0


def test_span_weights_are_the_best_heads_sum_over_each_span() -> None:
    gen = torch.Generator().manual_seed(1)
    mass = torch.rand(3, 4, 20, generator=gen)  # (L, H, M+T)
    bounds = [(2, 5), (5, 6), (9, 17), (17, 17)]
    got = span_weights(mass, bounds)
    for s, (a, b) in enumerate(bounds):  # the slow way: every layer and head in turn
        best = max(float(mass[lay, h, a:b].sum()) for lay in range(3) for h in range(4))
        assert got[s].item() == pytest.approx(best, abs=1e-6)
    assert span_weights(mass, []).shape == (0,)
