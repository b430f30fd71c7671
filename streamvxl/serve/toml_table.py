"""Reading a TOML table key by key, so that every mistake names its key and the fix.

`Table` wraps one table of a parsed TOML document with its dotted path. Each ``take_*`` reads
one key, checks its type and range, and remembers it was read; `done` then refuses any key
nobody read (a typo gets a "did you mean"). Every error is a `ConfigError` of the form
``"serve.toml: [cameras.gate] fps = 'x': must be a number > 0, e.g. fps = 1.0"``.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, TypeVar

from ..errors import ConfigError

T = TypeVar("T")

_MISSING = object()


class Table:
    """One TOML table (``path``: its dotted name, "" for the document) of the file ``source``."""

    def __init__(self, data: object, path: str, source: str) -> None:
        self.path, self.source = path, source
        if not isinstance(data, dict):
            raise self.error_for(path, data, "must be a table ([" + path + "] or {...})")
        self.data: dict[str, Any] = data
        self._read: set[str] = set()

    # -- errors ---------------------------------------------------------------------------------
    def where(self, key: str | None = None) -> str:
        table = f"[{self.path}] " if self.path else ""
        return f"{self.source}: {table}{key or ''}".rstrip()

    def error(self, key: str, value: object, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(key)} = {value!r}: {problem}")

    def error_for(self, path: str, value: object, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path} = {value!r}: {problem}")

    # -- keys -----------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.data

    def _take(self, key: str, default: object) -> object:
        self._read.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise ConfigError(f"{self.where()}: missing {key!r}; add {key} = ... to it")
            return default
        return self.data[key]

    def take_str(self, key: str, default: object = _MISSING, *, example: str) -> Any:
        value = self._take(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, value, f"must be a non-empty string, e.g. {key} = {example!r}")
        return value

    def take_int(self, key: str, default: object = _MISSING, *, minimum: int = 0,
                 maximum: int | None = None) -> Any:
        value = self._take(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(key, value, f"must be a whole number {bound}, e.g. "
                                         f"{key} = {max(minimum, 1)}")
        return value

    def take_float(self, key: str, default: object = _MISSING, *, positive: bool = True,
                   allow_zero: bool = False, example: float = 1.0) -> Any:
        value = self._take(key, default)
        if value is default and default is not _MISSING:
            return value
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(
            value)
        if ok and positive:
            ok = value > 0 or (allow_zero and value == 0)
        if not ok:
            sign = (">= 0" if allow_zero else "> 0") if positive else "(finite)"
            raise self.error(key, value, f"must be a number {sign}, e.g. {key} = {example}")
        return float(value)

    def take_bool(self, key: str, default: object = _MISSING) -> Any:
        value = self._take(key, default)
        if not isinstance(value, bool):
            raise self.error(key, value, f"must be true or false, e.g. {key} = true")
        return value

    def take_choice(self, key: str, choices: tuple[str, ...], default: object = _MISSING) -> Any:
        value = self._take(key, default)
        if value is default and default is not _MISSING:
            return value
        if value not in choices:
            raise self.error(key, value, f"must be one of {', '.join(map(repr, choices))}")
        return value

    def table(self, key: str, *, required: bool = False) -> Table | None:
        """A sub-table (None when absent and not required)."""
        self._read.add(key)
        if key not in self.data:
            if required:
                raise ConfigError(f"{self.where()}: missing table [{self._sub(key)}]")
            return None
        return Table(self.data[key], self._sub(key), self.source)

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]``), empty when absent."""
        self._read.add(key)
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.error(key, value, f"must be an array of tables: [[{self._sub(key)}]]")
        return [Table(item, f"{self._sub(key)}[{i}]", self.source) for i, item in
                enumerate(value)]

    def done(self) -> None:
        """Refuse every key that was not read (a typo, or a setting this version lacks)."""
        for key in self.data:
            if key not in self._read:
                close = difflib.get_close_matches(key, sorted(self._read), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else (
                    f"; known keys: {', '.join(sorted(self._read))}" if self._read else "")
                raise ConfigError(f"{self.where(key)}: unknown key{hint}")

    def _sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key


__all__ = ["Table"]
