"""LoRA adapters (`training.lora`) on the tiny random model, alone and in the recipe.

- Fresh adapters are a no-op: the same logits, the same state dict (names and values).
- Only the adapters get gradients; the frozen start W0 gets none.
- `merge_lora` gives the adapted model's logits and state dict; `lora_factors` reproduce each
  weight with `merge_low_rank`, the delta's merge rule.
- The recipe with ``lora_rank`` lowers the loss, keeps W0 frozen, writes the merged weights to
  ``model/`` and W0 / A / B to ``lora.safetensors``, and resumes bitwise.
- A delta exported with low-rank factors (`export_lora_delta`) over a tiny stand-in base loads
  back, with `streamvxl.model.default`'s helpers, bitwise equal to the trained model.

Shapes: F frames, T tokens per frame, C hidden, Q question tokens, V vocabulary, O / I output /
input features, R rank.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from streamvxl.model.default import (
    apply_delta,
    base_state,
    config_from_metadata,
    merge_low_rank,
    read_delta,
    skeleton,
)
from streamvxl.model.loading import load_state
from streamvxl.model.videoxl import VideoXL
from streamvxl.preprocess import Preprocessor
from streamvxl.runtime import Runtime, RuntimeConfig
from streamvxl.testing import make_tokenizer, random_videoxl
from streamvxl.world import WorldConfig
from training.default_model import VISUAL_PREFIXES, export_lora_delta
from training.forward import example_loss
from training.lora import (
    VST_TARGETS,
    LoRALinear,
    add_lora,
    load_lora,
    lora_factors,
    lora_modules,
    merge_lora,
    read_lora_metadata,
    save_lora,
    set_lora_factors,
)
from training.recipe import DataSource, set_trainable, train
from training.recipe_config import RecipeConfig

from .test_recipe import tiny_run

RANK = 4
FRAMES = 8


def _logits(model: VideoXL) -> torch.Tensor:
    """Compress random frames as one interval at ratio 4 (VST projections at work), then
    prefill a question: (Q, V) logits."""
    g = torch.Generator().manual_seed(0)
    size = model.image_size
    pixels = torch.randn(FRAMES, 3, size, size, generator=g)
    ids = torch.randint(3, model.config.llm.vocab_size, (7,), generator=g)
    runtime = Runtime(model, config=RuntimeConfig(cpu_threads=0))
    store = runtime.new_store()
    with torch.no_grad():
        tokens = model.encode_frames(pixels).tokens  # (F, T, C)
        runtime.compress(store, tokens, 4, frame_end=FRAMES - 1)
        return runtime.decode(store, None, ids, max_new_tokens=1, all_logits=True).prefill_logits


def _trained_adapters(model: VideoXL, seed: int = 1) -> None:
    """Stand-in for training: random non-zero A and B on every adapter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_A.copy_(0.3 * torch.randn(m.lora_A.shape, generator=g))
            m.lora_B.copy_(0.3 * torch.randn(m.lora_B.shape, generator=g))


def test_fresh_adapters_are_a_no_op() -> None:
    plain, model = random_videoxl(0), random_videoxl(0)
    names = add_lora(model, rank=RANK, alpha=8)
    layers = model.config.llm.num_hidden_layers
    assert len(names) == 3 * layers
    assert {n.rsplit(".", 1)[-1] for n in names} == set(VST_TARGETS)
    assert all(n.startswith("model.layers.") for n in names)  # not the CLIP tower's projections
    assert torch.equal(_logits(model), _logits(plain))
    ours, theirs = model.state_dict(), plain.state_dict()
    assert ours.keys() == theirs.keys()  # the checkpoint's names, no adapters
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k
    params = dict(model.named_parameters())
    a = params["model.layers.0.self_attn.beacon_k_proj.lora_A"]
    assert a.shape == (RANK, model.config.llm.hidden_size) and a.abs().sum() > 0
    assert not params["model.layers.0.self_attn.beacon_k_proj.lora_B"].any()
    assert not params["model.layers.0.self_attn.beacon_k_proj.weight"].requires_grad


def test_adapters_are_seeded_and_leave_the_global_rng_alone() -> None:
    a, b = random_videoxl(0), random_videoxl(0)
    state = torch.get_rng_state()
    add_lora(a, rank=RANK, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    add_lora(b, rank=RANK, seed=5)
    for (name, x), (_, y) in zip(lora_factors(a).items(), lora_factors(b).items(), strict=True):
        assert torch.equal(x[0], y[0]), name


def test_only_adapters_get_gradients() -> None:
    model = random_videoxl(0)
    add_lora(model, rank=RANK)
    cfg = RecipeConfig(lora_rank=RANK, train_llm=False, train_vision=False,
                       train_projector=False, train_vst_embed=False)
    set_trainable(model, cfg)
    _trained_adapters(model)  # B = 0 would give A a zero gradient
    world = WorldConfig(num_frames=FRAMES, height=model.image_size, width=model.image_size,
                        max_objects=2)
    data = DataSource(cfg, world, make_tokenizer(), Preprocessor(model.image_size),
                      model.config.llm.vocab_size)
    model.train()
    loss, _ = example_loss(model, data.example(0, (2, 4)), cfg.boundary, window=16)
    loss.backward()
    last = model.config.llm.num_hidden_layers - 1
    dead = f"model.layers.{last}.self_attn.beacon_q_proj."  # feeds nothing (unreachable)
    for name, p in model.named_parameters():
        is_adapter = name.endswith((".lora_A", ".lora_B"))
        if is_adapter and not name.startswith(dead):
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
            assert not p.requires_grad, name
    assert sum(p.requires_grad for p in model.parameters()) == 2 * (3 * (last + 1) - 1)


def test_vst_embedding_trains_beside_frozen_llm_by_default() -> None:
    model = random_videoxl(0)
    add_lora(model, rank=RANK)
    set_trainable(model, RecipeConfig(lora_rank=RANK, train_llm=False))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "model.beacon_embed_tokens.weight" in trained
    llm = {n for n in trained if n.startswith("model.") and not n.startswith(
        ("model.vision_tower.", "model.mm_projector.", "model.beacon_embed_tokens."))}
    assert llm and all(n.endswith((".lora_A", ".lora_B")) for n in llm)


def test_merge_gives_the_adapted_model() -> None:
    model = random_videoxl(0)
    add_lora(model, rank=RANK, alpha=2 * RANK)
    _trained_adapters(model)
    base = {n: m.weight.detach().clone() for n, m in lora_modules(model).items()}
    factors = lora_factors(model)
    adapted_logits, adapted_state = _logits(model), model.state_dict()
    assert not torch.allclose(adapted_logits, _logits(random_videoxl(0)), atol=1e-3)
    merge_lora(model)
    assert not lora_modules(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(_logits(model), adapted_logits, rtol=0, atol=1e-6)
    merged = model.state_dict()
    assert merged.keys() == adapted_state.keys()
    for k in merged:
        assert torch.equal(merged[k], adapted_state[k]), k
    for name, w0 in base.items():  # the factors follow the delta's rule, scale in A
        a, b = factors[name + ".weight"]
        assert torch.equal(merged[name + ".weight"], merge_low_rank(w0, a, b))


def test_save_and_load_lora_round_trip(tmp_path: Path) -> None:
    model = random_videoxl(0)
    add_lora(model, ("beacon_k_proj", "o_proj"), rank=RANK, alpha=3.0)
    _trained_adapters(model)
    path = save_lora(model, tmp_path / "lora.safetensors")
    assert read_lora_metadata(path)["rank"] == RANK
    other = random_videoxl(0)
    other.load_state_dict(model.state_dict())  # merged weights, as a checkpoint's model/ has
    load_lora(other, path)
    assert torch.equal(_logits(other), _logits(model))
    for (n, (a, b)), (_, (c, d)) in zip(lora_factors(model).items(),
                                        lora_factors(other).items(), strict=True):
        assert torch.equal(a, c) and torch.equal(b, d), n
    with pytest.raises(RuntimeError, match="LoRA adapter"):
        other.load_state_dict(model.state_dict())


def test_exported_factors_restart_the_adapters() -> None:
    """A run continuing from a delta: fresh adapters set to the exported factors compute the
    adapted model again, and export the same factors."""
    model = random_videoxl(0)
    add_lora(model, ("beacon_k_proj", "o_proj"), rank=RANK, alpha=3.0)
    _trained_adapters(model)
    factors = lora_factors(model)
    other = random_videoxl(0)
    add_lora(other, ("beacon_k_proj", "o_proj"), rank=RANK, alpha=3.0, seed=9)
    assert set_lora_factors(other, factors) == sorted(factors)
    torch.testing.assert_close(_logits(other), _logits(model), rtol=0, atol=1e-6)
    for name, (a, b) in lora_factors(other).items():
        torch.testing.assert_close(a, factors[name][0], rtol=1e-6, atol=0)
        assert torch.equal(b, factors[name][1])
    with pytest.raises(ValueError, match="same lora_rank"):
        wider = random_videoxl(0)
        add_lora(wider, ("beacon_k_proj", "o_proj"), rank=RANK + 1, alpha=3.0)
        set_lora_factors(wider, factors)
    with pytest.raises(ValueError, match="no adapter"):
        fewer = random_videoxl(0)
        add_lora(fewer, ("o_proj",), rank=RANK, alpha=3.0)
        set_lora_factors(fewer, factors)
    with pytest.raises(ValueError, match="lora_rank too"):
        RecipeConfig(lora_init="x.safetensors")


def test_bad_targets_are_rejected() -> None:
    with pytest.raises(ValueError, match="lora_targets"):
        add_lora(random_videoxl(0), ("no_such_proj",))
    with pytest.raises(ValueError, match="lora_rank"):
        RecipeConfig(lora_rank=0)


# -- in the recipe -------------------------------------------------------------------------------
def _lora_run(output_dir: Path, **kw) -> RecipeConfig:
    return tiny_run(output_dir, lora_rank=RANK, lora_alpha=2 * RANK, train_llm=False, **kw)


def test_recipe_with_lora_lowers_the_loss(tmp_path: Path) -> None:
    rows = train(_lora_run(tmp_path, stages=[[12, [2, 4]]], dataset_size=1, lr=1e-2,
                           warmup_steps=0, train_vision=False, train_projector=False,
                           train_vst_embed=False))
    losses = [r["loss"] for r in rows]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    folder = tmp_path / "step_0000012"
    stored = load_file(str(folder / "lora.safetensors"))
    saved = load_file(str(folder / "model" / "model.safetensors"))
    start = random_videoxl(0)
    plain = start.state_dict()
    for name in add_lora(start, rank=RANK):
        w0 = stored[name + ".weight"]
        assert torch.equal(w0, plain[name + ".weight"]), name  # W0 stayed frozen
        merged = merge_low_rank(w0, stored[name + ".lora_A"] * 2.0, stored[name + ".lora_B"])
        assert torch.equal(saved[name + ".weight"], merged), name  # model/ holds W
    changed = [k for k in saved if not torch.equal(saved[k], plain[k])]
    assert changed and all(k.endswith("_proj.weight") and "beacon_" in k for k in changed)
    optim = load_file(str(folder / "optimizer.safetensors"))
    assert {k.rsplit(".", 1)[-1].split("/")[0] for k in optim} == {"lora_A", "lora_B"}


def test_resume_with_lora_is_exact(tmp_path: Path) -> None:
    stages = [[3, [2, 4]], [3, [8, 16]]]
    kw = {"stages": stages, "warmup_steps": 1, "train_vision": False}
    straight = train(_lora_run(tmp_path / "straight", **kw))
    broken = tmp_path / "broken"
    train(_lora_run(broken, max_steps=4, **kw))
    resumed = train(_lora_run(broken, resume=True, **kw))
    assert [r["step"] for r in resumed] == [5, 6]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight[4:]]  # bit for bit
    for file in ("model/model.safetensors", "lora.safetensors", "optimizer.safetensors"):
        a = load_file(str(tmp_path / "straight" / "step_0000006" / file))
        b = load_file(str(broken / "step_0000006" / file))
        assert a.keys() == b.keys(), file
        for k in a:
            assert torch.equal(a[k], b[k]), (file, k)


# -- the delta -----------------------------------------------------------------------------------
def test_low_rank_delta_loads_back_equal(tmp_path: Path) -> None:
    """Over a stand-in base (the tiny model's own LLM tensors), `export_lora_delta` stores the
    adapted VSTs as factors; `apply_delta` over that base gives back bitwise the model."""
    model = random_videoxl(0)
    base = tmp_path / "base-tiny"
    base.mkdir()
    llm = {k: v for k, v in model.state_dict().items()
           if not k.startswith(VISUAL_PREFIXES) and k != "lm_head.weight"}
    if not model.config.llm.tie_word_embeddings:
        llm["lm_head.weight"] = model.state_dict()["lm_head.weight"]
    save_file(llm, str(base / "model.safetensors"))
    add_lora(model, rank=RANK)
    _trained_adapters(model)
    with torch.no_grad():  # the unreachable last beacon_q_proj: an adapter that never trained
        lora_modules(model)["model.layers.1.self_attn.beacon_q_proj"].lora_B.zero_()
    report = export_lora_delta(model, base, tmp_path / "delta.safetensors", max_bytes=None)
    meta, tensors = read_delta(report.path)
    adapted = sorted(n + ".weight" for n in lora_modules(model))
    adapted.remove("model.layers.1.self_attn.beacon_q_proj.weight")
    assert meta["low_rank"] == adapted == sorted(report.changed)
    assert not any(k.startswith("model.layers.") and k.endswith("proj.weight") and
                   not k.endswith(("lora_A", "lora_B")) for k in tensors)

    cfg, vision = config_from_metadata(meta, model.config.llm)
    loaded = skeleton(cfg, vision)
    state = base_state(loaded, base)
    expected = set(loaded.state_dict()) - ({"lm_head.weight"}
                                           if cfg.llm.tie_word_embeddings else set())
    apply_delta(state, tensors, meta["low_rank"], expected, str(report.path))
    load_state(loaded, state, str(report.path))
    loaded.eval()
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k
    assert torch.equal(_logits(loaded), _logits(model))
    assert json.dumps(meta)  # JSON metadata, no pickle


def test_docstring_examples() -> None:
    import doctest

    import training.lora

    assert doctest.testmod(training.lora).failed == 0
