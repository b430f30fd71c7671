"""LoRA adapters on the LLM's linear layers, keeping the checkpoint's parameter names.

`add_lora` swaps each targeted ``nn.Linear`` (by default every VST projection
``beacon_{q,k,v}_proj``) for a `LoRALinear` that holds the *same* ``weight`` and ``bias``
parameters -- ``weight`` is now the frozen start W0 -- plus two new ones, ``lora_A`` (R, I,
Kaiming-uniform) and ``lora_B`` (O, R, zeros). Its weight is

    W = merge_low_rank(W0, s * A, B) = W0 + B @ (s * A),   s = alpha / R,

computed in float32 with `streamvxl.model.default.merge_low_rank`, the very function the
default model's delta is merged with at load; the forward uses that W, so `merge_lora`, the
saved checkpoint and a loaded delta all reproduce the trained model bitwise. ``B = 0`` at the
start, so an adapter begins as a no-op.

Why a module swap and not ``torch.nn.utils.parametrize`` or a forward hook: a parametrization
renames ``weight`` to ``parametrizations.weight.original`` (the checkpoint no longer loads into
a plain `VideoXL`), and a hook adding ``B A x`` to the output is not bitwise the merged layer.

A `LoRALinear`'s ``state_dict`` is that of the plain layer it stands for: ``weight`` (the merged
W) and ``bias``; the adapters are parameters -- they train, and the optimizer and FSDP see them
under ``<layer>.lora_A`` / ``.lora_B`` -- but not state. So everything that reads a state dict
(`save_videoxl`, the training checkpoint, `training.default_model.export_delta`) sees the adapted
model as ordinary weights with the ordinary names. Resuming needs W0, A and B themselves:
`save_lora` / `load_lora` keep them in a safetensors file next to the checkpoint's ``model/``.
Code that reads ``.weight`` directly (`Attention.fused_weights`, for CUDA graphs) sees W0:
`merge_lora` before inference.

Shapes: O output features, I input features, R rank.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from streamvxl.model.default import LORA_A, LORA_B, merge_low_rank

VST_TARGETS = ("beacon_q_proj", "beacon_k_proj", "beacon_v_proj")
"""The default targets: the VST projections (they start as copies of q/k/v)."""
LLM_LAYERS = "model.layers."
"""`add_lora` adapts only modules under this prefix (the LLM's decoder layers; the CLIP tower
has its own ``q_proj`` / ``k_proj`` / ``v_proj``)."""
META_KEY = "lora"
"""The safetensors metadata key of a `save_lora` file (JSON: rank, alpha, dropout, modules)."""


class LoRALinear(nn.Linear):
    """``nn.Linear`` with a frozen ``weight`` (W0) plus ``lora_A`` (R, I) and ``lora_B`` (O, R).

    Build it with `from_linear` (it shares the linear's parameters); see the module docstring
    for the weight it computes and what its ``state_dict`` holds.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, rank: int,
                 alpha: float, dropout: float = 0.0, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA dropout must lie in [0, 1), got {dropout}")
        self.rank, self.alpha, self.dropout = rank, float(alpha), float(dropout)
        self.lora_A = nn.Parameter(torch.zeros(rank, in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, device=device, dtype=dtype))

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, alpha: float, dropout: float = 0.0,
                    generator: torch.Generator | None = None) -> LoRALinear:
        """A LoRA layer over ``linear``'s own ``weight`` / ``bias`` (frozen W0); A Kaiming-uniform
        (as ``nn.Linear`` initialises its weight), B zero."""
        w = linear.weight
        with torch.device("meta"):
            lora = cls(linear.in_features, linear.out_features, linear.bias is not None,
                       rank, alpha, dropout)
        lora.weight, lora.bias = w, linear.bias  # the same Parameter objects
        w.requires_grad_(False)
        a = torch.empty(rank, linear.in_features, dtype=torch.float32)  # (R, I)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        lora.lora_A = nn.Parameter(a.to(device=w.device, dtype=w.dtype))
        lora.lora_B = nn.Parameter(torch.zeros(linear.out_features, rank, device=w.device,
                                               dtype=w.dtype))  # (O, R)
        return lora

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s * A (R, I), B (O, R))``: W = W0 + B @ (s * A), the export's convention."""
        return self.lora_A * self.scale, self.lora_B

    def merged_weight(self) -> torch.Tensor:
        """W (O, I) in ``weight``'s dtype, merged in float32 exactly as a delta is at load."""
        with torch.autocast(self.weight.device.type, enabled=False):
            return merge_low_rank(self.weight, *self.factors()).to(self.weight.dtype)

    merged_cache: dict[torch.dtype, torch.Tensor] | None = None
    """While `merge_once` is active: the merged weight of this forward, per compute dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout > 0 and self.training:  # dropout acts on the adapter's input only
            a, b = self.factors()
            low = F.linear(F.linear(F.dropout(x, self.dropout, True), a.to(x.dtype)),
                           b.to(x.dtype))
            return F.linear(x, self.weight, self.bias) + low
        if self.merged_cache is None:
            return F.linear(x, self.merged_weight(), self.bias)
        kind = x.device.type
        # the dtype the matmul runs in: autocast would cast the merged weight to it on every
        # call (and save each cast for the backward); cast once instead, the same rounding
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) \
            else self.weight.dtype
        w = self.merged_cache.get(dtype)
        if w is None:
            w = self.merged_cache[dtype] = self.merged_weight().to(dtype)
        return F.linear(x, w, self.bias)

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: ANN001
        # the plain layer's state: W merged, no adapters (see the module docstring)
        w = self.merged_weight()
        destination[prefix + "weight"] = w if keep_vars else w.detach()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        if any(k.startswith(prefix) for k in state_dict):
            raise RuntimeError(f"{prefix.rstrip('.')} carries a LoRA adapter: load plain "
                               "weights before add_lora, and adapters with load_lora")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha:g}, " \
               f"dropout={self.dropout:g}"


def _targeted(model: nn.Module, targets: tuple[str, ...], under: str
              ) -> list[tuple[str, nn.Linear]]:
    out = [(name, m) for name, m in model.named_modules()
           if isinstance(m, nn.Linear) and not isinstance(m, LoRALinear)
           and name.startswith(under) and name.rsplit(".", 1)[-1] in targets]
    if not out:
        raise ValueError(f"no nn.Linear named one of {targets} under {under!r}; "
                         "check lora_targets (module names such as beacon_q_proj, q_proj)")
    return out


def _swap(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def add_lora(model: nn.Module, targets: tuple[str, ...] = VST_TARGETS, rank: int = 16,
             alpha: float = 16.0, dropout: float = 0.0, seed: int = 0,
             under: str = LLM_LAYERS) -> list[str]:
    """Put a LoRA adapter on every ``nn.Linear`` under ``under`` whose attribute name is in
    ``targets``; freezes their weights (W0). Returns the adapted modules' names.

    The A matrices are drawn from their own generator (``seed``), in module order: the global
    RNG is untouched, so adding adapters does not shift the run's random stream.

    Example:
        >>> from streamvxl.testing import random_videoxl
        >>> model = random_videoxl(0)
        >>> names = add_lora(model, rank=4)
        >>> names[0], "model.layers.0.self_attn.beacon_q_proj.weight" in model.state_dict()
        ('model.layers.0.self_attn.beacon_q_proj', True)
        >>> sorted(lora_factors(model))[0]
        'model.layers.0.self_attn.beacon_k_proj.weight'
    """
    generator = torch.Generator().manual_seed(seed)
    names = []
    for name, linear in _targeted(model, tuple(targets), under):
        _swap(model, name, LoRALinear.from_linear(linear, rank, alpha, dropout, generator))
        names.append(name)
    return names


@contextlib.contextmanager
def merge_once(model: nn.Module) -> Iterator[None]:
    """Within the block every adapted layer merges W0 + B A once (per compute dtype) and reuses
    it for all its calls.

    The training forward calls a layer once per chunk (prompt, each window, the answers). Merged
    per call, each call costs a merge and, under autocast, a half-precision copy of the whole
    weight that the backward keeps: at 7B, five chunks held five copies of every weight. Merged
    once, one copy serves every chunk. The values are the same (the same merge, the same
    rounding); the gradients of A and B sum the calls' contributions as before.

    Leave the block before the parameters change (an optimizer step): the merges would be stale.
    A model without adapters passes through unchanged.
    """
    layers = list(lora_modules(model).values())
    for m in layers:
        m.merged_cache = {}
    try:
        yield
    finally:
        for m in layers:
            m.merged_cache = None


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """The adapted layers by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_factors(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"<layer>.weight": (s * A (R, I), B (O, R))}``, detached float32 CPU: the ``low_rank``
    argument of `training.default_model.export_delta` (W = merge_low_rank(W0, s * A, B))."""
    out = {}
    for name, m in lora_modules(model).items():
        a, b = (_full(t).float().cpu() for t in m.factors())
        out[name + ".weight"] = (a, b)
    return out


def set_lora_factors(model: nn.Module,
                     factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[str]:
    """Start adapters from exported factors ``{"<layer>.weight": (s * A, B)}`` (the
    `lora_factors` / delta convention) instead of fresh ones, so a run continues where an
    exported model left off. Every entry must name an adapter of the same rank; adapters without
    an entry keep their fresh start (B = 0). Returns the names set.

    Raises:
        ValueError: an entry names no adapter, or its factors do not fit the adapter.
    """
    adapters = {name + ".weight": m for name, m in lora_modules(model).items()}
    unknown = sorted(set(factors) - set(adapters))
    if unknown:
        raise ValueError(f"factors for {unknown[:3]} have no adapter in the model: add_lora "
                         "with the targets the factors were trained on")
    for name, (sa, b) in factors.items():
        m = adapters[name]
        if tuple(sa.shape) != tuple(m.lora_A.shape) or tuple(b.shape) != tuple(m.lora_B.shape):
            raise ValueError(f"factors of {name} have shapes {tuple(sa.shape)}, {tuple(b.shape)};"
                             f" the adapter has rank {m.rank} ({tuple(m.lora_A.shape)}, "
                             f"{tuple(m.lora_B.shape)}): use the same lora_rank")
        with torch.no_grad():
            m.lora_A.copy_(sa.to(torch.float32) / m.scale)
            m.lora_B.copy_(b)
    return sorted(factors)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (in place) and put plain ``nn.Linear``s back.

    The weight becomes bitwise the `LoRALinear`'s merged W, so the model's outputs (eval mode)
    and its state dict do not change. Returns ``model``.
    """
    for name, m in lora_modules(model).items():
        with torch.no_grad():
            m.weight.copy_(m.merged_weight())  # keeps the Parameter (and anything tied to it)
        linear = nn.Linear(m.in_features, m.out_features, m.bias is not None, device="meta")
        linear.weight, linear.bias = m.weight, m.bias
        _swap(model, name, linear)
    return model


# -- saving and loading the adapters (for resuming) ----------------------------------------------
def _full(t: torch.Tensor) -> torch.Tensor:
    """A full tensor from a plain one or an FSDP2 shard (a collective for the latter)."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``<layer>.weight`` (W0), ``<layer>.lora_A``, ``<layer>.lora_B`` of every adapter, full
    CPU tensors (under FSDP2 a collective: every rank calls it)."""
    out = {}
    for name, m in lora_modules(model).items():
        for key, t in (("weight", m.weight), (LORA_A[1:], m.lora_A), (LORA_B[1:], m.lora_B)):
            out[f"{name}.{key}"] = _full(t.detach()).contiguous().cpu()
    return out


def save_lora(model: nn.Module, path: str | Path,
              state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write W0, A and B of every adapter (``state``: a `lora_state` gathered already) and their
    settings as one safetensors file (no pickle)."""
    mods = lora_modules(model)
    if not mods:
        raise ValueError("the model has no LoRA adapters to save; call add_lora first")
    first = next(iter(mods.values()))
    meta = {"rank": first.rank, "alpha": first.alpha, "dropout": first.dropout,
            "modules": sorted(mods)}
    path = Path(path)
    save_file(state if state is not None else lora_state(model), str(path),
              metadata={"format": "pt", META_KEY: json.dumps(meta)})
    return path


def read_lora_metadata(path: str | Path) -> dict:
    """The settings `save_lora` recorded: rank, alpha, dropout, modules."""
    with safe_open(str(path), framework="pt") as fh:
        return json.loads((fh.metadata() or {})[META_KEY])


def load_lora(model: nn.Module, path: str | Path) -> list[str]:
    """Adapt ``model`` as the saved one was: same modules, rank, alpha and dropout, with W0, A and
    B from the file (``model``'s own weights of those modules, typically the merged ones a
    checkpoint's ``model/`` holds, are replaced by W0). Returns the adapted modules' names."""
    meta = read_lora_metadata(path)
    names = meta["modules"]
    with safe_open(str(path), framework="pt") as fh:
        for name in names:
            linear = model.get_submodule(name)
            if not isinstance(linear, nn.Linear) or isinstance(linear, LoRALinear):
                raise ValueError(f"{path}: {name} is not a plain nn.Linear of this model")
            with torch.no_grad():
                linear.weight.copy_(fh.get_tensor(name + ".weight"))
            lora = LoRALinear.from_linear(linear, meta["rank"], meta["alpha"], meta["dropout"])
            with torch.no_grad():
                lora.lora_A.copy_(fh.get_tensor(name + LORA_A))
                lora.lora_B.copy_(fh.get_tensor(name + LORA_B))
            _swap(model, name, lora)
    return names


__all__ = ["VST_TARGETS", "LoRALinear", "add_lora", "load_lora", "lora_factors", "lora_modules",
           "lora_state", "merge_lora", "merge_once", "read_lora_metadata", "save_lora",
           "set_lora_factors"]
