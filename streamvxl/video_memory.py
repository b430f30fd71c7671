"""`VideoMemory`: push frames, ask questions at any moment.

Frames are validated, preprocessed and run through the vision tower as they arrive; their tokens
wait raw in the open interval until the online segmenter closes it, then the interval is
compressed into VST K/V and stored. A question attends to the sink, the stored intervals, and the
open interval's raw tokens. This class is synchronous: ``push`` returns when the frame (and any
interval it closed) has been processed.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .answer import Answer, IntervalSpan, MemoryStats, Timings
from .config import MemoryConfig
from .errors import CheckpointError, ConfigError, FrameError, QuestionError
from .frames import frame_timestamp, to_rgb_uint8
from .intervals.segmenter import ClosedInterval, IntervalSegmenter
from .memory.engine import MemoryEngine
from .memory.open_interval import OpenInterval
from .memory.store import IntervalRecord
from .model.generate import Sampling
from .model.videoxl import VideoXL
from .preprocess import Preprocessor

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = 4096
"""Longest answer `ask` generates."""


def _locked(method):
    """Run the method under the memory's lock: one call at a time, from any thread."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class VideoMemory:
    """A streaming video memory over a Video-XL model.

    Args:
        model: the model; None loads the embedded default model, streamvxl-tiny (raises
            `CheckpointError` if an installation lacks its weights; a Video-XL checkpoint
            loads with `VideoMemory.from_pretrained`).
        tokenizer: a Hugging Face tokenizer for the model's vocabulary.
        config: cutting, compression, budget and prompt settings.
        preprocessor: frame preprocessing; CLIP defaults at the tower's image size if None.

    Example:
        >>> mem = VideoMemory.from_pretrained("VideoXL_weight_8")  # doctest: +SKIP
        >>> for frame in open_source("lot.mp4", fps=1):             # doctest: +SKIP
        ...     mem.push(frame)
        >>> mem.ask("When did the red car leave?").text              # doctest: +SKIP
    """

    def __init__(self, model: VideoXL | None = None, tokenizer: Any = None,
                 config: MemoryConfig | None = None,
                 preprocessor: Preprocessor | None = None) -> None:
        if model is None:  # the embedded default model (its trained part ships in the package)
            from .model.default import load_default_model

            model, default_tokenizer = load_default_model()
            tokenizer = tokenizer if tokenizer is not None else default_tokenizer
        if not model.has_vision:
            raise CheckpointError("this model has no vision tower (text-only checkpoint); load a "
                                  "Video-XL checkpoint")
        if tokenizer is None:
            raise CheckpointError("VideoMemory needs the model's tokenizer; put tokenizer files "
                                  "in the checkpoint folder or pass tokenizer=")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or MemoryConfig()
        self._lock = threading.RLock()
        self.preprocessor = preprocessor or Preprocessor(model.image_size)
        window = self.config.window or model.config.vst.window
        self._check_budget(window, self._prefix_ids().numel())
        self.engine = MemoryEngine.for_model(model, window, self.config.token_budget,
                                             self.config.remainder, self.config.eviction)
        self._segmenter = IntervalSegmenter(self.config.boundary)
        self._open = OpenInterval()
        self._eos_ids = self._stop_ids()
        self._reset_counters()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, config: MemoryConfig | None = None,
                        device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> VideoMemory:
        """Load a Video-XL checkpoint folder (config.json, safetensors, tokenizer files).

        Raises:
            CheckpointError: the folder is not a Video-XL checkpoint or lacks a tokenizer.
        """
        from .model.loading import load_videoxl

        folder = Path(path)
        model = load_videoxl(folder, device=device, dtype=dtype)
        return cls(model, load_tokenizer(folder), config,
                   Preprocessor.from_folder(folder, model.image_size))

    # -- ingest -------------------------------------------------------------------------------
    @_locked
    def push(self, frame: object, timestamp: float | None = None) -> None:
        """Add one frame.

        Args:
            frame: H x W x 3 RGB as a uint8/float numpy array or torch tensor, a PIL image, an
                ``av.VideoFrame`` or a `Frame` from `open_source`.
            timestamp: seconds; defaults to the frame's own time (``Frame``, ``av.VideoFrame``),
                else the time since the first push. Must not decrease.

        Raises:
            FrameError: the frame or timestamp is invalid. Nothing is changed then.

        Thread-safe: public methods hold one lock, so a question asked from another thread
        waits for the frame in progress (and any interval it closes) and then sees a
        consistent memory. Compute does not overlap; a background worker is a separate
        component.
        """
        image = to_rgb_uint8(frame)
        ts = self._timestamp(frame, timestamp, self._last_ts)
        self._ingest([image], [ts])

    @_locked
    def extend(self, frames: Iterable[object],
               timestamps: Sequence[float] | None = None) -> None:
        """Add many frames, running the vision tower in batches of ``vision_batch_size``.

        Equivalent to pushing them one by one (the tests check this). All frames are validated
        before any is added.
        """
        images, stamps = [], []
        frames = list(frames)
        if timestamps is not None and len(timestamps) != len(frames):
            raise FrameError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        last = self._last_ts
        for i, frame in enumerate(frames):
            # copy: a capture loop may hand out one reused buffer for every frame
            images.append(to_rgb_uint8(frame).copy())
            ts = self._timestamp(frame, None if timestamps is None else timestamps[i], last)
            stamps.append(ts)
            last = ts
        for s in range(0, len(images), self.config.vision_batch_size):
            e = s + self.config.vision_batch_size
            self._ingest(images[s:e], stamps[s:e])

    @_locked
    def flush(self) -> None:
        """Close and compress the open interval (end of stream); the memory stays usable."""
        for closed in self._segmenter.flush():
            self._compress(closed)

    # -- questions ----------------------------------------------------------------------------
    @_locked
    def ask(self, question: str, max_new_tokens: int = 64, *, temperature: float = 0.0,
            top_p: float = 1.0, seed: int | None = None, output_logits: bool = False) -> Answer:
        """Answer a question from everything seen so far (memory is not changed).

        Args:
            question: the question text.
            max_new_tokens: most tokens to generate.
            temperature: 0 for greedy decoding, else sampling temperature.
            top_p: nucleus sampling mass.
            seed: seed for sampled answers.
            output_logits: also return the logits each token was picked from.

        Raises:
            QuestionError: the question is empty, not text, or too long.
            ConfigError: ``max_new_tokens``, ``temperature`` or ``top_p`` is out of range.
        """
        ids = self._question_ids(question)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not (
                1 <= max_new_tokens <= MAX_NEW_TOKENS):
            raise ConfigError(f"max_new_tokens must be an int in [1, {MAX_NEW_TOKENS}], got "
                              f"{max_new_tokens!r}")
        sampling = Sampling(temperature, top_p, seed)
        self._ensure_sink()
        first_token_at: list[float] = []
        sync = torch.cuda.synchronize if self.model.device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        result = self.engine.answer(
            self._open.raw_tokens(), ids, max_new_tokens, self._eos_ids, sampling,
            on_token=lambda _: first_token_at.append(time.perf_counter()) if not first_token_at
            else None, keep_logits=output_logits)
        sync()
        t1 = time.perf_counter()
        gen = result.generation
        text_ids = [t for t in gen.ids if t not in self._eos_ids]
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        prefill_s = (first_token_at[0] if first_token_at else t1) - t0
        return Answer(
            text=text, token_ids=gen.ids, intervals=self._spans(),
            timings=Timings(prefill=prefill_s, decode=t1 - t0 - prefill_s, total=t1 - t0),
            context_tokens=result.context_tokens, finished=gen.stopped_on_eos,
            logits=torch.stack(gen.step_logits) if output_logits else None)

    # -- state --------------------------------------------------------------------------------
    @property
    @_locked
    def intervals(self) -> list[IntervalRecord]:
        """The compressed intervals in memory, oldest first."""
        return list(self.engine.store.records)

    @_locked
    def stats(self) -> MemoryStats:
        store = self.engine.store
        return MemoryStats(
            frames_seen=self._frames_seen, intervals_closed=self._intervals_closed,
            intervals_in_memory=len(store.records), intervals_evicted=store.evicted,
            open_frames=len(self._open), sink_tokens=store.sink_tokens,
            memory_tokens=store.num_tokens, token_budget=store.token_budget,
            memory_bytes=store.arena.used_bytes, allocated_bytes=store.arena.allocated_bytes)

    @_locked
    def reset(self) -> None:
        """Forget everything seen; the model and configuration stay."""
        self.engine.store.clear()
        self._segmenter.reset()
        self._open.clear()
        self._reset_counters()

    # -- internals ----------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self._frames_seen = 0
        self._intervals_closed = 0
        self._last_ts: float | None = None
        self._clock0: float | None = None

    def _timestamp(self, frame: object, given: float | None, last: float | None) -> float:
        ts = given if given is not None else frame_timestamp(frame)
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
            raise FrameError(f"timestamp must be a number of seconds, got {ts!r}")
        if ts is None:
            now = time.monotonic()
            if self._clock0 is None:
                self._clock0 = now
            ts = now - self._clock0
        ts = float(ts)
        if not np.isfinite(ts):
            raise FrameError(f"timestamp must be a finite number of seconds, got {ts}")
        if last is not None and ts < last:
            raise FrameError(f"timestamp {ts:.3f}s is before the previous frame's "
                             f"{last:.3f}s; timestamps must not decrease")
        return ts

    @torch.no_grad()
    def _ingest(self, images: list[np.ndarray], stamps: list[float]) -> None:
        self._ensure_sink()
        pixels = self.preprocessor(images, self.model.device, self.model.dtype)
        out = self.model.encode_frames(pixels)  # tokens (F, T, C), embeddings (F, E)
        # One host copy per batch, before any interval is queued: a per-frame copy would wait
        # for the interval encoder each time and leave the GPU idle while the host catches up.
        embeddings = out.embeddings.float().cpu()
        for i, ts in enumerate(stamps):
            # the segmenter validates the embedding and changes nothing when it refuses it
            closed = self._segmenter.push(self._frames_seen, embeddings[i])
            self._open.append(out.tokens[i], out.embeddings[i], ts)
            self._frames_seen += 1
            self._last_ts = ts
            for c in closed:
                self._compress(c)

    def _compress(self, closed: ClosedInterval) -> None:
        span = self._open.take(closed.num_frames)
        policy = self.config.ratio_policy
        ratio = None if policy is None else policy.choose(closed.similarities)
        if policy is not None and ratio not in policy.ratios:
            raise ConfigError(f"ratio policy {policy!r} chose {ratio}, outside its ratios "
                              f"{policy.ratios}; the budget check relies on that set")
        record, evicted = self.engine.compress(
            span.tokens, ratio, t_start=span.timestamps[0], t_end=span.timestamps[-1],
            frame_start=closed.start, frame_end=closed.end,
            embedding=span.embeddings.float().mean(0).cpu())
        self._intervals_closed += 1
        log.debug("interval %d: frames %d..%d at r=%s -> %d tokens (%d evicted)", record.id,
                  closed.start, closed.end, ratio, record.num_tokens, len(evicted))

    def _prefix_ids(self) -> torch.Tensor:
        ids = self.tokenizer(self.config.prompt.prefix, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    def _ensure_sink(self) -> None:
        if not self.engine.has_sink:
            self.engine.set_prefix(self._prefix_ids())

    def _question_ids(self, question: object) -> torch.Tensor:
        if not isinstance(question, str):
            raise QuestionError(f"a question must be a str, got {type(question).__name__}")
        if not question.strip():
            raise QuestionError("the question is empty; ask something about the video")
        text = self.config.prompt.format_question(question.strip())
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        q_len = len(self.tokenizer(question.strip(), add_special_tokens=False)["input_ids"])
        if q_len > self.config.max_question_tokens:
            raise QuestionError(f"the question has {q_len} tokens, more than "
                                f"max_question_tokens={self.config.max_question_tokens}; "
                                "shorten it or raise MemoryConfig.max_question_tokens")
        return torch.tensor(ids, dtype=torch.long)

    def _spans(self) -> list[IntervalSpan]:
        spans = [IntervalSpan(r.t_start, r.t_end, r.num_frames, r.ratio, True)
                 for r in self.engine.store.records]
        if len(self._open):
            ts = self._open.timestamps
            spans.append(IntervalSpan(ts[0], ts[-1], len(ts), None, False))
        return spans

    def _stop_ids(self) -> tuple[int, ...]:
        ids = set(self.model.config.llm.eos_ids)
        if getattr(self.tokenizer, "eos_token_id", None) is not None:
            ids.add(self.tokenizer.eos_token_id)
        for s in self.config.prompt.stop_strings:
            enc = self.tokenizer(s, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                ids.add(enc[0])
        return tuple(sorted(ids))

    def _check_budget(self, window: int, sink: int) -> None:
        budget = self.config.token_budget
        if budget is None:
            return
        need = self.config.max_interval_tokens(self.model.tokens_per_frame, window)
        if budget < sink + need:
            raise ConfigError(
                f"token_budget={budget} cannot hold the {sink}-token prompt plus one interval of "
                f"up to {need} tokens; raise token_budget to at least {sink + need}, raise the "
                "ratio, or lower boundary.max_frames")


def load_tokenizer(folder: Path) -> Any:
    """The tokenizer saved in a checkpoint folder (tokenizer.json / tokenizer_config.json)."""
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                                  "vocab.json", "tokenizer.model")):
        raise CheckpointError(f"{folder} has no tokenizer files (tokenizer.json or "
                              "tokenizer_config.json); copy the model's tokenizer into it")
    import warnings

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # AutoTokenizer also parses config.json, whose llava_qwen type it does not know; the
    # warnings that causes say nothing about the tokenizer.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # transformers raises many types here
        raise CheckpointError(f"cannot load the tokenizer in {folder}: {e}") from e
    finally:
        hf_logging.set_verbosity(verbosity)
