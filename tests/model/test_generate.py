"""Token selection: greedy, temperature sampling, nucleus truncation, reproducibility."""

from __future__ import annotations

import pytest
import torch

from streamvxl.errors import ConfigError
from streamvxl.model.generate import Sampling, sample


def test_greedy_picks_argmax() -> None:
    logits = torch.tensor([[0.1, 3.0, -1.0], [2.0, 0.0, 1.0]])
    assert sample(logits, Sampling()).tolist() == [1, 0]


def test_sampling_follows_the_softmax() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample(logits, Sampling(temperature=1.0), gen) for _ in range(4000)])
    freq = torch.bincount(draws.flatten(), minlength=3).float() / draws.numel()
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03, rtol=0)


def test_top_p_keeps_the_smallest_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(1)
    seen = {int(sample(logits, Sampling(temperature=1.0, top_p=0.75), gen)) for _ in range(500)}
    assert seen == {0, 1}  # 0.5 < 0.75 <= 0.5 + 0.3: the two most likely tokens only
    tiny = Sampling(temperature=5.0, top_p=1e-6)
    assert {int(sample(logits, tiny, gen)) for _ in range(50)} == {0}


def test_seeded_sampling_is_reproducible() -> None:
    logits = torch.randn(1, 50)
    a = [int(sample(logits, Sampling(1.0), torch.Generator().manual_seed(7))) for _ in range(3)]
    b = [int(sample(logits, Sampling(1.0), torch.Generator().manual_seed(7))) for _ in range(3)]
    assert a == b


@pytest.mark.parametrize(("kw", "fragment"), [({"temperature": -1}, "temperature"),
                                               ({"top_p": 0}, "top_p"),
                                               ({"top_p": 1.5}, "top_p")])
def test_bad_sampling_settings(kw: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Sampling(**kw)


@pytest.mark.parametrize("temperature", [1e-45, 5e-324, 1e-300, 1e-8])
def test_a_tiny_temperature_is_as_greedy_not_nan(temperature: float) -> None:
    logits = torch.tensor([[3.0, 40.0, -2.0, 39.5], [-1e4, 0.0, 5.0, 4.0]])
    picked = sample(logits, Sampling(temperature=temperature), torch.Generator().manual_seed(0))
    assert picked.tolist() == [1, 2]
