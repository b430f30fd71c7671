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

The loss is returned as a *sum* over answer tokens with the token count, so the recipe can
normalise over a whole (accumulated, distributed) batch.

Letters: L layers, B batch (1), G kv heads, M memory tokens, D head_dim, N frames,
T visual tokens per frame, C hidden, Q question tokens, A answer tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamvxl.intervals import BoundaryConfig
from streamvxl.model.cache import ConcatCache
from streamvxl.model.decoder import ChunkKV
from streamvxl.model.encoder import encode_interval
from streamvxl.model.videoxl import VideoXL
from training.batch import Example, WindowPlan, plan_windows


@dataclass
class Counts:
    """What one forward processed (plain ints, for logging and loss normalisation)."""

    answer_tokens: int = 0
    """Loss targets."""
    llm_tokens: int = 0
    """Tokens through the LLM: sink, windows (raw + VSTs), questions and answers."""
    memory_tokens: int = 0
    """Retained tokens at question time: sink + all VSTs."""
    windows: int = 0
    intervals: int = 0

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
    """The sink and every window's VSTs: pre-RoPE keys and values (L, 1, G, M, D) each, and
    the number of tokens the LLM processed. ``tokens`` (1, N*T, C) keep their graph."""
    sink = encode_prefix(model, prefix_ids[None])  # (L, 1, G, P, D)
    mem_k, mem_v = sink.keys, sink.values
    processed = prefix_ids.numel()
    for w in plan:
        # One window per call (w spans at most `window` raw tokens): identical to
        # `encode_interval` over the whole interval, where a later window also sees the
        # earlier windows' VSTs, but each window may take its own ratio.
        kv = encode_interval(model, mem_k, mem_v, tokens[:, w.start:w.end], w.ratio, window)
        processed += (w.end - w.start) + kv.keys.shape[3]
        mem_k, mem_v = _cat(mem_k, kv.keys), _cat(mem_v, kv.values)
    return mem_k, mem_v, processed


def answer_loss(model: VideoXL, mem_k: torch.Tensor, mem_v: torch.Tensor,
                question: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (float32 scalar) of ``answer`` (A,) teacher-forced after
    ``question`` (Q,), both after the memory."""
    ids = torch.cat((question, answer))[None]  # (1, Q+A)
    cache = ConcatCache(mem_k, mem_v, model.config.llm.rope_theta)
    hidden, _ = model.model.forward_chunk(text_embeddings(model, ids), cache.length, cache,
                                          need_hidden=True)  # (1, Q+A, C)
    q, a = question.numel(), answer.numel()
    logits = model.logits(hidden[:, q - 1:q + a - 1])  # (1, A, V): position i predicts i + 1
    return F.cross_entropy(logits[0].float(), answer, reduction="sum")


def example_loss(model: VideoXL, example: Example, boundary: BoundaryConfig,
                 window: int | None = None) -> tuple[torch.Tensor, Counts]:
    """Summed answer cross-entropy of one example (float32 scalar) and its `Counts`."""
    device = model.device
    window = window or model.config.vst.window
    frames = model.encode_frames(example.pixels.to(device))
    n, t, c = frames.tokens.shape
    tokens = frames.tokens.reshape(1, n * t, c)  # (1, N*T, C), frame-major
    plan = plan_windows(frames.embeddings, t, window, boundary, example.ratios, example.seed)
    mem_k, mem_v, processed = build_memory(model, example.prefix_ids.to(device), tokens, plan,
                                           window)
    loss = torch.zeros((), device=device, dtype=torch.float32)
    for question, answer in zip(example.questions, example.answers, strict=True):
        loss = loss + answer_loss(model, mem_k, mem_v, question.to(device), answer.to(device))
        processed += question.numel() + answer.numel()
    counts = Counts(answer_tokens=example.num_answer_tokens, llm_tokens=processed,
                    memory_tokens=mem_k.shape[3], windows=len(plan),
                    intervals=len({w.interval for w in plan}))
    return loss, counts


class TrainModule(nn.Module):
    """The model with the example loss as its ``forward``.

    FSDP all-gathers parameters in module forward hooks; the loss touches the model through
    several methods (``encode_frames``, ``forward_chunk``, ``vst_embedding``, ...), so the
    whole example forward is made one call of this root module.
    """

    def __init__(self, model: VideoXL, boundary: BoundaryConfig, window: int | None = None
                 ) -> None:
        super().__init__()
        self.videoxl = model
        self.boundary = boundary
        self.window = window

    def forward(self, example: Example) -> tuple[torch.Tensor, Counts]:
        return example_loss(self.videoxl, example, self.boundary, self.window)


__all__ = ["Counts", "TrainModule", "answer_loss", "build_memory", "encode_prefix", "example_loss",
           "text_embeddings"]
