"""The differentiable forward of one example: frames -> memory -> teacher-forced answers -> loss.

1. Vision: the tower, projector and pooling make the visual tokens (N, T, C) and the CLS
   embeddings (N, Cv); `training.batch.plan_windows` turns the (detached) CLS into intervals and
   windows, each with its ratio.
2. Memory: the sink is the prompt prefix (`encode_prefix`); every window is compressed by
   `encode_interval` over the memory so far, and its VSTs' K/V are appended. Nothing is
   detached, so the loss reaches earlier windows *through the carried VST K/V* (and the sink),
   as Video-XL trains.
3. Answers: for each QA, one `forward_chunk` over [question | answer] after the memory
   (a `ConcatCache`, autograd-safe); cross-entropy on the answer tokens only, the logits at
   position i predicting token i + 1.

Two schedules compute the same loss. Window-major (`build_memory` + `answers_loss`) runs the
whole decoder once per window, then once for the answers: the inference order. Layer-major
(`layer_major_loss`, the recipe's) runs each decoder layer once over [prompt | window 1 | ... |
answers] (`DecoderLayer.forward_sequence`): the layer count of module calls is fixed whatever
the windows, which lets FSDP gather and free one layer at a time (`training.parallel`). The two
agree to float64 rounding (`tests/training/test_layer_major.py`).

The loss is returned as a *sum* over answer tokens with the token count, so the recipe can
normalise over a whole (accumulated, distributed) batch. `group_loss` also keeps each answer's
own sum, detached and tagged "kind/task" (`Counts.task_losses`), so a run logs its loss per
task: a mixed batch's mean says little about, say, whether the needles are being learnt.

A `TrainModule` with a reading weight adds an auxiliary loss: a linear `ReadingHead` reads
each visual token's sign characters in order (`training.reading`), so the projector has to
keep them for the LLM.

Letters: L layers, B examples in a group, R answers, G kv heads, M memory tokens, D head_dim, N frames,
T visual tokens per frame, C hidden, Q question tokens, A answer tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from streamvxl.intervals import BoundaryConfig
from streamvxl.model.cache import ConcatCache
from streamvxl.model.decoder import ChunkKV, SequenceChunk, TokenRoute
from streamvxl.model.encoder import encode_interval, window_embeddings
from streamvxl.model.frame_time import stamp_frames
from streamvxl.model.layout import window_layout
from streamvxl.model.rope import Rotation
from streamvxl.model.videoxl import VideoXL
from training.batch import Example, WindowPlan, plan_windows
from training.lora import merge_once
from training.reading import ReadingHead, reading_loss, signs_read, slots_for, token_cell

Schedule = Literal["layers", "windows"]


@dataclass
class Counts:
    """What one forward processed (ints, for logging and loss normalisation; summed with
    ``+=``), and its answers' losses per task."""

    answer_tokens: int = 0
    """Loss targets."""
    llm_tokens: int = 0
    """Tokens through the LLM: sink, windows (raw + VSTs), questions and answers."""
    memory_tokens: int = 0
    """Retained tokens at question time: sink + all VSTs."""
    windows: int = 0
    intervals: int = 0
    task_losses: list[tuple[list[str], torch.Tensor, list[int]]] = field(default_factory=list)
    """Per forward: each answer's "kind/task", its summed cross-entropy (R,) (detached, still
    on the device: read after the backward, so logging adds no sync) and its token count."""
    reading: list[torch.Tensor] = field(default_factory=list)
    """Per forward with a reading head: (4,) float64 on the device -- the reading loss summed
    over frames (its mean times N), N, frames whose sign was read exactly, frames with a sign."""

    def __iadd__(self, other: Counts) -> Counts:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)
        return self


def _cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat((a, b), dim=3)  # along M of (L, B, G, M, D)


def text_embeddings(model: VideoXL, ids: torch.Tensor) -> torch.Tensor:
    """Token embeddings (B, T, C) in the compute dtype.

    Under autocast an embedding lookup stays float32 while the projections give bfloat16;
    `forward_chunk` takes the RoPE dtype from its input, so float32 text would meet bfloat16
    values in attention. Casting the input keeps the whole chunk in the autocast dtype, as
    the visual rows already are (they come out of the autocast projector).
    """
    embeds = model.embed_ids(ids)
    kind = embeds.device.type
    if torch.is_autocast_enabled(kind):
        embeds = embeds.to(torch.get_autocast_dtype(kind))
    return embeds


def encode_prefix(model: VideoXL, ids: torch.Tensor) -> ChunkKV:
    """The sink: pre-RoPE K/V (L, B, G, P, D) of the prompt prefix ids (B, P) -- what
    `streamvxl.model.encoder.encode_text` computes on an empty memory, autocast-safe."""
    cache = ConcatCache(None, None, model.config.llm.rope_theta)
    _, kv = model.model.forward_chunk(text_embeddings(model, ids), 0, cache, need_hidden=False)
    return kv


def build_memory(model: VideoXL, prefix_ids: torch.Tensor, tokens: torch.Tensor,
                 plan: list[WindowPlan], window: int
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The sink and every window's VSTs: pre-RoPE keys and values (L, B, G, M, D) each, and
    the number of tokens the LLM processed per example. ``tokens`` (B, N*T, C) keep their graph;
    the B examples share the sink (one ``prefix_ids`` (P,)) and the window ``plan``."""
    b = tokens.shape[0]
    sink = encode_prefix(model, prefix_ids[None])  # (L, 1, G, P, D)
    mem_k = sink.keys.expand(-1, b, -1, -1, -1)  # (L, B, G, P, D): one prompt, B examples
    mem_v = sink.values.expand(-1, b, -1, -1, -1)
    processed = prefix_ids.numel()
    for w in plan:
        # One window per call (w spans at most `window` raw tokens): identical to
        # `encode_interval` over the whole interval, where a later window also sees the
        # earlier windows' VSTs, but each window may take its own ratio.
        kv = encode_interval(model, mem_k, mem_v, tokens[:, w.start:w.end], w.ratio, window)
        processed += (w.end - w.start) + (kv.keys.shape[3] if w.ratio is not None else 0)
        mem_k, mem_v = _cat(mem_k, kv.keys), _cat(mem_v, kv.values)
    return mem_k, mem_v, processed


def answer_loss(model: VideoXL, mem_k: torch.Tensor, mem_v: torch.Tensor,
                question: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (float32 scalar) of ``answer`` (A,) teacher-forced after
    ``question`` (Q,), both after the memory (L, 1, G, M, D)."""
    return answers_loss(model, mem_k, mem_v, [question], [answer], torch.zeros(1, dtype=torch.long))


def answers_loss(model: VideoXL, mem_k: torch.Tensor, mem_v: torch.Tensor,
                 questions: list[torch.Tensor], answers: list[torch.Tensor],
                 owner: torch.Tensor, row_losses: list[torch.Tensor] | None = None
                 ) -> torch.Tensor:
    """Summed cross-entropy (float32 scalar) of R answers, each teacher-forced after its
    question, in one batched pass: row r reads memory row ``owner[r]`` of (L, B, G, M, D).
    With ``row_losses``, each answer's own sum (R,), detached, is appended to it.

    Rows are [question | answer] right-padded to the longest: the chunk is causal, so a row's
    real tokens never see its padding, and the loss reads only real answer positions.
    """
    device = mem_k.device
    ids, picked, targets = answer_rows(questions, answers)
    ids, picked, targets = ids.to(device), picked.to(device), targets.to(device)
    if not torch.equal(owner.cpu(), torch.arange(mem_k.shape[1])):  # on the host: no sync
        rows_of = owner.to(device)
        mem_k, mem_v = mem_k.index_select(1, rows_of), mem_v.index_select(1, rows_of)  # (L,R,G,M,D)
    cache = ConcatCache(mem_k, mem_v, model.config.llm.rope_theta)
    hidden, _ = model.model.forward_chunk(text_embeddings(model, ids), cache.length,
                                          cache, need_hidden=True)  # (R, Q+A, C)
    return _answer_ce(model, hidden, picked, targets, answers, row_losses)


def answer_rows(questions: list[torch.Tensor], answers: list[torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The [question | answer] rows right-padded to the longest (R, Q+A) with id 0, which of
    their positions predict an answer token (R, Q+A) bool, and those targets (sum A,).

    The chunk is causal, so a row's real tokens never see its padding, and the loss reads only
    real answer positions.
    """
    rows = [torch.cat((q, a)) for q, a in zip(questions, answers, strict=True)]
    width = max(r.numel() for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)  # (R, Q+A), padded with id 0
    picked = torch.zeros(len(rows), width, dtype=torch.bool)  # positions that predict answers
    for i, (row, q, a) in enumerate(zip(rows, questions, answers, strict=True)):
        ids[i, :row.numel()] = row
        picked[i, q.numel() - 1:q.numel() + a.numel() - 1] = True  # position j predicts j + 1
    return ids, picked, torch.cat(answers)  # targets row-major, as `picked` is read


def _answer_ce(model: VideoXL, hidden: torch.Tensor, picked: torch.Tensor,
               targets: torch.Tensor, answers: list[torch.Tensor],
               row_losses: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Summed cross-entropy of the final-normed ``hidden`` (R, Q+A, C) at ``picked``; with
    ``row_losses``, each of the R ``answers``' own sum (R,), detached, is appended to it."""
    logits = model.logits(hidden[picked])  # (sum A, V)
    # at least float32 (bfloat16 logits under autocast), float64 stays float64 (tests)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if row_losses is None:
        return F.cross_entropy(logits, targets, reduction="sum")
    per_token = F.cross_entropy(logits, targets, reduction="none")  # (sum A,): one softmax
    lengths = torch.tensor([a.numel() for a in answers])  # host: no sync
    row_of = torch.repeat_interleave(torch.arange(len(answers)), lengths)
    rows = per_token.new_zeros(len(answers))
    row_losses.append(rows.index_add_(0, row_of.to(rows.device), per_token.detach()))
    return per_token.sum()


def layer_major_loss(model: VideoXL, prefix_ids: torch.Tensor, tokens: torch.Tensor,
                     plan: list[WindowPlan], questions: list[torch.Tensor],
                     answers: list[torch.Tensor], owner: torch.Tensor,
                     row_losses: list[torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`build_memory` then `answers_loss`, computed one decoder layer at a time.

    Every layer runs once over the chunks [prompt (1, P) | window 1 (B, .) | ... | answers
    (R, Q+A)] (`DecoderLayer.forward_sequence`): window w attends to the prompt and the VSTs
    of windows before w at that layer, the answers (row r reading memory row ``owner[r]``) to
    all of them. Returns the summed answer cross-entropy and the memory, pre-RoPE keys and
    values (L, B, G, M, D), as `build_memory` gives it. ``row_losses``: as in `answers_loss`.
    """
    device, d = tokens.device, model.config.llm.dim_per_head
    theta = model.config.llm.rope_theta
    ids, picked, targets = answer_rows(questions, answers)
    ids, picked, targets = ids.to(device), picked.to(device), targets.to(device)
    prompt = text_embeddings(model, prefix_ids[None])  # (1, P, C)
    dtype = prompt.dtype

    def rotation(start: int, length: int) -> Rotation:
        return Rotation(torch.arange(start, start + length, device=device), d, theta, dtype)

    xs = [prompt]
    chunks = [SequenceChunk(rotation(0, prompt.shape[1]))]
    kept = prompt.shape[1]  # memory rows before the next chunk: positions are re-packed
    for w in plan:
        layout = window_layout(w.end - w.start, w.ratio)  # `encode_interval`'s default rule
        xs.append(window_embeddings(model, tokens[:, w.start:w.end], layout))
        route = None if w.ratio is None else TokenRoute(vst=layout.on(device)[1])
        chunks.append(SequenceChunk(rotation(kept, layout.length), route,
                                    keep=None if route is None else route.vst))
        kept += layout.num_raw if w.ratio is None else layout.num_vst
    xs.append(text_embeddings(model, ids))  # (R, Q+A, C)
    reads = owner.to(device)
    chunks.append(SequenceChunk(rotation(kept, ids.shape[1]), reads=reads,
                                keep=torch.zeros(0, dtype=torch.long, device=device)))
    # the last layer: only the answers' outputs are read; the others' K/V suffice
    last_chunks = [replace(c, need_output=False) for c in chunks[:-1]] + chunks[-1:]
    layers = model.model.layers
    mem_k, mem_v = [], []
    for i, layer in enumerate(layers):
        outs, k, v = layer.forward_sequence(xs, last_chunks if i == len(layers) - 1 else chunks,
                                            theta)
        xs = outs
        mem_k.append(k)
        mem_v.append(v)
    hidden = model.model.norm(xs[-1])  # (R, Q+A, C)
    loss = _answer_ce(model, hidden, picked, targets, answers, row_losses)
    return loss, torch.stack(mem_k), torch.stack(mem_v)


def group_loss(model: VideoXL, examples: list[Example], boundary: BoundaryConfig,
               window: int | None = None, plan: list[WindowPlan] | None = None,
               schedule: Schedule = "layers", reading_head: ReadingHead | None = None,
               reading_weight: float = 0.0, reading_head_only: bool = False
               ) -> tuple[torch.Tensor, Counts]:
    """Summed answer cross-entropy (float32 scalar) of examples run as one batch, and their
    `Counts` (summed over the examples).

    With a ``reading_head``, the loss also holds ``reading_weight`` x (the group's answer
    tokens) x the head's mean reading loss over the group's visual tokens: the recipe divides
    the sum by the answer tokens, so its step loss is the answer mean plus ``reading_weight``
    times the (answer-token weighted) reading mean, whatever the group sizes.
    ``reading_head_only``: the head reads detached tokens, so the reading term trains the head
    alone (a fresh head's first gradients into the projector would be noise).

    The examples must have the same frame count and prompt prefix. They share one window
    plan: ``plan``, or the one the boundary detector draws from the *first* example's frames
    and seed. So a group of one is exactly that example's own dynamic-interval forward; a
    larger group trades per-example intervals of the others for a batched GPU pass.
    ``schedule``: "layers" (`layer_major_loss`) or "windows" (`build_memory` + `answers_loss`),
    the same loss in another order (see the module docstring).
    """
    device = model.device
    window = window or model.config.vst.window
    lead = examples[0]
    n = lead.pixels.shape[0]
    for e in examples[1:]:
        if e.pixels.shape != lead.pixels.shape or not torch.equal(e.prefix_ids, lead.prefix_ids):
            raise ValueError("a group's examples need the same frame count, image size and "
                             "prompt prefix; group them by frame count")
        if (e.stamp_ids is None) != (lead.stamp_ids is None):
            raise ValueError("a group's examples are all stamped with their frames' times or "
                             "none is")
        if e.open_tail != lead.open_tail:
            raise ValueError("a group's examples share one window plan: an open tail and a "
                             "stored one cannot share it (`group_examples` keeps them apart)")
    pixels = torch.cat([e.pixels for e in examples]).to(device)  # (B*N, 3, S, S)
    frames = model.encode_frames(pixels)
    raw = frames.tokens  # (B*N, T, C)
    if lead.stamp_ids is not None:  # each frame after its time stamp: (B*N, K + T, C)
        raw = stamp_frames(model.embed_ids, raw, torch.cat([e.stamp_ids for e in examples]))
    _, t, c = raw.shape
    b = len(examples)
    tokens = raw.reshape(b, n * t, c)  # (B, N*T, C), frame-major per example
    if plan is None:
        plan = plan_windows(frames.embeddings[:n], t, window, boundary, lead.ratios, lead.seed,
                            lead.open_tail)
    reading: list[torch.Tensor] = []
    if reading_head is not None:
        read_from = frames.tokens.detach() if reading_head_only else frames.tokens
        aux, reading = _reading_aux(reading_head, read_from, examples)
    owner = torch.tensor([i for i, e in enumerate(examples) for _ in e.questions])
    questions = [q for e in examples for q in e.questions]
    answers = [a for e in examples for a in e.answers]
    prefix = lead.prefix_ids.to(device)
    rows: list[torch.Tensor] = []
    with merge_once(model):  # LoRA layers merge once, not once per chunk
        if schedule == "layers":
            loss, mem_k, _ = layer_major_loss(model, prefix, tokens, plan, questions, answers,
                                              owner, rows)
        elif schedule == "windows":
            mem_k, mem_v, _ = build_memory(model, prefix, tokens, plan, window)
            loss = answers_loss(model, mem_k, mem_v, questions, answers, owner, rows)
        else:
            raise ValueError(f"schedule must be 'layers' or 'windows', not {schedule!r}")
    answer_tokens = sum(e.num_answer_tokens for e in examples)
    if reading_head is not None:
        loss = loss + reading_weight * answer_tokens * aux
    processed = prefix.numel() + sum(
        (w.end - w.start) + (window_layout(w.end - w.start, w.ratio).num_vst if w.ratio else 0)
        for w in plan)
    qa_tokens = sum(q.numel() + a.numel() for e in examples
                    for q, a in zip(e.questions, e.answers, strict=True))
    counts = Counts(answer_tokens=answer_tokens,
                    llm_tokens=processed * b + qa_tokens, memory_tokens=mem_k.shape[3] * b,
                    windows=len(plan) * b, intervals=len({w.interval for w in plan}) * b,
                    task_losses=[(task_keys(examples), rows[0], [a.numel() for a in answers])],
                    reading=reading)
    return loss, counts


def _reading_aux(head: ReadingHead, tokens: torch.Tensor, examples: list[Example]
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The mean reading loss of the group's visual tokens (B*N, T, C) and its `Counts.reading`
    row (detached, on the device)."""
    if any(e.reading is None for e in examples):
        raise ValueError("a reading head needs every example's reading labels: make them with "
                         "make_example(..., reading_cell=token_cell(model))")
    labels = torch.cat([e.reading for e in examples]).to(tokens.device)  # (B*N, T, S)
    if labels.shape[:2] != tokens.shape[:2] or labels.shape[2] != head.slots:
        raise ValueError(f"reading labels {tuple(labels.shape)} do not fit the visual tokens "
                         f"{tuple(tokens.shape[:2])} and the head's {head.slots} slots")
    logits = head(tokens)  # (B*N, T, S, K)
    loss = reading_loss(logits, labels)
    with torch.no_grad():
        read, signed = signs_read(logits, labels)
        row = torch.stack((loss.detach().double() * labels.shape[0],
                           torch.tensor(float(labels.shape[0]), dtype=torch.float64,
                                        device=labels.device),
                           read.double(), signed.double()))
    return loss, [row]


def task_keys(examples: list[Example]) -> list[str]:
    """"kind/task" of every answer of ``examples``, in their order (e.g. "image/needle": a
    still's sign, as the reading stage asks)."""
    keys = []
    for e in examples:
        if len(e.qa) != len(e.questions):
            raise ValueError(f"an example has {len(e.qa)} QAs but {len(e.questions)} questions")
        keys += [f"{e.kind}/{qa.task}" for qa in e.qa]
    return keys


def example_loss(model: VideoXL, example: Example, boundary: BoundaryConfig,
                 window: int | None = None) -> tuple[torch.Tensor, Counts]:
    """Summed answer cross-entropy of one example (float32 scalar) and its `Counts`."""
    return group_loss(model, [example], boundary, window)


def group_examples(examples: list[Example], size: int, max_frames: int | None = None
                   ) -> list[list[Example]]:
    """Split a step's examples into forward groups of at most ``size`` with equal frame counts
    (and image sizes) and the same kind of memory (compressed or not, the last interval open
    or not: a group shares its lead's window plan), in order of first appearance; ``size`` 1
    keeps every example alone.
    ``max_frames`` also caps a group's frames (at least one example a group): a mix of short
    and long videos then fills each forward with about the same work, where a size fit for
    24-frame videos would put 80 of 128 frames in one forward."""
    by_shape: dict[tuple[int, ...], list[Example]] = {}
    for e in examples:
        by_shape.setdefault((*e.pixels.shape, bool(e.ratios), e.open_tail), []).append(e)
    groups = []
    for members in by_shape.values():
        cap = size if max_frames is None else max(1, min(size, max_frames //
                                                         members[0].pixels.shape[0]))
        groups += [members[i:i + cap] for i in range(0, len(members), cap)]
    return groups


class TrainModule(nn.Module):
    """The model with the example loss as its ``forward``.

    FSDP all-gathers parameters in module forward hooks; the loss touches the model through
    several methods (``encode_frames``, ``forward_sequence``, ``vst_embedding``, ...), so the
    whole example forward is made one call of this root module. It runs the layer-major
    schedule: each decoder layer is called once per forward, whatever the windows.
    """

    def __init__(self, model: VideoXL, boundary: BoundaryConfig, window: int | None = None,
                 reading_weight: float = 0.0) -> None:
        super().__init__()
        self.videoxl = model
        self.boundary = boundary
        self.window = window
        self.reading_weight = reading_weight
        self.reading_head_only = False
        """Set by the recipe while the reading head warms up: it then learns alone."""
        self.reading_head: ReadingHead | None = None
        """With a positive ``reading_weight``: reads each visual token's characters (a
        training-only head; its weights are the module's only keys outside ``videoxl.``)."""
        if reading_weight > 0:
            self.reading_head = ReadingHead(model.config.llm.hidden_size,
                                            slots_for(token_cell(model))).to(model.device)

    def forward(self, examples: Example | list[Example]) -> tuple[torch.Tensor, Counts]:
        group = [examples] if isinstance(examples, Example) else examples
        return group_loss(self.videoxl, group, self.boundary, self.window,
                          reading_head=self.reading_head, reading_weight=self.reading_weight,
                          reading_head_only=self.reading_head_only)


__all__ = ["Counts", "Schedule", "TrainModule", "answer_loss", "answer_rows", "answers_loss",
           "build_memory", "encode_prefix", "example_loss", "group_examples", "group_loss",
           "layer_major_loss", "task_keys", "text_embeddings"]
