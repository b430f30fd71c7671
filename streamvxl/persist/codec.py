"""The body of a log record: a msgpack map of metadata and a safetensors blob of tensors.

Layout (integers little-endian)::

    body = u32 meta length | msgpack(meta) | safetensors(tensors)

The safetensors section is left out (zero bytes) when there are no tensors. Both formats are pure
data: reading a body never unpickles or executes anything, so a log from an untrusted source can
at worst be refused with ``MemoryFileError``.

This module knows nothing of framing or files: see ``streamvxl.persist.framing``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import msgpack
import safetensors
import safetensors.torch
import torch

from streamvxl.errors import MemoryFileError

_META_LENGTH = struct.Struct("<I")

# What a corrupt safetensors section can raise: the Rust parser's own error, and torch/safetensors
# Python errors for an unknown dtype name or data that does not fit the declared shape.
_SAFETENSORS_ERRORS = (safetensors.SafetensorError, ValueError, RuntimeError, TypeError, KeyError)


def pack(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> bytes:
    """Encode one record body (`pack_parts`, joined).

    Example:
        >>> body = pack({"interval": 3}, {"kv": torch.ones(2, 2, dtype=torch.bfloat16)})
        >>> meta, tensors = unpack(body)
        >>> meta, tensors["kv"].dtype
        ({'interval': 3}, torch.bfloat16)
    """
    return b"".join(pack_parts(meta, tensors))


def pack_parts(meta: dict[str, Any], tensors: dict[str, torch.Tensor]
               ) -> list[bytes | memoryview]:
    """Encode one record body as consecutive buffers, the tensors' bytes not copied again (a
    7B model's interval is megabytes: its log write should cost one host copy, not four).

    Args:
        meta: A map with str keys of msgpack-able values (None, bool, int, float, str, bytes,
            lists and maps); tuples come back as lists.
        tensors: Named tensors of any device and layout; they are moved to the CPU and made
            contiguous (the caller's tensors are not changed).

    Raises:
        TypeError: ``meta`` is not a dict with str keys or holds a value msgpack cannot encode,
            or ``tensors`` is not a map of str names to tensors.
        ValueError: ``meta`` holds a value ``unpack`` would refuse (e.g. a map with int keys).
    """
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise TypeError(f"record meta must be a dict with str keys, got {meta!r:.200}")
    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors must map str names to torch.Tensor, got {name!r}: {type(t)}")
    meta_bytes = msgpack.packb(meta, use_bin_type=True)
    try:
        # Read it back the way unpack will, so nothing is ever written that cannot be read.
        _decode_meta(meta_bytes)
    except MemoryFileError as e:
        raise ValueError(f"record meta cannot be stored, it would not read back: {e}") from None
    parts: list[bytes | memoryview] = [_META_LENGTH.pack(len(meta_bytes)), meta_bytes]
    if tensors:
        parts += _safetensors_parts(tensors)
    return parts


# safetensors' dtype names (its format: u64 header length | JSON header | raw little-endian data)
_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
           torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
           torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def _safetensors_parts(tensors: dict[str, torch.Tensor]) -> list[bytes | memoryview]:
    """A safetensors blob as its header and one buffer per tensor (the format is that simple;
    ``safetensors.torch.load`` reads it back). Other dtypes go through safetensors itself."""
    host = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    if any(t.dtype not in _DTYPES for t in host.values()):
        return [safetensors.torch.save(host)]
    header: dict[str, Any] = {}
    data: list[memoryview] = []
    offset = 0
    for name, t in host.items():
        raw = memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else \
            memoryview(b"")
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + raw.nbytes]}
        offset += raw.nbytes
        data.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return [struct.pack("<Q", len(text)), text, *data]


def unpack(body: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Decode one record body; strict: anything but exactly what ``pack`` writes is refused.

    Returns:
        ``(meta, tensors)``, the tensors on the CPU and not sharing memory with ``body``.

    Raises:
        MemoryFileError: The body is short, its meta is not a msgpack map with str keys or has
            bytes left over, or its tensor section is not a valid safetensors blob.

    Example:
        >>> unpack(pack({"t": [0.5, 1.5]}, {}))
        ({'t': [0.5, 1.5]}, {})
        >>> unpack(b"\\x05\\x00")
        Traceback (most recent call last):
        ...
        streamvxl.errors.MemoryFileError: bad record body: 2 bytes, too short for its 4-byte meta length
    """
    body = bytes(body)
    meta_end = _meta_end(body)
    meta = _decode_meta(body[_META_LENGTH.size : meta_end])
    blob = body[meta_end:]
    if not blob:
        return meta, {}
    try:
        tensors = safetensors.torch.load(blob)
    except _SAFETENSORS_ERRORS as e:
        raise MemoryFileError(
            f"bad record body: its tensor section is not valid safetensors ({e})"
        ) from e
    return meta, tensors


def unpack_meta(body: bytes) -> dict[str, Any]:
    """Decode only a record body's meta, as strictly as ``unpack``; the tensor section is not
    parsed (so not checked either), which keeps a pass over a whole log cheap.

    Raises:
        MemoryFileError: The body is short, or its meta is not a msgpack map with str keys.

    Example:
        >>> unpack_meta(pack({"kind": "interval"}, {"kv": torch.zeros(1000)}))
        {'kind': 'interval'}
    """
    meta_end = _meta_end(body)
    return _decode_meta(bytes(body[_META_LENGTH.size : meta_end]))


def _meta_end(body: bytes) -> int:
    """Where a body's meta section ends, checked against the body's length."""
    if len(body) < _META_LENGTH.size:
        raise MemoryFileError(
            f"bad record body: {len(body)} bytes, too short for its 4-byte meta length"
        )
    (meta_len,) = _META_LENGTH.unpack_from(body)
    meta_end = _META_LENGTH.size + meta_len
    if meta_end > len(body):
        raise MemoryFileError(
            f"bad record body: its meta claims {meta_len} bytes but only "
            f"{len(body) - _META_LENGTH.size} follow"
        )
    return meta_end


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} (pack never writes one)")


def _decode_meta(meta_bytes: bytes) -> dict[str, Any]:
    """The meta map, strictly: one msgpack map with str keys and nothing after it."""
    try:
        # unpackb takes no max_buffer_size (that is Unpacker's): its max_*_len limits default to
        # len(meta_bytes), so a corrupt length can never make it allocate more than the input.
        meta = msgpack.unpackb(meta_bytes, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        # ExtraData, FormatError, StackError, OutOfData, bad UTF-8, non-str/bytes map keys.
        raise MemoryFileError(f"bad record body: its meta is not valid msgpack ({e!r:.200})") from e
    if not isinstance(meta, dict):
        raise MemoryFileError(
            f"bad record body: its meta is a msgpack {type(meta).__name__}, not a map"
        )
    if not all(isinstance(k, str) for k in meta):
        raise MemoryFileError("bad record body: its meta has keys that are not str")
    return meta


__all__ = ["pack", "pack_parts", "unpack", "unpack_meta"]
