"""A slow, obviously-correct float64 reference of the Video-XL VST mechanism (tests only).

Written independently of ``streamvxl.model``: it imports nothing from the package's decoder, RoPE,
cache, layout, encoder or generation code. It takes a model's weights (a state dict, converted to
float64) and computes everything with explicit matmuls:

- an explicit boolean "who sees whom" matrix turned into an additive float64 mask,
- RoPE as complex multiplication (dim i pairs with dim i + D/2 as real/imaginary part, which is
  the HF ``rotate_half`` convention),
- grouped-query attention by explicitly repeating each K/V head,
- VST rows projected by ``beacon_{q,k,v}_proj`` and embedded by ``beacon_embed_tokens[0]``,
- the window layout re-derived from the rule of the conformance README §4: index j of the
  expanded window is a VST iff ``j % (r + 1) == r`` (each VST follows its r raw tokens), plus, for
  the "summarize" rule, one last VST after a partial tail,
- generation with no KV cache: every step recomputes [open raw tokens | question | generated so
  far] on top of the memory.

Memory is (L, G, M, D) per K and V, keys pre-RoPE; the retained tokens take positions 0..M-1 at
every forward and a chunk continues at M..M+T-1. The vision tower is not part of the reference:
visual tokens are given as (N, C) tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Shapes: L layers, H query heads, G kv heads, D head_dim, C hidden, M memory tokens,
# T chunk tokens, N raw visual tokens, V vocabulary.

F64 = torch.float64


@dataclass
class RefModel:
    """Float64 copies of a Qwen2/Video-XL decoder's weights plus the few shape constants."""

    w: dict[str, torch.Tensor]
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_theta: float
    eps: float


def ref_weights(state_dict: dict[str, torch.Tensor], n_heads: int, n_kv_heads: int,
                rope_theta: float, eps: float) -> RefModel:
    """Float64 weights from a `VideoXL` state dict (vision weights are ignored)."""
    w = {k: v.detach().to("cpu", F64).clone() for k, v in state_dict.items()
         if not k.startswith(("model.vision_tower", "model.mm_projector"))}
    n_layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("model.layers."))
    head_dim = w["model.layers.0.self_attn.q_proj.weight"].shape[0] // n_heads
    return RefModel(w, n_layers, n_heads, n_kv_heads, head_dim, rope_theta, eps)


def ref_from_videoxl(model) -> RefModel:
    """`ref_weights` of a `streamvxl.model.VideoXL` (reads only its config and state dict)."""
    llm = model.config.llm
    return ref_weights(model.state_dict(), llm.num_attention_heads, llm.num_key_value_heads,
                       llm.rope_theta, llm.rms_norm_eps)


# -- layout ------------------------------------------------------------------------------------


def ref_is_vst(num_raw: int, ratio: int | None, remainder: str) -> list[bool]:
    """Expanded-window flags (True = VST) for a window of ``num_raw`` raw tokens.

    "drop": floor(L/r) VSTs, slot j is a VST iff j % (r+1) == r; raw tokens after the last VST
    are never summarised. "summarize": the same, plus one VST right after a partial tail, so there
    are ceil(L/r) VSTs. ratio None: no VSTs.
    """
    if ratio is None:
        return [False] * num_raw
    n_full = num_raw // ratio
    length = num_raw + n_full
    flags = [j % (ratio + 1) == ratio for j in range(length)]
    if remainder == "summarize" and num_raw % ratio:
        flags.append(True)
    elif remainder not in ("summarize", "drop"):
        raise ValueError(remainder)
    assert flags.count(False) == num_raw
    return flags


# -- the decoder -------------------------------------------------------------------------------


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate x (..., T, D) to integer ``positions`` (T,) by complex multiplication."""
    d = x.shape[-1]
    half = d // 2
    inv_freq = theta ** (-torch.arange(half, dtype=F64) * 2.0 / d)  # (D/2,)
    angle = positions.to(F64)[:, None] * inv_freq[None, :]  # (T, D/2)
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(angle), angle)
    return torch.cat((z.real, z.imag), dim=-1)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = x @ weight.T
    return y if bias is None else y + bias


def _proj(m: RefModel, layer: int, name: str, h: torch.Tensor, is_vst: torch.Tensor
          ) -> torch.Tensor:
    """Rows of h (T, C) through ``{name}_proj``, VST rows through ``beacon_{name}_proj``."""
    pre = f"model.layers.{layer}.self_attn."
    regular = _linear(h, m.w[f"{pre}{name}_proj.weight"], m.w.get(f"{pre}{name}_proj.bias"))
    beacon_w = m.w.get(f"{pre}beacon_{name}_proj.weight")
    if beacon_w is None:
        assert not bool(is_vst.any())
        return regular
    beacon = _linear(h, beacon_w, m.w.get(f"{pre}beacon_{name}_proj.bias"))
    return torch.where(is_vst[:, None], beacon, regular)


def sees_matrix(m_len: int, t_len: int) -> torch.Tensor:
    """(T, M+T) bool: chunk token i sees all memory and chunk tokens 0..i."""
    sees = torch.zeros(t_len, m_len + t_len, dtype=torch.bool)
    for i in range(t_len):
        sees[i, :m_len] = True
        sees[i, m_len:m_len + i + 1] = True
    return sees


def ref_forward(m: RefModel, mem_k: torch.Tensor, mem_v: torch.Tensor, embeds: torch.Tensor,
                is_vst: torch.Tensor, probs_out: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunk (T, C) over memory (L, G, M, D).

    Returns the final-normed hidden states (T, C) and the chunk's pre-RoPE keys and values
    (L, G, T, D). ``probs_out``, if given, receives each layer's attention probabilities
    (H, T, M+T).
    """
    mem_len, t_len = mem_k.shape[2], embeds.shape[0]
    h_, g_, d_ = m.n_heads, m.n_kv_heads, m.head_dim
    positions = torch.arange(mem_len + t_len)
    mask = torch.zeros(t_len, mem_len + t_len, dtype=F64)
    mask[~sees_matrix(mem_len, t_len)] = float("-inf")
    x = embeds.to(F64)
    keys, values = [], []
    for i in range(m.n_layers):
        pre = f"model.layers.{i}."
        h = rms_norm(x, m.w[pre + "input_layernorm.weight"], m.eps)
        q = _proj(m, i, "q", h, is_vst).view(t_len, h_, d_).transpose(0, 1)  # (H, T, D)
        k = _proj(m, i, "k", h, is_vst).view(t_len, g_, d_).transpose(0, 1)  # (G, T, D)
        v = _proj(m, i, "v", h, is_vst).view(t_len, g_, d_).transpose(0, 1)  # (G, T, D)
        keys.append(k)
        values.append(v)
        k_all = torch.cat((mem_k[i], k), dim=1)  # (G, M+T, D), pre-RoPE
        v_all = torch.cat((mem_v[i], v), dim=1)  # (G, M+T, D)
        q_rot = rope(q, positions[mem_len:], m.rope_theta)
        k_rot = rope(k_all, positions, m.rope_theta)
        rep = h_ // g_  # query head j reads kv head j // rep
        k_rot = torch.stack([k_rot[j // rep] for j in range(h_)])  # (H, M+T, D)
        v_rep = torch.stack([v_all[j // rep] for j in range(h_)])  # (H, M+T, D)
        scores = q_rot @ k_rot.transpose(1, 2) / d_ ** 0.5 + mask  # (H, T, M+T)
        probs = torch.exp(scores - scores.max(-1, keepdim=True).values)
        probs = probs / probs.sum(-1, keepdim=True)
        if probs_out is not None:
            probs_out.append(probs)
        o = (probs @ v_rep).transpose(0, 1).reshape(t_len, h_ * d_)  # (T, H*D)
        x = x + o @ m.w[pre + "self_attn.o_proj.weight"].T
        h2 = rms_norm(x, m.w[pre + "post_attention_layernorm.weight"], m.eps)
        gate = h2 @ m.w[pre + "mlp.gate_proj.weight"].T
        up = h2 @ m.w[pre + "mlp.up_proj.weight"].T
        x = x + (gate * torch.sigmoid(gate) * up) @ m.w[pre + "mlp.down_proj.weight"].T
    hidden = rms_norm(x, m.w["model.norm.weight"], m.eps)
    return hidden, torch.stack(keys), torch.stack(values)


def ref_logits(m: RefModel, hidden: torch.Tensor) -> torch.Tensor:
    return hidden @ m.w["lm_head.weight"].T


def empty_memory(m: RefModel) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (m.n_layers, m.n_kv_heads, 0, m.head_dim)
    return torch.zeros(shape, dtype=F64), torch.zeros(shape, dtype=F64)


# -- the mechanism -----------------------------------------------------------------------------


def ref_text_kv(m: RefModel, ids: torch.Tensor, mem_k: torch.Tensor | None = None,
                mem_v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-RoPE K/V (L, G, T, D) of text ids (T,) after memory (the sink: no memory)."""
    if mem_k is None:
        mem_k, mem_v = empty_memory(m)
    embeds = m.w["model.embed_tokens.weight"][ids]  # (T, C)
    _, k, v = ref_forward(m, mem_k, mem_v, embeds, torch.zeros(len(ids), dtype=torch.bool))
    return k, v


def ref_interval(m: RefModel, mem_k: torch.Tensor, mem_v: torch.Tensor, raw: torch.Tensor,
                 ratio: int | None, window: int, remainder: str = "summarize"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Retained K/V (L, G, n, D) of an interval of raw tokens (N, C) encoded after memory.

    Windows of at most ``window`` raw tokens, in order; each sees the memory plus the VSTs of the
    interval's earlier windows. With ratio None every raw token's K/V is retained.
    """
    raw = raw.to(F64)
    c = raw.shape[1]
    kept_k = torch.zeros(m.n_layers, m.n_kv_heads, 0, m.head_dim, dtype=F64)
    kept_v = kept_k.clone()
    for start in range(0, raw.shape[0], window):
        chunk = raw[start:start + window]  # (L_w, C)
        flags = ref_is_vst(chunk.shape[0], ratio, remainder)
        embeds = torch.zeros(len(flags), c, dtype=F64)
        it = iter(chunk)
        for j, is_vst in enumerate(flags):
            embeds[j] = m.w["model.beacon_embed_tokens.weight"][0] if is_vst else next(it)
        is_vst_t = torch.tensor(flags, dtype=torch.bool)
        _, k, v = ref_forward(m, torch.cat((mem_k, kept_k), 2), torch.cat((mem_v, kept_v), 2),
                              embeds, is_vst_t)
        keep = ~is_vst_t if ratio is None else is_vst_t
        kept_k = torch.cat((kept_k, k[:, :, keep]), dim=2)
        kept_v = torch.cat((kept_v, v[:, :, keep]), dim=2)
    return kept_k, kept_v


@dataclass
class RefAnswer:
    ids: list[int]
    """Greedy ids."""
    step_logits: torch.Tensor
    """(n_new, V): the logits each id was picked from."""
    prefill_logits: torch.Tensor
    """(N_open + Q, V): logits at every open-token and question position of the first step."""
    margins: list[float]
    """Top-1 minus top-2 logit per step (how robust the greedy pick is)."""


def ref_answer(m: RefModel, mem_k: torch.Tensor, mem_v: torch.Tensor,
               open_tokens: torch.Tensor | None, question_ids: torch.Tensor,
               n_new: int) -> RefAnswer:
    """Greedy answer over [memory | open raw tokens | question], no KV cache."""
    parts = [] if open_tokens is None else [open_tokens.to(F64)]
    base = torch.cat(parts + [m.w["model.embed_tokens.weight"][question_ids]], dim=0)
    ids: list[int] = []
    steps, margins = [], []
    prefill_logits = None
    for _ in range(n_new):
        embeds = torch.cat((base, m.w["model.embed_tokens.weight"][torch.tensor(ids,
                            dtype=torch.int64)]), dim=0)
        hidden, _, _ = ref_forward(m, mem_k, mem_v, embeds,
                                   torch.zeros(embeds.shape[0], dtype=torch.bool))
        logits = ref_logits(m, hidden)  # (T, V)
        if prefill_logits is None:
            prefill_logits = logits
        top2 = logits[-1].topk(2).values
        margins.append(float(top2[0] - top2[1]))
        steps.append(logits[-1])
        ids.append(int(logits[-1].argmax()))
    assert prefill_logits is not None
    return RefAnswer(ids, torch.stack(steps), prefill_logits, margins)
