"""The runtime resolves a stream's settings once: the model's trained interval cutting unless
the config names one, its window, the budget rule, stop ids; and it picks its CPU threads."""

from __future__ import annotations

import pytest
import torch

from streamvxl import BoundaryConfig, ConfigError, MemoryConfig, Runtime, RuntimeConfig
from streamvxl.runtime.config import choose_cpu_threads, usable_cores
from streamvxl.testing import make_tokenizer, random_videoxl

TRAINED = BoundaryConfig(window=2, min_frames=4, max_frames=16)


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime(random_videoxl(0), make_tokenizer(), config=RuntimeConfig(cpu_threads=0),
                   trained_boundary=TRAINED)


def test_the_models_trained_boundary_unless_the_config_names_one(runtime) -> None:
    assert runtime.settings(MemoryConfig()).boundary == TRAINED
    mine = BoundaryConfig(window=1, min_frames=2, max_frames=8)
    assert runtime.settings(MemoryConfig(boundary=mine)).boundary == mine
    plain = Runtime(runtime.model, runtime.tokenizer, config=RuntimeConfig(cpu_threads=0))
    assert plain.settings(MemoryConfig()).boundary == BoundaryConfig()


def test_window_prefix_and_stop_ids(runtime) -> None:
    s = runtime.settings(MemoryConfig())
    assert s.window == runtime.model.config.vst.window
    assert runtime.settings(MemoryConfig(window=12)).window == 12
    tok = runtime.tokenizer
    assert s.prefix_ids == tuple(tok(MemoryConfig().prompt.prefix,
                                     add_special_tokens=False)["input_ids"])
    assert tok.convert_tokens_to_ids("<|im_end|>") in s.stop_ids


def test_the_budget_rule_names_the_least_budget(runtime) -> None:
    # ratio 2, intervals of up to 16 frames of 4 tokens, windows of 40: 32 VSTs at most
    cfg = MemoryConfig(ratio=2)
    need = len(runtime.settings(cfg).prefix_ids) + runtime.settings(cfg).max_interval_tokens
    with pytest.raises(ConfigError, match=f"at least {need}"):
        runtime.settings(MemoryConfig(ratio=2, token_budget=need - 1))
    stream = runtime.new_stream(MemoryConfig(ratio=2, token_budget=need))
    assert stream.store.arena.capacity == need  # allocated at the budget, at once


@pytest.mark.parametrize(("setting", "cores", "want"), [
    (None, 2, 1), (None, 1, 1), (None, 16, 8), (None, 64, 8), (3, 2, 3), (0, 2, None)])
def test_cpu_threads(monkeypatch, setting, cores, want) -> None:
    import streamvxl.runtime.config as config_mod

    monkeypatch.setattr(config_mod, "usable_cores", lambda: cores)
    assert choose_cpu_threads(setting) == want


def test_a_cpu_runtime_sets_its_threads() -> None:
    torch.set_num_threads(2)
    Runtime(random_videoxl(0), config=RuntimeConfig(cpu_threads=1))
    assert torch.get_num_threads() == 1
    Runtime(random_videoxl(0), config=RuntimeConfig(cpu_threads=0))
    assert torch.get_num_threads() == 1  # 0: left as it was
    assert usable_cores() >= 1


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"vision_batch": 0}, "vision_batch"), ({"cpu_threads": -1}, "cpu_threads"),
    ({"cpu_threads": 1.5}, "cpu_threads"), ({"cuda_graphs": "yes"}, "cuda_graphs")])
def test_bad_runtime_config(kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        RuntimeConfig(**kwargs)
