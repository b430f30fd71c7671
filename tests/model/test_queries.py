"""A question's queries: what the captured pass relies on, checked on the CPU."""

from __future__ import annotations

import torch

from streamvxl.memory.recall import digest_layers
from streamvxl.model.queries import _pass, question_queries
from streamvxl.testing import random_videoxl


def test_padding_after_the_question_leaves_its_queries_alone() -> None:
    """`QueryGraphs` pads a question to its bucket at the end: causal attention must keep
    every real row's queries exactly what the unpadded pass computes."""
    model = random_videoxl(seed=6)
    llm = model.config.llm
    layers = digest_layers(llm.num_hidden_layers)
    gen = torch.Generator().manual_seed(0)
    shape = (llm.num_hidden_layers, 1, llm.num_key_value_heads, 9, llm.dim_per_head)
    mem_k, mem_v = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    ids = torch.randint(1, 400, (13,), generator=gen)
    padded = torch.cat((ids, torch.zeros(19, dtype=torch.long)))
    plain = _pass(model, mem_k, mem_v, ids, layers, None)  # (L', T, H*D)
    long = _pass(model, mem_k, mem_v, padded, layers, None)
    torch.testing.assert_close(long[:, :13], plain, atol=1e-5, rtol=1e-5)


def test_question_queries_are_the_last_rows_in_the_kept_layers() -> None:
    model = random_videoxl(seed=6)
    llm = model.config.llm
    layers = digest_layers(llm.num_hidden_layers)
    ids = torch.arange(3, 10)
    rows = _pass(model, None, None, ids, layers, None)
    q = question_queries(model, None, None, ids, layers)
    kept = len(range(llm.num_hidden_layers)[layers])
    assert q.shape == (kept, llm.num_attention_heads, llm.dim_per_head)
    assert q.dtype == torch.float32
    torch.testing.assert_close(q.flatten(1), rows[:, -1].float())
