"""Conformance to the official Video-XL code's golden outputs (shared/conformance/videoxl_tiny).

Every ``case_*.safetensors`` in ``$STREAMVXL_CONFORMANCE_DIR`` is checked against ``checkpoint/``
there, through the same `Runtime` every stream uses: vision (<= 1e-5), layout and memory sizes
(exact), memory K/V and logits (<= 1e-4), greedy ids (exact). A new case file needs no code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from streamvxl.model.layout import split_windows, window_layout
from streamvxl.model.loading import load_videoxl
from streamvxl.runtime import Runtime
from tests.conftest import CONFORMANCE_DIR

CASES = sorted(CONFORMANCE_DIR.glob("case_*.safetensors"))
pytestmark = pytest.mark.skipif(not CASES, reason=f"no conformance cases in {CONFORMANCE_DIR}")
VOCAB = 512  # columns stored in the checkpoint; column 512 is the reference's random resize row


@pytest.fixture(scope="module")
def model():
    return load_videoxl(CONFORMANCE_DIR / "checkpoint", device="cpu", dtype=torch.float32)


def _case(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path)), meta


def _layer_stack(case: dict[str, torch.Tensor], name: str, layers: int) -> torch.Tensor:
    """(L, G, S, D) from memory.<name>.layer{i}."""
    return torch.stack([case[f"{name}.layer{i}"] for i in range(layers)])


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float, what: str) -> None:
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol}"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(model, path: Path) -> None:
    case, _ = _case(path)
    layers = model.config.llm.num_hidden_layers
    ratio = int(case["input.compression_ratio"][0])
    ids = case["input.input_ids"]
    skip_first = int(case["derived.beacon_skip_first"][0])
    assert ids[skip_first] == -200 and (ids == -200).sum() == 1

    # Vision: CLIP penultimate patches, projector, 2x2 pooled tokens.
    pixels = case["input.pixel_values"]
    with torch.no_grad():
        patches, _ = model.model.vision_tower(pixels)
        projected = model.model.mm_projector(patches)
        tokens = model.encode_frames(pixels).tokens  # (N, T, C)
    _close(patches, case["vision.clip_penultimate_patch"], 1e-5, "clip penultimate")
    _close(projected, case["vision.projector_out"], 1e-5, "projector")
    visual = tokens.reshape(-1, tokens.shape[-1])
    _close(visual, case["vision.visual_tokens"], 1e-5, "visual tokens")
    assert int(case["derived.beacon_skip_last"][0]) == skip_first + visual.shape[0]

    # Layout: the reference's prefill steps, rebuilt from our window layout (offline 'drop' rule).
    prefix, question = ids[:skip_first], ids[skip_first + 1:]
    window = model.config.vst.window
    step_ids, step_pos, lengths, mems, counts, ranges = [], [], [], [], [], []
    mem, raw_at = 0, 0

    def step(chunk_ids: torch.Tensor, n_vst: int, raw: int, keeps: int) -> None:
        nonlocal mem, raw_at
        step_ids.append(chunk_ids)
        step_pos.append(torch.arange(mem, mem + len(chunk_ids)))
        lengths.append(len(chunk_ids))
        mems.append(mem)
        counts.append(n_vst)
        ranges.append([raw_at, raw_at + raw])
        raw_at += raw
        mem += keeps

    step(prefix, 0, len(prefix), len(prefix))
    for s, e in split_windows(visual.shape[0], window):
        lay = window_layout(e - s, ratio, "drop")
        chunk = torch.full((lay.length,), model.placeholder_id)
        chunk[lay.vst_slots] = model.vst_id
        step(chunk, lay.num_vst, e - s, lay.num_vst)
    step(question, 0, len(question), len(question))
    assert torch.equal(torch.cat(step_ids), case["layout.step_input_ids"])
    assert torch.equal(torch.cat(step_pos), case["layout.step_position_ids"])
    assert lengths == case["layout.step_lengths"].tolist()
    assert mems == case["layout.step_mem_sizes"].tolist()
    assert counts == case["layout.step_beacon_counts"].tolist()
    assert ranges == case["layout.step_raw_ranges"].tolist()

    # Memory after the video: sink + VSTs, through the runtime every stream uses.
    runtime = Runtime(model)
    store = runtime.new_store()
    runtime.set_sink(store, prefix)
    runtime.compress(store, tokens, ratio, window, "drop", t_start=0.0, t_end=1.0,
                     frame_start=0, frame_end=tokens.shape[0] - 1)
    sizes = case["memory.sizes_after_prefill"].tolist()
    assert [store.sink_tokens, store.interval_tokens(), len(question)] == sizes
    keys, values = store.keys()[:, 0], store.values()[:, 0]  # (L, G, M, D)
    s = sizes[0]
    _close(keys[:, :, :s], _layer_stack(case, "memory.sink.k", layers), 1e-4, "sink K")
    _close(values[:, :, :s], _layer_stack(case, "memory.sink.v", layers), 1e-4, "sink V")
    _close(keys[:, :, s:], _layer_stack(case, "memory.beacon.k", layers), 1e-4, "VST K")
    _close(values[:, :, s:], _layer_stack(case, "memory.beacon.v", layers), 1e-4, "VST V")

    # Question and greedy decoding.
    n_new = case["output.generated_ids"].numel()
    out = runtime.decode(store, None, question, n_new, all_logits=True)
    _close(out.prefill_logits, case["output.prefill_question_logits"][:, :VOCAB], 1e-4,
           "question logits")
    _close(out.prefill_logits[-1], case["output.prefill_last_logits"][:VOCAB], 1e-4,
           "last logits")
    assert out.generation.ids == case["output.generated_ids"].tolist()
    _close(torch.stack(out.generation.step_logits),
           case["output.generate_step_logits"][:, :VOCAB], 1e-4, "decode logits")
    # Answering leaves the memory as it was (query-agnostic compression).
    assert store.num_tokens == sizes[0] + sizes[1]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_question_memory_matches_raw_memory(model, path: Path) -> None:
    """The question's own K/V equal the reference's raw memory (memory.raw.*)."""
    case, _ = _case(path)
    layers = model.config.llm.num_hidden_layers
    ids = case["input.input_ids"]
    skip = int(case["derived.beacon_skip_first"][0])
    ratio = int(case["input.compression_ratio"][0])
    runtime = Runtime(model)
    store = runtime.new_store()
    runtime.set_sink(store, ids[:skip])
    with torch.no_grad():
        tokens = model.encode_frames(case["input.pixel_values"]).tokens
    runtime.compress(store, tokens, ratio, remainder="drop")
    from streamvxl.model.encoder import encode_text

    kv = encode_text(model, store.keys(), store.values(), ids[skip + 1:][None])
    _close(kv.keys[:, 0], _layer_stack(case, "memory.raw.k", layers), 1e-4, "question K")
    _close(kv.values[:, 0], _layer_stack(case, "memory.raw.v", layers), 1e-4, "question V")


def test_layer0_vsts_identical(model) -> None:
    """README sanity fact: pre-RoPE, every VST's layer-0 input is the same embedding."""
    case, _ = _case(CASES[0])
    vst_k = case["memory.beacon.k.layer0"]
    assert torch.equal(vst_k, vst_k[:, :1].expand_as(vst_k))
