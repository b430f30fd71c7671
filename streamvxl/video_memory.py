"""`VideoMemory`: push frames, ask questions at any moment -- one stream on its own runtime.

A thin facade: it builds a `Runtime` over the model (the embedded default one unless given) and
a `Hub` with a single stream, and is that stream's `StreamHandle`. By default a worker thread
serves it, so ``push`` returns at once and questions are answered while frames keep arriving;
``background=False`` does every step in the calling thread. To serve several cameras from one
model, use `Hub` directly.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .config import MemoryConfig
from .model.videoxl import VideoXL
from .preprocess import Preprocessor
from .runtime.config import RuntimeConfig
from .runtime.hub import Hub, StreamHandle
from .runtime.runtime import Runtime

STREAM = "default"
"""The name of a `VideoMemory`'s one stream."""


class VideoMemory(StreamHandle):
    """A streaming video memory over a Video-XL model.

    Args:
        model: the model; None loads the embedded default model, streamvxl-tiny, with the
            settings it was trained with (raises `CheckpointError` if an installation lacks its
            weights; a Video-XL checkpoint loads with `VideoMemory.from_pretrained`).
        tokenizer: a Hugging Face tokenizer for the model's vocabulary.
        config: cutting, compression, budget, queue and prompt settings.
        preprocessor: frame preprocessing; CLIP defaults at the tower's image size if None.
        background: a worker thread serves the memory (``push`` returns at once); False does
            everything in the calling thread.
        runtime: threads, vision batch and decoding settings.

    Example:
        >>> mem = VideoMemory.from_pretrained("VideoXL_weight_8")  # doctest: +SKIP
        >>> for frame in open_source("lot.mp4", fps=1):             # doctest: +SKIP
        ...     mem.push(frame)
        >>> mem.ask("When did the red car leave?", wait=True).text   # doctest: +SKIP
        >>> mem.close()                                              # doctest: +SKIP
    """

    def __init__(self, model: VideoXL | None = None, tokenizer: Any = None,
                 config: MemoryConfig | None = None, preprocessor: Preprocessor | None = None,
                 *, background: bool = True, runtime: RuntimeConfig | None = None) -> None:
        self._open(_runtime(model, tokenizer, preprocessor, runtime), config, background)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, config: MemoryConfig | None = None,
                        device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, background: bool = True,
                        runtime: RuntimeConfig | None = None) -> VideoMemory:
        """Load a Video-XL checkpoint folder (config.json, safetensors, tokenizer files).

        Raises:
            CheckpointError: the folder is not a Video-XL checkpoint or lacks a tokenizer.
        """
        memory = cls.__new__(cls)
        memory._open(Runtime.from_pretrained(path, config=runtime, device=device, dtype=dtype),
                     config, background)
        return memory

    @classmethod
    def on(cls, runtime: Runtime, config: MemoryConfig | None = None, *,
           background: bool = True) -> VideoMemory:
        """A memory over an existing runtime (its model and device resources are shared with
        whatever else uses it; only one hub may drive a runtime at a time)."""
        memory = cls.__new__(cls)
        memory._open(runtime, config, background)
        return memory

    @classmethod
    def open(cls, path: str | os.PathLike, model: VideoXL | None = None, tokenizer: Any = None,
             *, config: MemoryConfig | None = None, background: bool = True,
             runtime: RuntimeConfig | Runtime | None = None) -> VideoMemory:
        """Reopen a memory from its log directory (`MemoryConfig.log_dir`; it goes on
        appending there) or from a snapshot file (`save`): the same intervals, exactly, under
        the settings it was made with. Frames pushed afterwards continue its time.

        Args:
            path: a log directory or a snapshot file.
            model: the model it was written under; None: the embedded default model.
            tokenizer: the model's tokenizer (with ``model``).
            config: None keeps the recorded settings; only how the memory is served may change.
            runtime: a `RuntimeConfig` for a new runtime, or an existing `Runtime` to share.

        Raises:
            MemoryFileError: no memory there, or not a readable one (damaged records are
                skipped and logged; a torn last record is cut).
            ModelMismatchError: it was written under another model, dtype or prompt.

        Example:
            >>> mem = VideoMemory(config=MemoryConfig(log_dir="gate"))  # doctest: +SKIP
            >>> ...  # the process is killed; later, in a new one:
            >>> mem = VideoMemory.open("gate")                           # doctest: +SKIP
        """
        rt = runtime if isinstance(runtime, Runtime) else _runtime(model, tokenizer, None,
                                                                   runtime)
        memory = cls.__new__(cls)
        memory._open(rt, config, background, path)
        return memory

    def _open(self, runtime: Runtime, config: MemoryConfig | None, background: bool,
              path: str | os.PathLike | None = None) -> None:
        hub = Hub(runtime, background=background)
        try:
            handle = (hub.stream(STREAM, config) if path is None
                      else hub.open_stream(STREAM, path, config))
        except BaseException:
            hub.close(wait=False)
            raise
        StreamHandle.__init__(self, hub, handle._slot)

    @property
    def preprocessor(self) -> Preprocessor | None:
        return self.runtime.preprocessor

    def close(self, wait: bool = True) -> None:
        """Stop the memory (``wait``: after its queued frames are in memory) and its worker.
        Idempotent."""
        self._hub.close(wait=wait)

    def __enter__(self) -> VideoMemory:
        return self


def _runtime(model: VideoXL | None, tokenizer: Any, preprocessor: Preprocessor | None,
             config: RuntimeConfig | None) -> Runtime:
    """A new runtime over ``model``, or over the embedded default model when it is None."""
    if model is not None:
        return Runtime(model, tokenizer, preprocessor, config)
    runtime = Runtime.default(config)
    if tokenizer is not None:
        runtime.tokenizer = tokenizer
    if preprocessor is not None:  # e.g. fit="pad" for a wide camera
        runtime.preprocessor = preprocessor
    return runtime
