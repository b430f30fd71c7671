"""A `MemoryConfig` as plain msgpack-able data and back: how a log records the settings its
memory was made with, so it reopens with exactly those (no pickle: every field is rebuilt
through its own validating constructor)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import MemoryConfig
from ..errors import ConfigError, MemoryFileError
from ..intervals.boundary import BoundaryConfig
from ..intervals.ratio import DensityRatio, FixedRatio
from ..memory.recall import Retrieval
from ..prompt import PromptTemplate
from .durability import Durability

# Fields a log does not carry: where the log is, which the opener knows.
NOT_RECORDED = ("log_dir",)


def config_to_dict(config: MemoryConfig) -> dict[str, Any]:
    """``config`` as str-keyed plain data (the log's ``settings``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name in NOT_RECORDED:
            continue
        value = getattr(config, f.name)
        if f.name == "ratio":
            value = _ratio_to_dict(value)
        elif dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if isinstance(value, dict):
            value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        out[f.name] = value
    return out


def config_from_dict(d: object, where: str) -> MemoryConfig:
    """The `MemoryConfig` a log recorded.

    Raises:
        MemoryFileError: a field is unknown or invalid (the log is damaged or from elsewhere).
    """
    if not isinstance(d, dict):
        raise MemoryFileError(f"{where}: the recorded settings are not a mapping: {d!r}")
    known = {f.name for f in dataclasses.fields(MemoryConfig)} - set(NOT_RECORDED)
    unknown = sorted(set(d) - known)
    if unknown:
        raise MemoryFileError(f"{where}: the recorded settings have fields this streamvxl does "
                              f"not know: {unknown}; open it with the version that wrote it")
    try:
        kwargs = dict(d)
        if "ratio" in kwargs:
            kwargs["ratio"] = _ratio_from_dict(kwargs["ratio"])
        for name, cls in (("boundary", BoundaryConfig), ("prompt", PromptTemplate),
                          ("durability", Durability), ("retrieval", Retrieval)):
            value = kwargs.get(name)
            if isinstance(value, dict):
                if cls is PromptTemplate and "stop_strings" in value:
                    value = {**value, "stop_strings": tuple(value["stop_strings"])}
                kwargs[name] = cls(**value)
        return MemoryConfig(**kwargs)
    except (ConfigError, TypeError, ValueError) as e:
        raise MemoryFileError(f"{where}: the recorded settings are invalid: {e}") from e


def _ratio_to_dict(policy: object) -> dict[str, Any] | None:
    if policy is None:
        return None
    if isinstance(policy, FixedRatio):
        return {"kind": "fixed", "ratio": policy.ratio}
    if isinstance(policy, DensityRatio):
        return {"kind": "density", "ratios": list(policy.ratios), "low": policy.low,
                "high": policy.high}
    raise ConfigError(f"a memory with a custom ratio policy ({type(policy).__name__}) cannot be "
                      "logged: only FixedRatio and DensityRatio are recorded")


def _ratio_from_dict(d: object) -> FixedRatio | DensityRatio | None:
    if d is None:
        return None
    if isinstance(d, dict) and d.get("kind") == "fixed":
        return FixedRatio(d["ratio"])
    if isinstance(d, dict) and d.get("kind") == "density":
        return DensityRatio(tuple(d["ratios"]), d["low"], d["high"])
    raise ValueError(f"unknown ratio policy {d!r}")


__all__ = ["config_from_dict", "config_to_dict"]
