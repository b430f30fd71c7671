"""The curriculum recipe: fine-tune a Video-XL model's memory on the synthetic world.

An explicit loop, torchtune style -- setup, train, save -- meant to be copied and modified, not
subclassed. Every step draws fresh composite examples (videos, single images, image sets), builds
each example's memory with *dynamic* intervals (the boundary detector over the frames' CLS
embeddings) and a random ratio per window from the current stage's set, and trains on the
teacher-forced answers (`training.forward`). The stages form the curriculum: small ratios
first (2, 4), then large ones (8, 12, 16).

Run it::

    python -m training.recipe --config my_run.json              # a JSON of RecipeConfig fields
    python -m training.recipe --model tiny-random --stages '[[200, [2, 4]], [200, [8, 16]]]' \\
        --output-dir runs/tiny --lr 1e-3
    torchrun --nproc_per_node 8 -m training.recipe --config my_run.json   # FSDP2

Examples are a pure function of (seed, global example index): rank r of W takes the slots
r * batch .. (r + 1) * batch - 1 of each step's global batch of W * batch examples. So a resumed
run sees exactly the examples the interrupted one would have, and a W-rank run sees the examples
of a 1-rank run with W times the accumulation.

The loss of a step is the mean cross-entropy over *all* answer tokens of the global batch (sum
over ranks and micro-batches / total count); each rank back-propagates its micro-batches' summed
CE times W / total, which FSDP's gradient averaging over W ranks turns into exactly the gradient
of that global mean.

Letters: W ranks (world size).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributed.tensor import DTensor

from streamvxl.model.loading import load_videoxl
from streamvxl.model.videoxl import VideoXL
from streamvxl.preprocess import Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.world import VIDEO_TASKS, WorldConfig
from training.batch import Example, TaskMix, draw_sample, make_example
from training.checkpoint import (
    latest_checkpoint,
    load_heads,
    load_heads_file,
    load_training_state,
    save_checkpoint,
)
from training.default_model import split_delta
from training.forward import Counts, TrainModule, group_examples
from training.lora import (
    LoRALinear,
    add_lora,
    load_lora,
    lora_state,
    save_lora,
    set_lora_factors,
)
from training.parallel import (
    DistInfo,
    all_reduce_max,
    all_reduce_sum,
    balance_groups,
    close,
    init_distributed,
    set_gradient_sync,
    shard,
)
from training.prefetch import Prefetcher
from training.reading import token_cell
from training.recipe_config import RecipeConfig, config_from_dict

log = logging.getLogger("training.recipe")


def parse_args(argv: list[str] | None = None) -> RecipeConfig:
    """``--config file.json`` and/or one ``--<field>`` flag per `RecipeConfig` field (values
    parsed as JSON when they parse, else taken as strings); flags override the file."""
    parser = argparse.ArgumentParser(prog="python -m training.recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file of RecipeConfig fields")
    for f in fields(RecipeConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, nargs="?",
                            const="true", default=None, metavar="VALUE")
    args = parser.parse_args(argv)
    d: dict[str, Any] = json.loads(Path(args.config).read_text()) if args.config else {}
    for f in fields(RecipeConfig):
        raw = getattr(args, f.name)
        if raw is not None:
            try:
                d[f.name] = json.loads(raw)
            except json.JSONDecodeError:
                d[f.name] = raw
    return config_from_dict(d)


# ------------------------------------------------------------------------------------------
# Setup


LORA_FILE = "lora.safetensors"
"""A checkpoint's adapters (W0, A, B; `training.lora.save_lora`), beside its ``model/``."""


def load_model(cfg: RecipeConfig, checkpoint: Path | None, device: torch.device | str = "cpu"
               ) -> tuple[VideoXL, Any, Preprocessor]:
    """The model (float32; on the CPU, except a ``random:`` shape, built on ``device``), its
    tokenizer and frame preprocessing; with ``lora_rank``, its adapters: fresh ones, or a
    checkpoint's."""
    model, tokenizer, preprocess = _load_weights(cfg, checkpoint, device)
    preprocess = replace(preprocess, fit=cfg.fit)
    if cfg.lora_rank is not None and checkpoint is not None:
        path = checkpoint / LORA_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{checkpoint} has no {LORA_FILE} but the run trains LoRA "
                                    "adapters (an interrupted save?): point latest.json at an "
                                    "earlier checkpoint")
        load_lora(model, path)
    elif cfg.lora_rank is not None:
        add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout,
                 seed=cfg.seed)
        if cfg.lora_init is not None:
            set_lora_factors(model, split_delta(cfg.lora_init)[1])
    return model, tokenizer, preprocess


def _load_weights(cfg: RecipeConfig, checkpoint: Path | None, device: torch.device | str
                  ) -> tuple[VideoXL, Any, Preprocessor]:
    from transformers import AutoTokenizer

    if checkpoint is not None:
        folder = checkpoint / "model"  # with LoRA: the merged weights (load_model adds W0, A, B)
        model = load_videoxl(folder, device="cpu", dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        return model, tokenizer, Preprocessor.from_folder(folder, model.image_size)
    if cfg.model == "tiny-random":
        from streamvxl.testing import make_tokenizer, random_videoxl

        model = random_videoxl(cfg.seed)
        return model, make_tokenizer(), Preprocessor(model.image_size)
    if cfg.model.startswith("random:"):
        from streamvxl.model.shapes import model_shape, random_model
        from streamvxl.testing import make_tokenizer

        shape, vision = model_shape(cfg.model.removeprefix("random:"))
        # on the device: 7B parameters would take minutes to draw on a host
        model = random_model(shape, vision, device, torch.float32, cfg.seed)
        log.info("built %s with random weights on %s", cfg.model, device)
        return model, make_tokenizer(), Preprocessor(model.image_size)
    folder = Path(cfg.model)
    model = load_videoxl(folder, device="cpu", dtype=torch.float32)
    if not model.has_vision:
        raise ValueError(f"{folder} has no vision tower; the recipe trains a Video-XL model")
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or str(folder))
    return model, tokenizer, Preprocessor.from_folder(folder, model.image_size)


def unreachable_parameters(model: VideoXL) -> set[str]:
    """Parameters no loss can reach, by construction of the model:

    - the last decoder layer's ``beacon_q_proj``: a window keeps only its VSTs' keys and
      values, so the VST queries of the last layer feed nothing;
    - the vision tower's layers after the selected hidden state, and its ``post_layernorm``
      (Video-XL reads the penultimate layer).
    """
    last = model.config.llm.num_hidden_layers - 1
    names = {f"model.layers.{last}.self_attn.beacon_q_proj.{k}" for k in ("weight", "bias")}
    if model.has_vision:
        n = model.vision_config.num_hidden_layers
        select = model.config.visual.select_layer
        # hidden_states[i] is the output of layer i - 1 (i = 0: the embeddings), so
        # hidden_states[select] needs layers 0 .. select - 1 only
        first_unused = select % (n + 1)
        for name, _ in model.named_parameters():
            parts = name.split(".")
            if not name.startswith("model.vision_tower."):
                continue
            if "post_layernorm" in parts or (
                    "layers" in parts and int(parts[parts.index("layers") + 1]) >= first_unused):
                names.add(name)
    return names


def set_trainable(model: VideoXL, cfg: RecipeConfig) -> None:
    """Freeze what the config leaves out (vision tower / projector / LLM incl. VSTs) and what
    no loss reaches (`unreachable_parameters`: no gradient, so no optimizer state either).

    LoRA: an adapted layer's weight (W0) stays frozen, its adapters train (unless the layer is
    unreachable), its bias follows ``train_llm``.
    """
    unreachable = unreachable_parameters(model)
    adapted = {name for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    for name, p in model.named_parameters():
        layer, _, leaf = name.rpartition(".")
        if layer in adapted and leaf in ("lora_A", "lora_B"):
            p.requires_grad_(layer + ".weight" not in unreachable)
        elif name in unreachable or (layer in adapted and leaf == "weight"):
            p.requires_grad_(False)
        elif name.startswith("model.vision_tower."):
            p.requires_grad_(cfg.train_vision)
        elif name.startswith("model.mm_projector."):
            p.requires_grad_(cfg.train_projector)
        elif name.startswith("model.beacon_embed_tokens."):
            p.requires_grad_(cfg.train_llm or cfg.train_vst_embed)
        else:
            p.requires_grad_(cfg.train_llm)


def lr_factor(step: int, cfg: RecipeConfig) -> float:
    """Linear warm-up to 1, then cosine to ``min_lr_ratio`` (``step`` = steps taken so far)."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    span = max(1, cfg.total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class DataSource:
    """Makes example ``k`` of the run: a pure function of (seed, k, stage)."""

    cfg: RecipeConfig
    world: WorldConfig
    tokenizer: Any
    preprocess: Preprocessor
    vocab_size: int
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    reading_cell: int | None = None
    """Given: examples carry reading labels for cells of this many px (`token_cell`)."""
    frame_time: bool = False
    """The model stamps frames with their time (`VisualConfig.frame_time`): so do examples."""

    def example(self, index: int, ratios: tuple[int, ...], mix: TaskMix | None = None
                ) -> Example:
        """Example ``index`` at the ratio set ``ratios``, drawn from ``mix`` (None: the run's)."""
        if self.cfg.dataset_size is not None:
            index %= self.cfg.dataset_size
        rng = np.random.default_rng([self.cfg.seed, index])
        sample = draw_sample(rng, self.world, mix or self.cfg.mix, self.cfg.questions)
        # its own stream: a share of 0 leaves every other draw of the run as it was
        if np.random.default_rng([self.cfg.seed, index, 1]).random() < \
                self.cfg.uncompressed_share:
            ratios = ()  # every raw token kept (`training.batch.plan_windows`)
        # a stream of its own too; a still or an image set is not a stream left open
        open_tail = bool(ratios) and sample.kind in ("video", "long_video") and \
            np.random.default_rng([self.cfg.seed, index, 2]).random() < self.cfg.open_tail_share
        return make_example(sample, self.tokenizer, self.prompt, self.preprocess, ratios,
                            seed=int(rng.integers(2**62)), vocab_size=self.vocab_size,
                            reading_cell=self.reading_cell, open_tail=open_tail,
                            frame_time=self.frame_time)

    def step_indices(self, step: int, info: DistInfo) -> range:
        """The example indices of this rank in 1-based ``step``."""
        first = (step - 1) * info.world_size * self.cfg.batch + info.rank * self.cfg.batch
        return range(first, first + self.cfg.batch)

    def step_examples(self, step: int, ratios: tuple[int, ...], info: DistInfo,
                      mix: TaskMix | None = None) -> list[Example]:
        """This rank's examples of 1-based ``step``."""
        return [self.example(i, ratios, mix) for i in self.step_indices(step, info)]


# ------------------------------------------------------------------------------------------
# Train


def clip_gradients(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Global gradient norm of ``parameters`` (over all ranks' shards) before clipping; clips
    when max_norm > 0."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()  # sum of the shards' squares over ranks
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return float(norm)


TASK_KEYS: tuple[str, ...] = tuple(f"{kind}/{task}" for kind in ("video", "image", "multi_image",
                                                                 "long_video")
                                   for task in (*VIDEO_TASKS, "compare"))
"""Every "kind/task" an answer can have (`training.forward.task_keys`): one fixed order, so
ranks can sum their per-task losses as one vector."""


def task_loss(counts: Counts, info: DistInfo) -> tuple[dict[str, float], dict[str, int]]:
    """Mean answer cross-entropy per token of each "kind/task" the step's answers had, and
    their answer token counts, over all ranks (the step's ``loss`` is the token-weighted mean
    of these)."""
    sums = np.zeros((2, len(TASK_KEYS)))  # (loss, tokens) x key
    for keys, losses, lengths in counts.task_losses:
        for key, loss, tokens in zip(keys, losses.tolist(), lengths, strict=True):
            i = TASK_KEYS.index(key)
            sums[0, i] += loss
            sums[1, i] += tokens
    total = np.asarray(all_reduce_sum(sums.ravel().tolist(), info)).reshape(2, -1)
    seen = [(i, k) for i, k in enumerate(TASK_KEYS) if total[1, i] > 0]
    return ({k: float(total[0, i] / total[1, i]) for i, k in seen},
            {k: int(total[1, i]) for i, k in seen})


def reading_stats(counts: Counts, info: DistInfo) -> dict[str, float]:
    """``reading_loss``: the reading head's mean loss per frame over all ranks (the objective
    weighs each forward group's mean by its answer tokens instead: the two agree when the
    groups' frames per answer token do); ``sign_read``: the share of frames with a sign whose
    every character it read right (None: no frame had one -- JSON has no NaN)."""
    local = torch.stack(counts.reading).sum(0).tolist() if counts.reading else [0.0] * 4
    loss_sum, frames, read, signed = all_reduce_sum(local, info)
    return {"reading_loss": loss_sum / max(frames, 1.0),
            "sign_read": read / signed if signed else None}


def train_step(module: TrainModule, optimizer: torch.optim.Optimizer, scheduler: Any,
               examples: list[Example], info: DistInfo, cfg: RecipeConfig
               ) -> dict[str, float]:
    """Forward/backward every example (gradient accumulation), clip, step. Returns the
    global loss (token mean over all ranks), grad norm and token counts."""
    local_targets = sum(e.num_answer_tokens for e in examples)
    (total_targets,) = all_reduce_sum([local_targets], info)
    scale = info.world_size / total_targets  # FSDP averages over W: see the module docstring
    use_autocast = cfg.autocast and info.device.type == "cuda"
    if info.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(info.device)
    loss_sum, counts = 0.0, Counts()
    groups = group_examples(examples, cfg.micro_batch, cfg.micro_batch_frames)
    if info.distributed:  # the same number of forwards on every rank (see balance_groups)
        (most,) = all_reduce_max([len(groups)], info)
        groups = balance_groups(groups, int(most))
    for j, group in enumerate(groups):
        set_gradient_sync(module, cfg.reduce_each_micro_batch or j == len(groups) - 1)
        ctx = torch.autocast("cuda", torch.bfloat16) if use_autocast else contextlib.nullcontext()
        with ctx:
            loss, c = module(group)
        (loss * scale).backward()
        loss_sum += float(loss.detach())
        counts += c
    # the reading head is clipped on its own: a fresh head's large gradients would otherwise
    # shrink the model's step through the shared norm (its warm-up would not be "alone")
    head = set(module.reading_head.parameters()) if module.reading_head is not None else set()
    grad_norm = clip_gradients((p for p in module.parameters() if p not in head), cfg.grad_clip)
    if head:
        clip_gradients(head, cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    g_loss, g_llm, g_mem, g_win, g_int = all_reduce_sum(
        [loss_sum, counts.llm_tokens, counts.memory_tokens, counts.windows, counts.intervals],
        info)
    n = info.world_size * len(examples)
    row = {"loss": g_loss / total_targets, "grad_norm": grad_norm,
           "answer_tokens": total_targets, "llm_tokens": g_llm,
           "memory_tokens": g_mem / n, "windows": g_win / n, "intervals": g_int / n}
    row["task_loss"], row["task_tokens"] = task_loss(counts, info)
    if module.reading_head is not None:  # "loss" holds the reading term too
        tokens = row["task_tokens"]
        row["answer_loss"] = sum(v * tokens[k] for k, v in row["task_loss"].items()) / max(
            1, sum(tokens.values()))
        row.update(reading_stats(counts, info))
    if info.device.type == "cuda":  # every rank's peak, in rank order
        mine = [0.0] * info.world_size
        mine[info.rank] = torch.cuda.max_memory_allocated(info.device) / 2**30
        row["peak_gib"] = all_reduce_sum(mine, info)
    return row


def keep_metrics_through(path: Path, step: int) -> int:
    """Drop the rows of a run's ``metrics.jsonl`` after ``step``, the step the run starts from.

    A fresh run (step 0) in a folder an earlier run wrote to would otherwise append to that
    run's rows, and a run resumed from its last checkpoint would log again the steps a killed
    call took after it (the last one perhaps cut mid-line): `training.curriculum` measures a
    run's step time from this file, so each step must be in it once. Returns the rows dropped.
    """
    if not path.exists():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a killed process
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line)
    if len(kept) < len(lines):
        path.write_text("".join(line + "\n" for line in kept))
        log.warning("%s: dropped %d rows of steps after %d (an earlier run's, or steps this "
                    "run takes again)", path, len(lines) - len(kept), step)
    return len(lines) - len(kept)


def train(cfg: RecipeConfig) -> list[dict[str, Any]]:
    """Run the recipe; returns the metrics rows of the steps this call trained.

    Under ``torchrun`` it joins the process group (if not joined yet) and leaves it open:
    the group belongs to the program (`main` closes it), so one program may call `train`
    more than once (e.g. a run, then its resumption).
    """
    # ---- setup ---------------------------------------------------------------------------
    start_time = time.perf_counter()
    info = init_distributed(cfg.device)
    out = Path(cfg.output_dir)
    checkpoint = latest_checkpoint(out) if cfg.resume else None
    torch.manual_seed(cfg.seed)
    model, tokenizer, preprocess = load_model(cfg, checkpoint, info.device)
    set_trainable(model, cfg)
    module = TrainModule(model.to(info.device).train(), cfg.boundary, cfg.window,
                         cfg.reading_loss)
    if checkpoint is not None:
        load_heads(checkpoint, module)  # before sharding, as the model's weights
    elif cfg.reading_head_init is not None:
        load_heads_file(cfg.reading_head_init, module)
    shard(module, info, cfg.fsdp_gather_dtype if info.device.type == "cuda" else None)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad],
                                  lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    step = 0
    if checkpoint is not None:
        step = load_training_state(checkpoint, module, optimizer, scheduler, info)["step"]
        log.info("resumed from %s at step %d", checkpoint, step)
        # the next step's rate from this run's curriculum, which a resumed call may have sized
        # again (`training.curriculum fit`); the same curriculum gives the rate saved
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * lr_factor(step, cfg)
    world = WorldConfig(num_frames=cfg.frames, height=model.image_size,
                        width=model.image_size, **cfg.world)
    data = DataSource(cfg, world, tokenizer, preprocess, model.config.llm.vocab_size,
                      reading_cell=token_cell(model) if cfg.reading_loss > 0 else None,
                      frame_time=model.config.visual.frame_time)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        keep_metrics_through(out / "metrics.jsonl", step)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        n_train = sum(p.numel() for p in module.parameters() if p.requires_grad)
        log.info("training %d parameters on %d rank(s), %s; %d steps in %d stages",
                 n_train, info.world_size, info.device, cfg.total_steps, len(cfg.stages))
    last = min(cfg.total_steps, cfg.max_steps or cfg.total_steps)

    def save(at: int) -> None:
        if not cfg.checkpoints:
            return
        # with LoRA the model's state dict holds the merged weights: ``model/`` is the trained
        # model; W0 and the adapters (for resuming) go to LORA_FILE beside it
        adapters = lora_state(module.videoxl) if cfg.lora_rank is not None else None
        folder = save_checkpoint(out, at, module, optimizer, scheduler, tokenizer, info,
                                 {"config": cfg.to_dict(), "stage": cfg.stage_at(at)[0]},
                                 keep=cfg.keep_checkpoints)
        if adapters is not None and info.is_main:
            save_lora(module.videoxl, folder / LORA_FILE, adapters)

    def plan(s: int) -> tuple[range, tuple[int, ...], TaskMix | None] | None:
        if s > last:
            return None
        stage = cfg.stage_at(s)[1]
        return data.step_indices(s, info), stage.ratios, stage.mix

    # ---- train ---------------------------------------------------------------------------
    with contextlib.ExitStack() as stack:
        prefetch = stack.enter_context(Prefetcher(data, cfg.workers, plan)) if cfg.workers \
            else None
        rows: list[dict[str, Any]] = []
        while step < last:
            step += 1
            t0 = time.perf_counter()
            stage_index, stage = cfg.stage_at(step)
            lr = optimizer.param_groups[0]["lr"]
            if prefetch is None:
                examples = data.step_examples(step, stage.ratios, info, stage.mix)
            else:
                examples = prefetch.get(step)
            t_data = time.perf_counter() - t0
            module.reading_head_only = step <= cfg.reading_warmup_steps
            stats = train_step(module, optimizer, scheduler, examples, info, cfg)
            dt = time.perf_counter() - t0
            row = {"step": step, "stage": stage_index, "ratios": list(stage.ratios), "lr": lr,
                   **stats, "tokens_per_s": stats["llm_tokens"] / dt, "step_s": dt,
                   "data_s": t_data, "ranks": info.world_size}
            rows.append(row)
            if info.is_main:
                with (out / "metrics.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                if step % cfg.log_every == 0 or step == 1 or step == last:
                    log.info("step %d/%d stage %d %s loss %.4f lr %.2e grad %.3f mem %.0f tok "
                             "%.0f tok/s %.2f s/step (data %.2f s)", step, cfg.total_steps,
                             stage_index, stage.ratios, row["loss"], lr, row["grad_norm"],
                             row["memory_tokens"], row["tokens_per_s"], dt, t_data)
                    log.info("loss per task: %s", " ".join(
                        f"{k} {v:.3f}" for k, v in row["task_loss"].items()))
                    if "reading_loss" in row:
                        read = "-" if row["sign_read"] is None else \
                            f"{100 * row['sign_read']:.1f} %"
                        log.info("answer loss %.4f; reading head: loss %.4f, signs read "
                                 "exactly %s", row["answer_loss"], row["reading_loss"], read)
                    if "peak_gib" in row:
                        log.info("peak GPU memory per rank: %s GiB",
                                 " ".join(f"{g:.1f}" for g in row["peak_gib"]))
            out_of_time = cfg.max_minutes is not None and \
                time.perf_counter() - start_time > cfg.max_minutes * 60
            (out_of_time_any,) = all_reduce_sum([float(out_of_time)], info)  # all ranks agree
            if out_of_time_any:
                log.info("max_minutes reached at step %d", step)
                save(step)
                return rows
            if step == last or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                save(step)
        return rows


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO if rank == "0" else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        train(cfg)
    finally:
        close(init_distributed(cfg.device))


if __name__ == "__main__":
    main()
