"""Model configuration: the language model's shape, the visual path and the VST (beacon) settings.

The field names follow the Video-XL ``config.json`` (``llava_qwen``) so that a checkpoint's config
maps onto these dataclasses without a translation table; `from_checkpoint_dict` does that mapping
and also accepts plain Qwen2 / Llama configs (a Llama model is a Qwen2 model with zero q/k/v bias).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import CheckpointError, ConfigError

QWEN2_TYPES = ("llava_qwen", "qwen2")
LLAMA_TYPES = ("llava_llama", "llama")


@dataclass(frozen=True)
class LLMConfig:
    """Shape of the decoder-only language model (Qwen2 / Llama family)."""

    vocab_size: int
    """Rows of the stored token embedding (before any placeholder/VST ids are appended)."""
    hidden_size: int
    """Width of the residual stream."""
    intermediate_size: int
    """Width of the SiLU-gated MLP."""
    num_hidden_layers: int
    """Number of decoder layers."""
    num_attention_heads: int
    """Query heads per layer."""
    num_key_value_heads: int
    """Key/value heads per layer (grouped-query attention when smaller than the query heads)."""
    head_dim: int | None = None
    """Per-head width; ``hidden_size // num_attention_heads`` when None."""
    rms_norm_eps: float = 1e-6
    """Epsilon of every RMSNorm."""
    rope_theta: float = 1_000_000.0
    """Base of the rotary position embedding."""
    attention_bias: bool = True
    """Whether q/k/v carry a bias in the checkpoint (Qwen2: yes; Llama: no, loaded as zeros)."""
    tie_word_embeddings: bool = False
    """Whether ``lm_head`` shares the token embedding matrix (SmolLM2 does)."""
    bos_token_id: int | None = None
    """Beginning-of-sequence id, if the model has one."""
    eos_token_id: int | list[int] | None = None
    """End-of-sequence id(s); the EOS row also seeds a missing VST embedding."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"LLMConfig.{name} must be positive, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                "LLMConfig.num_attention_heads must be a multiple of num_key_value_heads "
                f"({self.num_attention_heads} vs {self.num_key_value_heads})")
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError("LLMConfig.hidden_size must divide by num_attention_heads, "
                              "or set head_dim explicitly")

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def eos_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)


Cell = Literal["average", "side_by_side"]
"""How a cell of patches becomes one visual token (`VisualConfig.cell`)."""


@dataclass(frozen=True)
class VisualConfig:
    """How frames become visual tokens: CLIP feature layer, projector and pooling."""

    mm_hidden_size: int
    """Width of the vision tower's hidden states (the projector's input)."""
    select_layer: int = -2
    """Which hidden state of the tower feeds the projector (Video-XL: the penultimate, -2)."""
    projector_type: Literal["mlp2x_gelu", "linear"] = "mlp2x_gelu"
    """Projector architecture; ``mlp2x_gelu`` is Linear -> GELU(erf) -> Linear."""
    pool_stride: int = 2
    """Side of the cell of patches one visual token is made of (2: 2x2 patches a token)."""
    cell: Cell = "average"
    """How a cell's patches become one token. ``average`` (Video-XL, the conformance data):
    each patch is projected, then the cell's projections are averaged. ``side_by_side``: the
    cell's patches are concatenated in row-major order (pool_stride^2 x mm_hidden_size
    inputs, as Qwen2-VL's patch merger) and projected once, so the token can keep where in
    the cell each feature was -- the order of a sign's characters, which averaging loses
    (docs/results.md: a linear probe reads 88.5 % of signs from side-by-side projections,
    71.7 % from averaged ones)."""
    frame_time: bool = False
    """Each frame's visual tokens are preceded by its time since the stream's first frame, as
    text (`streamvxl.model.frame_time`): what lets a compressed memory say *when*. Off in
    Video-XL and the conformance data; a model trained with it needs it."""

    def __post_init__(self) -> None:
        if self.projector_type not in ("mlp2x_gelu", "linear"):
            raise ConfigError(f"VisualConfig.projector_type {self.projector_type!r} is not "
                              "supported; use 'mlp2x_gelu' or 'linear'")
        if self.pool_stride < 1:
            raise ConfigError("VisualConfig.pool_stride must be >= 1")
        if self.cell not in ("average", "side_by_side"):
            raise ConfigError(f"VisualConfig.cell {self.cell!r} is not supported; use "
                              "'average' or 'side_by_side'")

    @property
    def projector_in(self) -> int:
        """Width of the projector's input: a patch, or a cell's patches side by side."""
        if self.cell == "side_by_side":
            return self.mm_hidden_size * self.pool_stride ** 2
        return self.mm_hidden_size


@dataclass(frozen=True)
class VSTConfig:
    """Visual summarization token (beacon) settings of a checkpoint."""

    window: int = 1440
    """Most raw visual tokens one interval-encoder forward takes (Video-XL: 10 frames x 144)."""
    ratios: tuple[int, ...] = (2, 4, 8)
    """Compression ratios the checkpoint was trained with (one VST per r raw tokens)."""
    embed_init: Literal["eos", "random"] = "eos"
    """How a missing ``beacon_embed_tokens`` is initialised."""

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ConfigError("VSTConfig.window must be >= 1")
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ConfigError(f"VSTConfig.ratios must be positive integers, got {self.ratios}")


@dataclass(frozen=True)
class VideoXLConfig:
    """Everything needed to build a `VideoXL` model (vision tower config is kept separately)."""

    llm: LLMConfig
    """The language model."""
    visual: VisualConfig | None
    """The visual path; None for a text-only checkpoint (e.g. a base LLM before training)."""
    vst: VSTConfig = field(default_factory=VSTConfig)
    """VST settings."""
    model_type: str = "llava_qwen"
    """The checkpoint's ``model_type``."""


def _required(cfg: dict[str, Any], key: str, where: str) -> Any:
    if key not in cfg:
        raise CheckpointError(f"{where}: config.json has no {key!r}; is this a Qwen2/Llama or "
                              "Video-XL checkpoint folder?")
    return cfg[key]


def from_checkpoint_dict(cfg: dict[str, Any], where: str = "config.json") -> VideoXLConfig:
    """Map a checkpoint's ``config.json`` (Video-XL, Qwen2 or Llama) onto `VideoXLConfig`."""
    model_type = cfg.get("model_type")
    if model_type in QWEN2_TYPES:
        bias = True
    elif model_type in LLAMA_TYPES:
        bias = bool(cfg.get("attention_bias", False))
    else:
        raise CheckpointError(
            f"{where}: model_type {model_type!r} is not supported; expected one of "
            f"{QWEN2_TYPES + LLAMA_TYPES}")
    for key in ("rope_scaling", "rope_parameters"):  # transformers 4 / 5 spellings
        rope = cfg.get(key)
        if model_type == "llava_qwen" and key == "rope_scaling":
            rope = None  # the Video-XL loader forces this to None
        kind = (rope or {}).get("rope_type", (rope or {}).get("type"))
        if kind not in ("default", None):
            raise CheckpointError(f"{where}: {key} {rope} is not supported yet; only plain RoPE "
                                  "(as in Qwen2 and SmolLM2) is")
    try:
        llm = _llm_config(cfg, where, bias)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: invalid model shape: {e}") from e
    return _finish(cfg, llm, model_type, where)


def _llm_config(cfg: dict[str, Any], where: str, bias: bool) -> LLMConfig:
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads"):
        value = _required(cfg, key, where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where}: {key} must be an int, got {value!r}")
    return LLMConfig(
        vocab_size=_required(cfg, "vocab_size", where),
        hidden_size=_required(cfg, "hidden_size", where),
        intermediate_size=_required(cfg, "intermediate_size", where),
        num_hidden_layers=_required(cfg, "num_hidden_layers", where),
        num_attention_heads=_required(cfg, "num_attention_heads", where),
        num_key_value_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
        head_dim=cfg.get("head_dim"),
        rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
        rope_theta=(cfg.get("rope_parameters") or {}).get("rope_theta")
        or cfg.get("rope_theta", 10_000.0),
        attention_bias=bias,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_id=cfg.get("eos_token_id"),
    )


POOL_MODES = {"average": "average", "concat": "side_by_side"}
"""A checkpoint's ``mm_spatial_pool_mode`` -> `VisualConfig.cell`."""


def _cell(mode: str, where: str) -> Cell:
    if mode not in POOL_MODES:
        raise CheckpointError(f"{where}: mm_spatial_pool_mode {mode!r} is not supported; use "
                              f"one of {sorted(POOL_MODES)}")
    return POOL_MODES[mode]  # type: ignore[return-value]


def _flag(cfg: dict[str, Any], key: str, where: str) -> bool:
    value = cfg.get(key, False)
    if not isinstance(value, bool):
        raise CheckpointError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _finish(cfg: dict[str, Any], llm: LLMConfig, model_type: str, where: str) -> VideoXLConfig:
    visual = None
    if "mm_hidden_size" in cfg:
        select = cfg.get("mm_vision_select_feature", "patch")
        if select != "patch":
            raise CheckpointError(f"{where}: mm_vision_select_feature {select!r} is not "
                                  "supported; Video-XL uses 'patch'")
        visual = VisualConfig(
            mm_hidden_size=cfg["mm_hidden_size"],
            select_layer=cfg.get("mm_vision_select_layer", -2),
            projector_type=cfg.get("mm_projector_type", "mlp2x_gelu"),
            pool_stride=cfg.get("mm_spatial_pool_stride", 2),
            cell=_cell(cfg.get("mm_spatial_pool_mode", "average"), where),
            frame_time=_flag(cfg, "mm_frame_time", where),
        )
    ratios = cfg.get("beacon_ratio", [2, 4, 8])
    vst = VSTConfig(
        window=cfg.get("beacon_window", 1440),
        ratios=tuple(ratios if isinstance(ratios, list) else [ratios]),
        embed_init="eos" if cfg.get("beacon_embed_init", "eos") == "eos" else "random",
    )
    return VideoXLConfig(llm=llm, visual=visual, vst=vst, model_type=model_type)
