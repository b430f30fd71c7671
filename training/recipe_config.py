"""What a curriculum run is: `RecipeConfig` (every setting of `training.recipe`, saved as JSON in
each checkpoint) and its `Stage`s, validated on construction, and built from plain JSON values
(`config_from_dict`: the form ``--config`` files, ``--<field>`` flags and checkpoints use).

Example:
    >>> cfg = config_from_dict({"stages": [[10, [2, 4]], {"steps": 5, "ratios": [16]}]})
    >>> cfg.total_steps, cfg.stage_at(12)[0]
    (15, 1)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

import torch

from streamvxl.intervals import BoundaryConfig
from streamvxl.preprocess import Fit
from training.batch import TaskMix
from training.lora import VST_TARGETS


@dataclass(frozen=True)
class Stage:
    """One curriculum stage: ``steps`` optimizer steps drawing window ratios from ``ratios``,
    and examples from ``mix`` (None: the run's `RecipeConfig.mix`)."""

    steps: int
    ratios: tuple[int, ...]
    mix: TaskMix | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", tuple(self.ratios))
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"Stage.steps must be a positive int, got {self.steps!r}")
        if not self.ratios or any(not isinstance(r, int) or r < 1 for r in self.ratios):
            raise ValueError(f"Stage.ratios must be positive ints, got {self.ratios!r}")


@dataclass
class RecipeConfig:
    """Everything a run needs; JSON-serialisable (saved in every checkpoint)."""

    model: str = "tiny-random"
    """"tiny-random" (the conformance-shaped random model, for tests), "random:<shape>" (random
    weights of a named shape such as ``random:videoxl-7b``, built on the training device:
    scaling runs; `streamvxl.model.shapes`), or a checkpoint folder."""
    tokenizer: str | None = None
    """Tokenizer folder; None: the model folder (or the tiny test tokenizer for tiny-random and
    random:<shape>)."""
    stages: tuple[Stage, ...] = (Stage(300, (2, 4)), Stage(300, (8, 12, 16)))
    """The curriculum, small ratios first."""
    lr: float = 2e-4
    """Peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at lr * min_lr_ratio."""
    warmup_steps: int = 20
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    batch: int = 1
    """Examples per rank per step (gradient accumulation); the global batch is W * batch."""
    micro_batch: int = 1
    """Examples per forward pass: a step's examples of equal frame count run in groups of up
    to this many, sharing the first one's window plan (`training.forward.group_loss`). 1: each
    example alone, with its own dynamic intervals. Larger groups fill a GPU."""
    micro_batch_frames: int | None = None
    """Also cap a forward group at this many frames (None: no cap): with long videos in the
    mix (`TaskMix.long_video`), a group of ``micro_batch`` of them would not fit a GPU."""
    workers: int = 0
    """Processes that render the next steps' examples while the model trains (0: render in
    the training process). Examples stay a pure function of (seed, index)."""
    seed: int = 0
    """Seeds the model (tiny-random) and every example."""
    frames: int = 16
    """Frames per video (rendered at the model's image size, or at the world's ``sizes``)."""
    world: dict[str, Any] = field(default_factory=lambda: {"max_objects": 2})
    """Further `WorldConfig` fields (e.g. max_objects, cut_prob, sign_prob; ``sizes`` draws
    frame sizes other than the model's square)."""
    fit: Fit = "crop"
    """How frames that are not square fit the tower (`streamvxl.preprocess.Preprocessor.fit`;
    the product must fit them the same way). A world drawing such sizes needs "pad": a crop
    cuts off objects its questions ask about."""
    mix: TaskMix = field(default_factory=TaskMix)
    """Proportions of videos / single images / image sets, and the video tasks."""
    uncompressed_share: float = 0.0
    """Fraction of examples whose memory keeps every raw token (no VSTs): the model then also
    learns to read an uncompressed memory, so the evaluation's ``full`` baseline (the upper
    bound) is inside its training distribution. 0: every memory is compressed."""
    open_tail_share: float = 0.0
    """Fraction of the compressed video examples whose last interval keeps every raw token:
    the memory a live stream is asked from, its interval still open and read raw after the
    stored ones (`Runtime.answer`; the evaluation's ``--tail open``). 0: the whole video is
    stored, as a file that has ended leaves it."""
    questions: int = 1
    """Questions per example, all answered over the same memory."""
    reading_loss: float = 0.0
    """Weight of the auxiliary reading loss: a linear head reads each visual token's sign
    characters in order (`training.reading`), beside the answers, so the projector must keep
    what the needles ask for. The step loss becomes answer mean + weight x reading mean. 0: no
    head. The head is saved in checkpoints (``heads.safetensors``), never exported."""
    reading_warmup_steps: int = 0
    """For this many first steps the reading head learns alone, on detached visual tokens: a
    fresh head's gradients into the projector are noise until it reads something."""
    reading_head_init: str | None = None
    """A checkpoint's ``heads.safetensors`` to start the reading head from (an export keeps
    no head). A run continued from an export otherwise starts a random head, whose first
    steps' gradients into the projector are noise (seen in run 5: the reading loss started at
    3.8 and took ~15 steps to fall under 0.1)."""
    dataset_size: int | None = None
    """None: a fresh example every time; n: cycle through a fixed set of n examples."""
    boundary: BoundaryConfig = field(
        default_factory=lambda: BoundaryConfig(window=2, min_frames=4, max_frames=16))
    """Interval detection on the frames' CLS embeddings (dynamic intervals)."""
    window: int | None = None
    """Raw visual tokens per encoder window; None: the model's ``vst.window``."""
    train_vision: bool = True
    """Train the vision tower."""
    train_projector: bool = True
    """Train the projector."""
    train_llm: bool = True
    """Train the language model, VST parameters included (the LoRA adapters train regardless)."""
    train_vst_embed: bool = True
    """Train the VST input embedding (``beacon_embed_tokens``, one row of C) also when
    ``train_llm`` is False: C numbers that tell every layer "summarise here"."""
    lora_rank: int | None = None
    """None: train full weights; r: train ``lora_targets`` as rank-r LoRA adapters over their
    frozen start (`training.lora`). With ``train_llm`` False only the adapters train in the LLM:
    what the default model's 20 MB delta needs (rank 16 on the VSTs: 1.3 M parameters)."""
    lora_targets: tuple[str, ...] = VST_TARGETS
    """Names of the LLM linears to adapt (e.g. beacon_q_proj, q_proj, o_proj, down_proj)."""
    lora_init: str | None = None
    """An exported delta (`training.default_model export`) whose LoRA factors start the
    adapters, to continue a run from what it shipped (build the model with
    ``training.default_model init --delta`` from the same file); None: fresh adapters."""
    lora_alpha: float = 16.0
    """LoRA scale numerator: the change is (lora_alpha / lora_rank) * B @ A."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input while training."""
    log_every: int = 10
    """Log a progress line every this many steps (every step goes to metrics.jsonl)."""
    checkpoint_every: int = 0
    """Checkpoint every this many steps (0: only at the end or on a time/step limit)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep (0: all)."""
    checkpoints: bool = True
    """False: write no checkpoint at all (scaling and speed runs: a 7B model's full training
    state is ~135 GB)."""
    output_dir: str = "runs/recipe"
    """Checkpoints, metrics.jsonl and config.json go here."""
    resume: bool = False
    """Continue from ``output_dir``'s latest checkpoint (if any)."""
    max_minutes: float | None = None
    """Stop (with a checkpoint) after this much wall time."""
    max_steps: int | None = None
    """Stop (with a checkpoint) after this global step, before the curriculum ends."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu" or "cuda"."""
    autocast: bool = True
    """bfloat16 autocast on CUDA (parameters and optimizer stay float32)."""
    fsdp_param_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Under FSDP with autocast: the dtype the ranks gather weights in (`training.parallel`).
    "bfloat16": half the traffic, and no bfloat16 copy of every weight kept through the
    backward (16 GB at 7B); only ops autocast runs in float32 (CLIP's layer norms) see rounded
    weights. "float32": each rank computes exactly what one process computes. "auto":
    bfloat16 for full fine-tuning, float32 with LoRA, whose forward merges W0 + B A: gathering
    W0 in bfloat16 first rounds the adapter's small change away (measured, 7B on 2 GPUs over
    16 steps: losses 9.7 % off the 1-GPU run with bfloat16, 0.5 % with float32, and two 1-GPU
    runs 0.8 % apart; `docs/scale_out.md`)."""
    reduce_each_micro_batch: bool = False
    """Under FSDP: reduce-scatter the gradients after every forward group, so they stay
    sharded, instead of accumulating them unsharded until the step's last group (one
    collective per step, but the whole model's float32 gradients on every GPU meanwhile: 34 GB
    at 7B). No effect in a single process."""

    def __post_init__(self) -> None:
        self.stages = tuple(s if isinstance(s, Stage) else _stage(s) for s in self.stages)
        self.betas = tuple(self.betas)
        self.lora_targets = tuple(self.lora_targets)
        if not self.stages:
            raise ValueError("RecipeConfig.stages must hold at least one Stage")
        for name in ("lr", "batch", "micro_batch", "frames", "questions", "log_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RecipeConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "checkpoint_every", "keep_checkpoints", "grad_clip",
                     "weight_decay", "workers", "reading_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"RecipeConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("RecipeConfig.min_lr_ratio must lie in [0, 1]")
        if self.micro_batch_frames is not None and self.micro_batch_frames < 1:
            raise ValueError("RecipeConfig.micro_batch_frames must be None or >= 1")
        if self.dataset_size is not None and self.dataset_size < 1:
            raise ValueError("RecipeConfig.dataset_size must be None or >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"RecipeConfig.device must be auto, cpu or cuda, not {self.device}")
        if not (self.train_vision or self.train_projector or self.train_llm or self.lora_rank):
            raise ValueError("RecipeConfig: set at least one of train_vision, train_projector, "
                             "train_llm, lora_rank")
        if self.lora_rank is not None and (not isinstance(self.lora_rank, int)
                                           or self.lora_rank < 1):
            raise ValueError(f"RecipeConfig.lora_rank must be None or a positive int, got "
                             f"{self.lora_rank!r}")
        if self.reading_loss < 0:
            raise ValueError(f"RecipeConfig.reading_loss must be >= 0, got {self.reading_loss!r}")
        if self.reading_head_init is not None and not self.reading_loss > 0:
            raise ValueError("RecipeConfig.reading_head_init starts the reading head: set "
                             "reading_loss > 0 too")
        if self.reading_loss > 0 and not (self.train_projector or self.train_vision):
            raise ValueError("RecipeConfig.reading_loss teaches the projector (or the tower) to "
                             "keep the characters' order: set train_projector or train_vision")
        if self.fit not in get_args(Fit):
            raise ValueError(f"RecipeConfig.fit must be one of {get_args(Fit)}, got {self.fit!r}")
        try:  # the rest of the world is checked when the run draws it, at the model's size
            sizes = [(int(h), int(w)) for h, w in self.world.get("sizes") or ()]
        except (TypeError, ValueError) as e:
            raise ValueError(f"RecipeConfig.world's sizes must be [height, width] pairs, got "
                             f"{self.world.get('sizes')!r}") from e
        if self.fit == "crop" and any(h != w for h, w in sizes):
            raise ValueError("RecipeConfig.world draws frames that are not square: set fit to "
                             "'pad' (a centre crop cuts off objects the questions ask about)")
        if sizes and self.reading_loss > 0:
            raise ValueError("RecipeConfig.reading_loss reads signs on the tower's own pixel "
                             "grid: leave 'sizes' out of the world, or set reading_loss to 0")
        if not 0.0 <= self.uncompressed_share <= 1.0:
            raise ValueError(f"RecipeConfig.uncompressed_share must be in [0, 1], got "
                             f"{self.uncompressed_share!r}")
        if not 0.0 <= self.open_tail_share <= 1.0:
            raise ValueError(f"RecipeConfig.open_tail_share must be in [0, 1], got "
                             f"{self.open_tail_share!r}")
        if self.lora_init is not None and self.lora_rank is None:
            raise ValueError("RecipeConfig.lora_init starts LoRA adapters: set lora_rank too "
                             "(the rank the delta was trained with)")
        if self.lora_rank is not None and not self.lora_targets:
            raise ValueError("RecipeConfig.lora_targets must name at least one linear layer")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError("RecipeConfig.lora_dropout must lie in [0, 1)")
        if self.fsdp_param_dtype not in ("auto", "bfloat16", "float32"):
            raise ValueError("RecipeConfig.fsdp_param_dtype must be auto, bfloat16 or float32, "
                             f"not {self.fsdp_param_dtype!r}")
        if self.fsdp_param_dtype == "bfloat16" and self.lora_rank is not None:
            raise ValueError("RecipeConfig.fsdp_param_dtype bfloat16 rounds LoRA's frozen "
                             "weights before the adapter is merged in, and small adapter "
                             "changes vanish: use float32 (or auto) with lora_rank")

    @property
    def fsdp_gather_dtype(self) -> torch.dtype | None:
        """The dtype FSDP gathers weights in under CUDA autocast (None: as stored)."""
        if not self.autocast or self.fsdp_param_dtype == "float32":
            return None
        if self.fsdp_param_dtype == "auto" and self.lora_rank is not None:
            return None
        return torch.bfloat16

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, Stage]:
        """(index, stage) of 1-based ``step``."""
        end = 0
        for i, s in enumerate(self.stages):
            end += s.steps
            if step <= end:
                return i, s
        return len(self.stages) - 1, self.stages[-1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mix(spec: TaskMix | dict[str, Any] | None) -> TaskMix | None:
    if spec is None or isinstance(spec, TaskMix):
        return spec
    mix = dict(spec)
    for key in ("video_tasks", "long_tasks"):
        if key in mix:
            mix[key] = tuple(mix[key])
    return TaskMix(**mix)


def _stage(spec: Any) -> Stage:
    """A stage from ``{"steps", "ratios"[, "mix"]}`` or ``[steps, ratios[, mix]]``."""
    if isinstance(spec, dict):
        return Stage(int(spec["steps"]), tuple(spec["ratios"]), _mix(spec.get("mix")))
    if len(spec) not in (2, 3):
        raise ValueError(f"a stage is [steps, ratios] or [steps, ratios, mix], got {spec!r}")
    return Stage(int(spec[0]), tuple(spec[1]), _mix(spec[2] if len(spec) == 3 else None))


def config_from_dict(d: dict[str, Any]) -> RecipeConfig:
    """A `RecipeConfig` from plain JSON values (nested dicts for mix, boundary, stages)."""
    names = {f.name for f in fields(RecipeConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown RecipeConfig fields {unknown}; valid: {sorted(names)}")
    d = dict(d)
    if isinstance(d.get("mix"), dict):
        d["mix"] = _mix(d["mix"])
    if isinstance(d.get("boundary"), dict):
        d["boundary"] = BoundaryConfig(**d["boundary"])
    if "stages" in d:
        d["stages"] = tuple(_stage(s) if not isinstance(s, Stage) else s for s in d["stages"])
    return RecipeConfig(**d)


__all__ = ["RecipeConfig", "Stage", "config_from_dict"]
