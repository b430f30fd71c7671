"""GPU-only paths equal their portable counterparts (run where a GPU is present)."""

from __future__ import annotations

import pytest
import torch

from streamvxl.runtime import Runtime, RuntimeConfig
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
        runtime = Runtime(model, config=RuntimeConfig(cuda_graphs=graphs))
        assert (runtime.graphs is not None) == graphs
        store = runtime.new_store()
        runtime.set_sink(store, prefix)
        runtime.compress(store, tokens, 4, 12)
        # twice: the second answer replays the graph captured by the first
        runtime.decode(store, tokens[:5], question, 5)
        outs.append(runtime.decode(store, tokens[:5], question, 12))
        if graphs:  # the in-graph greedy loop gives the same ids as the step-by-step one
            fast = runtime.decode(store, tokens[:5], question, 12, keep_logits=False)
            if dtype == torch.float32:
                ids = outs[-1].generation.ids
                assert fast.generation.ids == ids
                stop = ids[5]  # a stop token mid-answer ends it at its first occurrence
                cut = runtime.decode(store, tokens[:5], question, 12, (stop,), keep_logits=False)
                assert cut.generation.ids == ids[:ids.index(stop) + 1]
                assert cut.generation.stopped_on_eos
    eager, graph = outs
    a = torch.stack(graph.generation.step_logits)
    b = torch.stack(eager.generation.step_logits)
    if dtype == torch.float32:
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        assert graph.generation.ids == eager.generation.ids
    else:  # bf16: different summation order; the first step sees identical inputs
        assert torch.isfinite(a).all()
        n = next((i for i, (x, y) in enumerate(zip(graph.generation.ids, eager.generation.ids,
                                                    strict=True)) if x != y), len(a))
        assert n >= 1
        assert (a[:n] - b[:n]).norm() / b[:n].norm() < 2e-2


def test_graph_decoding_ignores_garbage_in_fresh_allocations() -> None:
    """Unused cache slots are masked; a NaN left in the allocator must not reach the answer."""
    model = random_videoxl(seed=4).to("cuda", torch.float32)
    poison = torch.full((64 << 20,), float("nan"), device="cuda")  # 256 MB of NaN, then freed
    del poison
    gen = torch.Generator().manual_seed(2)
    runtime = Runtime(model)
    store = runtime.new_store()
    runtime.set_sink(store, torch.randint(0, 400, (9,), generator=gen))
    runtime.compress(store, torch.randn(37, 64, generator=gen), 4, 12)
    question = torch.randint(0, 400, (6,), generator=gen)
    out = runtime.decode(store, None, question, 10)
    assert torch.isfinite(torch.stack(out.generation.step_logits)).all()
    eager = Runtime(model, config=RuntimeConfig(cuda_graphs=False))
    assert eager.decode(store, None, question, 10).generation.ids == out.generation.ids


@pytest.mark.parametrize(("t", "m"), [(40, 0), (40, 300), (1530, 2048), (1530, 4100),
                                      (7, 5000)])
def test_split_attention_equals_bottom_right_causal(t: int, m: int) -> None:
    """cuDNN memory part + causal chunk part merged by LSE == SDPA with causal_lower_right."""
    import torch.nn.functional as F
    from torch.nn.attention.bias import causal_lower_right

    from streamvxl.model import attention

    torch.manual_seed(0)
    q = torch.randn(1, 28, t, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 4, m + t, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    want = F.scaled_dot_product_attention(q.double(), k.double().repeat_interleave(7, 1),
                                          v.double().repeat_interleave(7, 1),
                                          attn_mask=causal_lower_right(t, m + t) if m else None,
                                          is_causal=m == 0)
    kernels = attention.AttentionKernels()
    got = attention.full_coverage_attention(q, k, v, kernels)
    assert (got.double() - want).norm() / want.norm() < 1e-2
    if m >= attention.BUCKET:
        assert kernels.split_ok is True, "the cuDNN split path should run on this GPU"
    portable = attention.full_coverage_attention(q, k, v)
    assert (portable.double() - want).norm() / want.norm() < 1e-2


@pytest.mark.parametrize("length", [1, 7, 32, 33, 200, 300])
def test_captured_question_pass_equals_eager(length: int) -> None:
    """The question's queries from a graph replay (padded to its bucket) equal the eager pass,
    on a second replay and with another memory copied in; past the last bucket it is eager."""
    from streamvxl.memory.recall import digest_layers
    from streamvxl.model.queries import QueryGraphs, question_queries

    model = random_videoxl(seed=5).to("cuda", torch.float32)
    layers = digest_layers(model.config.llm.num_hidden_layers)
    graphs = QueryGraphs(model, layers)
    gen = torch.Generator().manual_seed(length)
    llm = model.config.llm
    shape = (llm.num_hidden_layers, 1, llm.num_key_value_heads, 11, llm.dim_per_head)
    for _ in range(2):
        mem_k, mem_v = (torch.randn(shape, generator=gen).cuda() for _ in range(2))
        ids = torch.randint(0, 400, (length,), generator=gen)
        eager = question_queries(model, mem_k, mem_v, ids, layers)
        torch.testing.assert_close(graphs(mem_k, mem_v, ids), eager, atol=1e-4, rtol=1e-4)
    assert (len(graphs._graphs) == 1) == (length <= QueryGraphs.BUCKETS[-1])
