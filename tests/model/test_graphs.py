"""CUDA-graph decoding equals eager decoding (runs where a GPU is present)."""

from __future__ import annotations

import pytest
import torch

from streamvxl.memory.engine import MemoryEngine
from streamvxl.testing import random_videoxl

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graph_decode_equals_eager(dtype: torch.dtype) -> None:
    model = random_videoxl(seed=3).to("cuda", dtype)
    gen = torch.Generator().manual_seed(0)
    prefix = torch.randint(0, 400, (9,), generator=gen)
    tokens = torch.randn(37, 64, generator=gen)
    question = torch.randint(0, 400, (6,), generator=gen)
    outs = []
    for graphs in (False, True):
        engine = MemoryEngine.for_model(model, window=12)
        engine.cuda_graphs = graphs
        engine.set_prefix(prefix)
        engine.compress(tokens, 4, t_start=0, t_end=1, frame_start=0, frame_end=0)
        # twice: the second answer replays the graph captured by the first
        engine.answer(tokens[:5], question, 5)
        outs.append(engine.answer(tokens[:5], question, 12))
    eager, graph = outs
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(torch.stack(graph.generation.step_logits),
                               torch.stack(eager.generation.step_logits), atol=tol, rtol=0)
    if dtype == torch.float32:
        assert graph.generation.ids == eager.generation.ids
