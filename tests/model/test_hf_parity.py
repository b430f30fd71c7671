"""Parity with transformers on tiny random checkpoints written by ``save_pretrained``.

- With compression off, the windowed interval encoder is one plain HF forward: same K/V per layer
  (ours pre-RoPE, HF's rotated), same logits for a question after it, same incremental decoding.
- A Llama checkpoint is a Qwen2 model with zero q/k/v bias (untied and tied embeddings).
- Text-only checkpoints get their VST weights from q/k/v and the EOS row.
- Broken checkpoint folders raise `CheckpointError` with a message that says what is wrong.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from streamvxl.errors import CheckpointError
from streamvxl.model.cache import RotatedCache
from streamvxl.model.encoder import encode_interval, encode_text
from streamvxl.model.generate import decode_one_token, prefill
from streamvxl.model.loading import load_videoxl
from streamvxl.model.saving import save_videoxl
from streamvxl.testing import random_videoxl
from tests.model.reference import rope

# Shapes: L layers, B batch, G kv heads, T tokens, D head_dim, C hidden, V vocabulary.

TOL = 1e-4
SHAPE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6,
             bos_token_id=1, eos_token_id=2)
EOS = 2


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights that make the tiny model sensitive to every detail (HF's 0.02 init is too flat)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)  # clearly non-zero q/k/v biases
            elif "embed" in name:
                p.copy_(0.02 * noise)
            else:
                p.copy_(0.08 * noise)


def _hf_qwen2(folder: Path, seed: int = 0) -> Qwen2ForCausalLM:
    hf = Qwen2ForCausalLM(Qwen2Config(**SHAPE)).eval()
    _randomise(hf, seed)
    hf.save_pretrained(str(folder))
    return hf


def _hf_llama(folder: Path, tie: bool, seed: int = 0) -> LlamaForCausalLM:
    hf = LlamaForCausalLM(LlamaConfig(**SHAPE, attention_bias=False,
                                      tie_word_embeddings=tie)).eval()
    _randomise(hf, seed)
    hf.save_pretrained(str(folder))
    return hf


def _layer_kv(cache, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, G, T, D) rotated keys and values of layer i of an HF cache (v5 layers or v4 lists)."""
    if hasattr(cache, "layers"):
        return cache.layers[i].keys, cache.layers[i].values
    return cache.key_cache[i], cache.value_cache[i]


def _hf_forward(hf, **kwargs):
    """HF forward returning (logits, cache) across the v4 (past_key_values) / v5 (cache) names."""
    out = hf(**kwargs, use_cache=True)
    cache = out.get("cache", None)
    return out.logits, out.get("past_key_values", None) if cache is None else cache


def _empty_cache(model, capacity: int) -> RotatedCache:
    llm = model.config.llm
    return RotatedCache(llm.num_hidden_layers, 1, llm.num_key_value_heads, llm.dim_per_head,
                        capacity, model.dtype, model.device)


# -- Qwen2: no compression == one plain forward --------------------------------------------------


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("qwen2")
    hf = _hf_qwen2(folder)
    return hf, load_videoxl(folder, device="cpu", dtype=torch.float32)


def test_text_only_checkpoint_gets_vst_weights_from_qkv_and_eos(qwen2) -> None:
    hf, ours = qwen2
    for layer in ours.model.layers:
        attn = layer.self_attn
        for p in ("q", "k", "v"):
            regular, beacon = getattr(attn, f"{p}_proj"), getattr(attn, f"beacon_{p}_proj")
            assert torch.equal(beacon.weight, regular.weight)
            assert torch.equal(beacon.bias, regular.bias)
            assert regular.bias.abs().min() > 0  # Qwen2's biases survived the load
            # a copy, not a shared tensor: training the VSTs must not move q/k/v
            assert beacon.weight.data_ptr() != regular.weight.data_ptr()
    assert torch.equal(ours.vst_embedding(), hf.model.embed_tokens.weight[EOS])
    assert ours.config.visual is None


@pytest.mark.parametrize("window", [7, 1, 64])
def test_windowed_uncompressed_interval_equals_one_hf_forward(qwen2, window: int) -> None:
    hf, ours = qwen2
    gen = torch.Generator().manual_seed(window)
    sink_ids = torch.randint(0, 400, (1, 6), generator=gen)
    visual = torch.randn(1, 45, 64, generator=gen)  # (B, N, C): 45 = 6 windows of 7 + 3
    question = torch.randint(0, 400, (1, 5), generator=gen)

    with torch.no_grad():
        sink = encode_text(ours, None, None, sink_ids)  # (L, B, G, S, D) pre-RoPE
        kept = encode_interval(ours, sink.keys, sink.values, visual, ratio=None, window=window)
        mem_k = torch.cat((sink.keys, kept.keys), dim=3)  # (L, B, G, S+N, D)
        mem_v = torch.cat((sink.values, kept.values), dim=3)
        embeds = torch.cat((hf.model.embed_tokens(sink_ids), visual), dim=1)  # (B, S+N, C)
        _, hf_cache = _hf_forward(hf, inputs_embeds=embeds)

    assert kept.keys.shape[3] == visual.shape[1]  # every raw token retained
    positions = torch.arange(mem_k.shape[3])
    for i in range(ours.config.llm.num_hidden_layers):
        hf_k, hf_v = _layer_kv(hf_cache, i)
        ours_rot = rope(mem_k[i].double(), positions, ours.config.llm.rope_theta)
        torch.testing.assert_close(ours_rot.float(), hf_k, atol=TOL, rtol=0)
        torch.testing.assert_close(mem_v[i], hf_v, atol=TOL, rtol=0)

    # A question after the memory: all-position logits, then 5 greedy decode steps.
    with torch.no_grad():
        full = torch.cat((embeds, hf.model.embed_tokens(question)), dim=1)
        hf_logits, hf_cache = _hf_forward(hf, inputs_embeds=full)
        cache = RotatedCache.from_memory(mem_k, mem_v, mem_k.shape[3] + 5 + 5,
                                         ours.config.llm.rope_theta)
        logits = prefill(ours, cache, ours.embed_ids(question), all_logits=True)  # (B, Q, V)
        torch.testing.assert_close(logits, hf_logits[:, -question.shape[1]:], atol=TOL, rtol=0)
        last = logits[:, -1]
        for _ in range(5):
            token = last.argmax(-1)  # (B,)
            hf_last, hf_cache = _hf_forward(hf, input_ids=token[:, None], cache=hf_cache)
            last = decode_one_token(ours, cache, token)
            torch.testing.assert_close(last, hf_last[:, -1], atol=TOL, rtol=0)


# -- Llama = Qwen2 with zero q/k/v bias ---------------------------------------------------------


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_llama_is_qwen2_with_zero_bias(tmp_path: Path, tie: bool) -> None:
    hf = _hf_llama(tmp_path, tie)
    ours = load_videoxl(tmp_path, device="cpu", dtype=torch.float32)
    for layer in ours.model.layers:
        for p in ("q", "k", "v"):
            assert torch.count_nonzero(getattr(layer.self_attn, f"{p}_proj").bias) == 0
    ids = torch.randint(0, 400, (1, 19), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hf_logits, _ = _hf_forward(hf, input_ids=ids)
        logits = prefill(ours, _empty_cache(ours, 19), ours.embed_ids(ids), all_logits=True)
    torch.testing.assert_close(logits, hf_logits, atol=TOL, rtol=0)
    if tie:
        assert ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()


# -- loader errors ------------------------------------------------------------------------------


@pytest.fixture
def qwen2_folder(tmp_path: Path) -> Path:
    _hf_qwen2(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def _edit_weights(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": "pt"})


def test_error_no_config(qwen2_folder: Path) -> None:
    (qwen2_folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_videoxl(qwen2_folder, device="cpu")


def test_error_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is not a folder"):
        load_videoxl(tmp_path / "nowhere", device="cpu")


def test_error_unknown_model_type(qwen2_folder: Path) -> None:
    _edit_config(qwen2_folder, model_type="mamba")
    with pytest.raises(CheckpointError, match="model_type 'mamba' is not supported"):
        load_videoxl(qwen2_folder, device="cpu")


def test_error_wrong_shape(qwen2_folder: Path) -> None:
    key = "model.layers.1.mlp.up_proj.weight"

    def shrink(state: dict) -> None:
        state[key] = state[key][:100].contiguous()

    _edit_weights(qwen2_folder, shrink)
    with pytest.raises(CheckpointError, match=r"up_proj\.weight has shape \(100, 64\), config "
                                              r"implies \(128, 64\)"):
        load_videoxl(qwen2_folder, device="cpu")


def test_error_missing_weight(qwen2_folder: Path) -> None:
    _edit_weights(qwen2_folder, lambda state: state.pop("model.layers.0.mlp.down_proj.weight"))
    with pytest.raises(CheckpointError, match=r"lacks 1 weights.*down_proj"):
        load_videoxl(qwen2_folder, device="cpu")


def test_error_no_weights(qwen2_folder: Path) -> None:
    (qwen2_folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors"):
        load_videoxl(qwen2_folder, device="cpu")


def test_error_unknown_vision_tower(tmp_path: Path) -> None:
    folder = save_videoxl(random_videoxl(0), tmp_path / "vxl")
    shutil.rmtree(folder / "vision_tower")
    _edit_config(folder, mm_vision_tower="acme/clip-vit-unknown")
    with pytest.raises(CheckpointError, match=r"vision tower 'acme/clip-vit-unknown'"):
        load_videoxl(folder, device="cpu")


def test_videoxl_checkpoint_round_trip(tmp_path: Path) -> None:
    """Control for the vision-tower error: the unedited Video-XL folder loads, weights equal."""
    model = random_videoxl(0)
    folder = save_videoxl(model, tmp_path / "vxl")
    loaded = load_videoxl(folder, device="cpu", dtype=torch.float32)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
