"""Qwen2 decoder with visual-summarization-token (VST, "beacon") routing.

Identical to Qwen2 except that tokens marked as VSTs are projected by their own
``beacon_{q,k,v}_proj``; norms, ``o_proj``, the MLP and ``lm_head`` are shared. Attribute names
match the Video-XL checkpoint so its weights load without renaming. A Llama checkpoint loads as
this model with zero q/k/v biases.

The forward pass is written for chunked use: a chunk of T new tokens attends to M cached tokens
(already rotated keys) plus, causally, to itself -- causal attention aligned bottom-right, which is
Video-XL's "full-coverage" mask. SDPA takes it without a materialised mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionKernels, full_coverage_attention
from .config import LLMConfig
from .rope import Rotation, apply_rope, rope_cos_sin

# Shapes: B batch (1 per stream), T chunk tokens, M cached tokens, C hidden, H query heads,
# G key/value heads, D head_dim, V vocabulary.


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16) and x.is_cuda:
            # one fused kernel (float32 accumulation, one rounding) instead of eight passes;
            # HF rounds before the weight multiply, a difference of one half-precision ulp
            return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)
        # float32/float64 (and CPU): exactly HF's order of operations
        dtype = x.dtype
        work = torch.promote_types(dtype, torch.float32)
        normed = F.rms_norm(x.to(work), (x.shape[-1],), eps=self.eps).to(dtype)
        return self.weight * normed


@dataclass
class TokenRoute:
    """Which rows of a chunk are VSTs (int64 positions, precomputed once per window layout)."""

    vst: torch.Tensor  # (n_vst,)


def _routed(x: torch.Tensor, route: TokenRoute | None, regular: nn.Linear,
            beacon: nn.Linear) -> torch.Tensor:
    """Apply ``regular`` to ordinary rows and ``beacon`` to VST rows of x (B, T, C)."""
    out = regular(x)  # (B, T, out): VST rows too -- one matmul beats gathering the others
    if route is None:
        return out
    # in place is autograd-safe: a linear layer's backward does not need its output
    return out.index_copy_(1, route.vst, beacon(x.index_select(1, route.vst)))


class KVCache:
    """Where a forward pass reads cached keys/values, writes the chunk's own, and how it attends.

    ``extend`` receives the chunk's rotated keys (B, G, T, D) and values for one layer and returns
    keys/values (B, G, M+T, D) to attend over. ``mask`` is None for the default full-coverage
    mask (bottom-right causal), or, for one-token decoding over a cache whose buffers hold more
    slots than are valid (CUDA graphs), an additive (M+T,) float bias: 0 visible, -inf not.
    ``kernels`` are the attention kernels of the runtime running the pass (None: portable SDPA);
    ``fused_qkv`` an optional per-layer snapshot of the concatenated q/k/v weights (graph
    decoding). Implementations: `streamvxl.model.cache`, `streamvxl.model.graphs`,
    `streamvxl.runtime.workspace`.
    """

    mask: torch.Tensor | None = None
    kernels: AttentionKernels | None = None
    fused_qkv: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def extend(self, layer: int, k_rot: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - protocol
        raise NotImplementedError


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     bias: torch.Tensor | None, scaled: bool = False) -> torch.Tensor:
    """One query row per head over all keys, grouped-query without repeating K/V.

    q (B, H, 1, D), k/v (B, G, N, D); ``bias`` (N,) float32 is 0 for visible keys and -inf for
    the others (None: all visible); ``scaled``: q already carries 1/sqrt(D) -> (B, H, 1, D).
    Reading K and V once is what bounds decoding,
    so heads sharing a K/V head are batched as rows of one matmul instead of materialising H/G
    copies of the cache.
    """
    b, h, _, d = q.shape
    g = k.shape[1]
    qg = (q if scaled else q * d ** -0.5).reshape(b, g, h // g, d)  # (B, G, H/G, D)
    scores = torch.matmul(qg, k.transpose(-1, -2))  # (B, G, H/G, N)
    work = torch.promote_types(scores.dtype, torch.float32)
    scores = scores.to(work) if bias is None else scores + bias.to(work)  # one pass either way
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs.to(v.dtype), v)  # (B, G, H/G, D)
    return out.reshape(b, h, 1, d)


@dataclass
class SequenceChunk:
    """How one chunk of `DecoderLayer.forward_sequence` attends and what it leaves behind."""

    rotate: Rotation
    """RoPE of the chunk's positions: M..M+T-1 after the M memory rows kept before it."""
    route: TokenRoute | None = None
    """Its VST rows (None: all ordinary)."""
    keep: torch.Tensor | None = None
    """Rows (int64) whose K/V join the memory for later chunks; None: all rows."""
    reads: torch.Tensor | None = None
    """For each of its B rows, the memory row it reads (int64, (B,)); None: memory row b, or
    row 0 broadcast while the memory holds one row (a shared prompt)."""
    need_output: bool = True
    """False when only its K/V matter: attention and the MLP are skipped for it."""


class _RotatedMemory(KVCache):
    """One layer's memory, keys already rotated to 0..M-1, for a chunk of `forward_sequence`."""

    def __init__(self, keys: torch.Tensor | None, values: torch.Tensor | None,
                 kernels: AttentionKernels | None = None) -> None:
        self.keys, self.values, self.kernels = keys, values, kernels

    def extend(self, layer: int, k_rot: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is None:
            return k_rot, v
        return torch.cat((self.keys, k_rot), dim=2), torch.cat((self.values, v), dim=2)


class Attention(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        c, h, g, d = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, \
            cfg.dim_per_head
        self.n_heads, self.n_kv_heads, self.head_dim = h, g, d
        # Llama has no q/k/v bias; keeping a (zero) bias makes it the same module as Qwen2.
        self.q_proj = nn.Linear(c, h * d, bias=True)
        self.k_proj = nn.Linear(c, g * d, bias=True)
        self.v_proj = nn.Linear(c, g * d, bias=True)
        self.o_proj = nn.Linear(h * d, c, bias=False)
        self.beacon_q_proj = nn.Linear(c, h * d, bias=True)
        self.beacon_k_proj = nn.Linear(c, g * d, bias=True)
        self.beacon_v_proj = nn.Linear(c, g * d, bias=True)

    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A snapshot of the q/k/v weights and biases, concatenated."""
        w = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight)).detach()
        bias = torch.cat((self.q_proj.bias, self.k_proj.bias, self.v_proj.bias)).detach()
        return w, bias

    def project(self, x: torch.Tensor, route: TokenRoute | None, need_q: bool = True,
                fused: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Pre-RoPE queries (B, H, T, D) (None unless ``need_q``), keys and values (B, G, T, D)
        of x (B, T, C); VST rows use the beacon projections.

        ``fused``: a `fused_weights` snapshot, for one GEMM instead of three on VST-free chunks
        (graph decoding, where a kernel launch costs about as much as the small k/v products).
        """
        b, t, _ = x.shape
        if fused is not None and route is None and need_q:
            hd, gd = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
            q, k, v = F.linear(x, *fused).split((hd, gd, gd), dim=-1)
        else:
            q = _routed(x, route, self.q_proj, self.beacon_q_proj) if need_q else None
            k = _routed(x, route, self.k_proj, self.beacon_k_proj)
            v = _routed(x, route, self.v_proj, self.beacon_v_proj)
        if q is not None:
            q = q.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, D)
        v = v.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, D)
        return q, k, v

    def attend(self, q: torch.Tensor, k_all: torch.Tensor, v_all: torch.Tensor,
               rotate: Rotation, visible: torch.Tensor | None = None,
               kernels: AttentionKernels | None = None) -> torch.Tensor:
        """Pre-RoPE queries (B, H, T, D) attend to k_all/v_all (B, G, M+T, D); returns the
        heads' outputs (B, T, H*D), the input of ``o_proj``.

        ``visible``: None for full-coverage (all memory + causal chunk); for one-token decoding
        an additive (M+T,) bias of the valid keys. ``kernels``: the runtime's attention kernels
        (None: portable SDPA).
        """
        b, _, t, _ = q.shape
        q = rotate.queries(q)
        if t == 1:  # decoding: one query sees every valid key
            o = decode_attention(q, k_all, v_all, visible, scaled=rotate.scales_queries)
        else:
            o = full_coverage_attention(q, k_all, v_all, kernels)
        return o.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim)  # (B, T, H*D)


class MLP(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, index: int, rotate: Rotation, cache: KVCache,
                route: TokenRoute | None = None, keep: torch.Tensor | None = None,
                need_output: bool = True
                ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """One layer over a chunk x (B, T, C) at layer ``index`` of ``cache``.

        A method of the layer rather than inline code in `Decoder.forward_chunk`, so that
        `forward_sequence` can run it chunk after chunk inside one FSDP-gathered call.

        Returns the layer's output (B, T, C) -- None when ``need_output`` is False, where only
        this layer's keys and values matter, so attention and the MLP are skipped -- and the
        pre-RoPE keys and values (B, G, T', D) of the ``keep`` rows (all rows when None).
        """
        h = self.input_layernorm(x)
        fused = cache.fused_qkv[index] if cache.fused_qkv is not None else None
        q, k, v = self.self_attn.project(h, route, need_q=need_output, fused=fused)  # pre-RoPE
        kept_k = k if keep is None else k.index_select(2, keep)
        kept_v = v if keep is None else v.index_select(2, keep)
        if not need_output:
            return None, kept_k, kept_v
        k_all, v_all = cache.extend(index, rotate(k), v)
        heads = self.self_attn.attend(q, k_all, v_all, rotate, cache.mask, cache.kernels)
        x = x + self.self_attn.o_proj(heads)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, kept_k, kept_v

    def forward_sequence(self, xs: list[torch.Tensor], chunks: list[SequenceChunk], theta: float,
                         kernels: AttentionKernels | None = None
                         ) -> tuple[list[torch.Tensor | None], torch.Tensor, torch.Tensor]:
        """This layer over a sequence of chunks, in order ("layer-major"): chunk i attends,
        full-coverage, to the rows the chunks before it kept, as if each had been one
        `Decoder.forward_chunk` over the memory so far. Running every layer this way over
        [prompt | window 1 | ... | question] computes exactly what window-by-window encoding
        computes, with one call per layer instead of one per window.

        One module method, so that a per-layer wrapper sees a fixed number of calls whatever
        the windows: FSDP2 gathers the layer once around it (`training.parallel`).

        Args:
            xs: chunk inputs (B_i, T_i, C); a chunk's B_i is 1 (shared) or the memory's rows.
            chunks: how each attends and what it keeps (`SequenceChunk`).
            theta: RoPE base, to rotate kept keys to their packed memory positions.
            kernels: attention kernels to use (None: portable SDPA).

        Returns:
            Each chunk's output (B_i, T_i, C) (None where ``need_output`` is False) and the
            memory every chunk kept, pre-RoPE keys and values (B, G, M, D).
        """
        mem_k: torch.Tensor | None = None  # (B, G, M, D) pre-RoPE
        mem_v: torch.Tensor | None = None
        mem_k_rot: torch.Tensor | None = None  # the same keys rotated to 0..M-1
        outs: list[torch.Tensor | None] = []
        for x, chunk in zip(xs, chunks, strict=True):
            b = x.shape[0]
            view = (mem_k_rot, mem_v)
            if mem_k_rot is not None and chunk.reads is not None and mem_k_rot.shape[0] > 1:
                view = (mem_k_rot.index_select(0, chunk.reads), mem_v.index_select(0, chunk.reads))
            elif mem_k_rot is not None and mem_k_rot.shape[0] != b:
                view = tuple(t.expand(b, -1, -1, -1) for t in view)  # one shared prompt row
            # `forward`, not `self(...)`: module hooks (FSDP's gather) run once, around this
            # whole method, not once per chunk
            out, k, v = self.forward(x, 0, chunk.rotate, _RotatedMemory(*view, kernels), chunk.route,
                                     chunk.keep, chunk.need_output)
            outs.append(out)
            if k.shape[2] == 0:
                continue
            m = 0 if mem_k is None else mem_k.shape[2]
            positions = torch.arange(m, m + k.shape[2], device=k.device)
            k_rot = apply_rope(k, *rope_cos_sin(positions, k.shape[-1], theta, k.dtype))
            if mem_k is None:
                mem_k, mem_v, mem_k_rot = k, v, k_rot
                continue
            if mem_k.shape[0] != k.shape[0]:  # a shared prompt row meets B rows
                mem_k, mem_v, mem_k_rot = (t.expand(k.shape[0], -1, -1, -1)
                                           for t in (mem_k, mem_v, mem_k_rot))
            mem_k = torch.cat((mem_k, k), dim=2)
            mem_v = torch.cat((mem_v, v), dim=2)
            mem_k_rot = torch.cat((mem_k_rot, k_rot), dim=2)
        assert mem_k is not None and mem_v is not None, "no chunk kept any rows"
        return outs, mem_k, mem_v


@dataclass
class ChunkKV:
    """Pre-RoPE keys and values a chunk produced, per layer: (L, B, G, T, D) each."""

    keys: torch.Tensor
    values: torch.Tensor


class Decoder(nn.Module):
    """The transformer body: embeddings, layers, final norm. Named like ``model.*`` in checkpoints."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.beacon_embed_tokens = nn.Embedding(1, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward_chunk(self, embeds: torch.Tensor, start: int | torch.Tensor, cache: KVCache,
                      route: TokenRoute | None = None, need_hidden: bool = True,
                      keep: torch.Tensor | None = None) -> tuple[torch.Tensor | None, ChunkKV]:
        """Run a chunk of T tokens at positions start..start+T-1 over the cached tokens.

        Args:
            embeds: (B, T, C) input embeddings (text rows, visual rows and VST rows).
            start: position of the chunk's first token (= number of cached tokens M, because
                positions are re-packed: the cache holds positions 0..M-1); a (1,) tensor
                keeps the pass free of host values (CUDA-graph capture).
            cache: gives attention the cached keys/values and records the chunk's own.
            route: which rows are VSTs (None: all ordinary).
            need_hidden: False when only keys/values matter (interval encoding); the last layer's
                attention output and MLP, which nothing reads, are then skipped.
            keep: chunk rows (int64 indices) whose pre-RoPE K/V to return; all rows when None.

        Returns:
            The final-normed hidden states (B, T, C) (None when ``need_hidden`` is False) and
            the pre-RoPE K/V of the kept rows.
        """
        b, t, _ = embeds.shape
        d = self.cfg.dim_per_head
        positions = torch.arange(t, device=embeds.device) + start  # (T,)
        rotate = Rotation(positions, d, self.cfg.rope_theta, embeds.dtype)
        x = embeds
        kept_k, kept_v = [], []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            out, k, v = layer(x, i, rotate, cache, route, keep,
                              need_output=need_hidden or i < last)
            kept_k.append(k)
            kept_v.append(v)
            if out is not None:
                x = out
        kv = ChunkKV(torch.stack(kept_k), torch.stack(kept_v))  # (L, B, G, T', D)
        return (self.norm(x) if need_hidden else None), kv
