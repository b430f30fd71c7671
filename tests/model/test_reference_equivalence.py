"""The fast path (`Runtime` over the SDPA decoder) equals the slow float64 reference.

`tests.model.reference` is an independent re-implementation (explicit mask, complex RoPE, no KV
cache in generation, its own window layout). It is itself checked against the official Video-XL
golden outputs in ``shared/conformance/`` when that folder is present.

Compared: the retained memory K/V (sink + every interval, pre-RoPE), the logits of every
open-token/question position, the per-step logits of greedy decoding, and the greedy ids (exact).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from streamvxl.model.layout import window_layout
from streamvxl.runtime import Runtime
from streamvxl.testing import random_videoxl
from tests.conftest import CONFORMANCE_DIR
from tests.model.reference import (
    RefAnswer,
    RefModel,
    empty_memory,
    ref_answer,
    ref_from_videoxl,
    ref_interval,
    ref_is_vst,
    ref_text_kv,
    ref_weights,
)

# Shapes: L layers, G kv heads, M memory tokens, D head_dim, N raw tokens, C hidden, V vocab.

F64 = torch.float64
N_NEW = 6
# Tolerances: float32 fast path vs float64 reference; a float64 model computes everything in
# float64 (norms, RoPE tables and logits included), so it must agree to rounding.
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


@pytest.fixture(scope="module")
def models() -> dict:
    """The same random tiny model in float32 and float64, plus its float64 reference weights."""
    m32 = random_videoxl(seed=11)
    return {torch.float32: m32, torch.float64: copy.deepcopy(m32).double(),
            "ref": ref_from_videoxl(m32)}


def _tokens(n: int, gen: torch.Generator) -> torch.Tensor:
    """Random visual tokens (N, 64), float32 values (so every path sees the same numbers)."""
    return torch.randn(n, 64, generator=gen)


def _run(models: dict, dtype: torch.dtype, intervals: list[tuple[int, int | None]], window: int,
         remainder: str, n_open: int, seed: int) -> dict:
    """Run the same stream through the fast path (``dtype``) and the reference."""
    gen = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, 400, (7,), generator=gen)
    raws = [_tokens(n, gen) for n, _ in intervals]
    open_tokens = _tokens(n_open, gen) if n_open else None
    question = torch.randint(0, 400, (5,), generator=gen)

    runtime = Runtime(models[dtype])
    store = runtime.new_store()
    runtime.set_sink(store, prefix)
    for i, ((_, ratio), raw) in enumerate(zip(intervals, raws, strict=True)):
        runtime.compress(store, raw, ratio, window, remainder, t_start=float(i), t_end=i + 0.5,
                         frame_start=i, frame_end=i)
    fast = runtime.decode(store, open_tokens, question, N_NEW, all_logits=True)

    ref: RefModel = models["ref"]
    mem_k, mem_v = ref_text_kv(ref, prefix)
    sizes = [mem_k.shape[2]]
    for (_, ratio), raw in zip(intervals, raws, strict=True):
        k, v = ref_interval(ref, mem_k, mem_v, raw, ratio, window, remainder)
        mem_k, mem_v = torch.cat((mem_k, k), dim=2), torch.cat((mem_v, v), dim=2)
        sizes.append(k.shape[2])
    answer = ref_answer(ref, mem_k, mem_v, open_tokens, question, N_NEW)
    return dict(store=store, fast=fast, mem_k=mem_k, mem_v=mem_v, sizes=sizes, ref=answer)


def _check(out: dict, tol_kv: float, tol_logits: float) -> dict[str, float]:
    """Assert fast == reference; returns the max differences."""
    store, fast, ref = out["store"], out["fast"], out["ref"]
    # Memory: layout (sizes per interval) exactly, then pre-RoPE K/V.
    assert [store.sink_tokens] + [r.num_tokens for r in store.records] == out["sizes"]
    fast_k = store.keys()[:, 0].to(F64)  # (L, G, M, D)
    fast_v = store.values()[:, 0].to(F64)
    assert fast_k.shape == out["mem_k"].shape
    diffs = {"k": (fast_k - out["mem_k"]).abs().max().item() if fast_k.numel() else 0.0,
             "v": (fast_v - out["mem_v"]).abs().max().item() if fast_v.numel() else 0.0}
    assert diffs["k"] <= tol_kv and diffs["v"] <= tol_kv, diffs
    # Prefill logits of every open-token and question position.
    assert fast.prefill_logits.shape == ref.prefill_logits.shape
    diffs["prefill"] = (fast.prefill_logits.to(F64) - ref.prefill_logits).abs().max().item()
    assert diffs["prefill"] <= tol_logits, diffs
    # Greedy decoding: ids exact, up to the first step whose top-2 margin is within noise.
    n = _robust_steps(ref, tol_logits)
    assert n >= 3, f"the reference's top-2 margins {ref.margins} leave too few steps to compare"
    assert fast.generation.ids[:n] == ref.ids[:n]
    steps = min(n + 1, N_NEW)  # step n's logits follow from the same (agreed) ids
    fast_steps = torch.stack(fast.generation.step_logits[:steps]).to(F64)
    diffs["steps"] = (fast_steps - ref.step_logits[:steps]).abs().max().item()
    assert diffs["steps"] <= tol_logits, diffs
    return diffs


def _robust_steps(ref: RefAnswer, tol: float) -> int:
    """Steps whose greedy pick cannot flip under noise ``tol``."""
    for t, margin in enumerate(ref.margins):
        if margin <= 4 * tol:
            return t
    return len(ref.margins)


# -- the reference itself ----------------------------------------------------------------------


def test_reference_layout_rule_matches_conformance_counts() -> None:
    # README §4: r4, 40 raw -> 10 beacons, 20 raw -> 5; r2, 40 -> 20, 8 -> 4; each after r raw.
    assert ref_is_vst(40, 4, "drop").count(True) == 10
    assert ref_is_vst(20, 4, "drop").count(True) == 5
    assert ref_is_vst(8, 2, "drop") == [False, False, True] * 4
    # Leftover quirk: the tail after the last beacon is not summarised ("drop") or is ("summarize").
    assert ref_is_vst(20, 8, "drop") == ([False] * 8 + [True]) * 2 + [False] * 4
    assert ref_is_vst(20, 8, "summarize") == ([False] * 8 + [True]) * 2 + [False] * 4 + [True]
    assert ref_is_vst(3, 8, "drop") == [False] * 3
    assert ref_is_vst(3, 8, "summarize") == [False] * 3 + [True]


@pytest.mark.skipif(not (CONFORMANCE_DIR / "checkpoint").is_dir(),
                    reason="shared/conformance/videoxl_tiny not present")
@pytest.mark.parametrize("case", ["case_r4_25f", "case_r2_12f"])
def test_reference_reproduces_official_golden_outputs(case: str) -> None:
    """The reference, fed the golden visual tokens, reproduces the official memory and answer."""
    from safetensors.torch import load_file

    cfg = json.loads((CONFORMANCE_DIR / "checkpoint" / "config.json").read_text())
    ref = ref_weights(load_file(CONFORMANCE_DIR / "checkpoint" / "model.safetensors"),
                      cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rope_theta"],
                      cfg["rms_norm_eps"])
    gold = load_file(CONFORMANCE_DIR / f"{case}.safetensors")
    ids = gold["input.input_ids"]
    skip = int(gold["derived.beacon_skip_first"])
    sink_k, sink_v = ref_text_kv(ref, ids[:skip])
    vst_k, vst_v = ref_interval(ref, sink_k, sink_v, gold["vision.visual_tokens"],
                                int(gold["input.compression_ratio"]), cfg["beacon_window"], "drop")
    for name, ours in (("sink.k", sink_k), ("sink.v", sink_v), ("beacon.k", vst_k),
                       ("beacon.v", vst_v)):
        theirs = torch.stack([gold[f"memory.{name}.layer{i}"] for i in range(ref.n_layers)])
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs.to(F64), atol=1e-5, rtol=0)
    answer = ref_answer(ref, torch.cat((sink_k, vst_k), 2), torch.cat((sink_v, vst_v), 2), None,
                        ids[skip + 1:], 8)
    assert answer.ids == gold["output.generated_ids"].tolist()
    torch.testing.assert_close(answer.prefill_logits,
                               gold["output.prefill_question_logits"][:, :512].to(F64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(answer.step_logits,
                               gold["output.generate_step_logits"][:, :512].to(F64),
                               atol=1e-5, rtol=0)


def test_reference_without_compression_is_one_causal_forward(models: dict) -> None:
    """ratio None over several windows == the same tokens in one window (all K/V kept)."""
    ref = models["ref"]
    raw = _tokens(23, torch.Generator().manual_seed(3)).to(F64)
    sink_k, sink_v = ref_text_kv(ref, torch.tensor([5, 6, 7]))
    k1, v1 = ref_interval(ref, sink_k, sink_v, raw, None, 4)
    k2, v2 = ref_interval(ref, sink_k, sink_v, raw, None, 100)
    torch.testing.assert_close(k1, k2, atol=1e-12, rtol=0)
    torch.testing.assert_close(v1, v2, atol=1e-12, rtol=0)


# -- layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("remainder", ["summarize", "drop"])
def test_window_layout_matches_reference_rule(remainder: str) -> None:
    for ratio in [None, *range(1, 10)]:
        for num_raw in range(1, 50):
            layout = window_layout(num_raw, ratio, remainder)
            assert layout.is_vst().tolist() == ref_is_vst(num_raw, ratio, remainder), \
                (num_raw, ratio, remainder)
            # raw token i sits in the i-th non-VST slot
            expected_raw = [j for j, f in enumerate(ref_is_vst(num_raw, ratio, remainder))
                            if not f]
            assert layout.raw_slots.tolist() == expected_raw


# -- fast path == reference --------------------------------------------------------------------

# Precisions: the fast path in float32, and in float64 (where K/V and logits agree to 1e-10).
PRECISIONS = {"fp32": (torch.float32, TOL[torch.float32], TOL[torch.float32]),
              "fp64": (torch.float64, TOL[torch.float64], TOL[torch.float64])}


@pytest.fixture(params=list(PRECISIONS))
def precision(request: pytest.FixtureRequest) -> tuple[torch.dtype, float, float]:
    return PRECISIONS[request.param]


# 53 raw tokens: prime, so no ratio or window divides it (windows 5, 12, 40 leave tails 3, 5, 13).
@pytest.mark.parametrize("remainder", ["summarize", "drop"])
@pytest.mark.parametrize("window", [5, 12, 40])
@pytest.mark.parametrize("ratio", [1, 2, 3, 4, 8])
def test_one_interval(models: dict, ratio: int, window: int, remainder: str,
                      precision: tuple[torch.dtype, float, float]) -> None:
    dtype, tol_kv, tol_logits = precision
    out = _run(models, dtype, [(53, ratio)], window, remainder, n_open=0,
               seed=100 * ratio + window)
    _check(out, tol_kv, tol_logits)


SEQUENCES = [
    # (intervals (N, ratio), window, remainder, open raw tokens at question time)
    ([(30, 4), (17, None), (45, 2)], 12, "summarize", 9),
    ([(53, 8), (20, 3), (9, None)], 5, "drop", 6),
    ([(100, 2), (41, None)], 40, "summarize", 13),
    ([(7, None), (64, 1), (33, 3)], 12, "drop", 0),
    ([(26, 8), (3, 4), (50, None)], 7, "summarize", 4),
    ([(19, None), (2, 8), (11, 8)], 5, "drop", 3),  # a 2-token interval at r=8 keeps nothing
]


@pytest.mark.parametrize("case", range(len(SEQUENCES)))
def test_interval_sequence_and_question(models: dict, case: int,
                                        precision: tuple[torch.dtype, float, float]) -> None:
    dtype, tol_kv, tol_logits = precision
    intervals, window, remainder, n_open = SEQUENCES[case]
    out = _run(models, dtype, intervals, window, remainder, n_open, seed=case)
    _check(out, tol_kv, tol_logits)


def test_question_on_empty_memory(models: dict) -> None:
    """No sink, no intervals: the answer is a plain causal forward over open tokens + question."""
    ref = models["ref"]
    gen = torch.Generator().manual_seed(7)
    open_tokens, question = _tokens(11, gen), torch.randint(0, 400, (4,), generator=gen)
    runtime = Runtime(models[torch.float32])
    fast = runtime.decode(runtime.new_store(), open_tokens, question, N_NEW, all_logits=True)
    mem_k, mem_v = empty_memory(ref)
    answer = ref_answer(ref, mem_k, mem_v, open_tokens, question, N_NEW)
    torch.testing.assert_close(fast.prefill_logits.to(F64), answer.prefill_logits, atol=1e-4,
                               rtol=0)
    n = _robust_steps(answer, 1e-4)
    assert fast.generation.ids[:n] == answer.ids[:n]
