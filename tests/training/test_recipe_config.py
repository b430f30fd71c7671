"""A run's configuration: bad settings refused by name, derived settings, the docstring."""

from __future__ import annotations

import doctest

import pytest
import torch

import training.recipe_config
from training.recipe_config import RecipeConfig, config_from_dict


def test_docstring_example() -> None:
    assert doctest.testmod(training.recipe_config).failed == 0


@pytest.mark.parametrize("bad, field", [({"stages": []}, "stages"), ({"batch": 0}, "batch"),
                                        ({"stages": [[3, [0]]]}, "ratios"),
                                        ({"learning_rate": 1.0}, "unknown"),
                                        ({"fsdp_param_dtype": "float16"}, "fsdp_param_dtype"),
                                        ({"fsdp_param_dtype": "bfloat16", "lora_rank": 4},
                                         "fsdp_param_dtype bfloat16 rounds LoRA"),
                                        ({"fit": "squash"}, "fit"),
                                        ({"world": {"sizes": [[48, 80]]}}, "set fit to 'pad'"),
                                        ({"world": {"sizes": [[48, 48]]}, "reading_loss": 0.5},
                                         "reading_loss"),
                                        ({"world": {"sizes": [[48]]}}, "height, width")])
def test_bad_config_is_rejected_by_name(bad: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        config_from_dict(bad)


@pytest.mark.parametrize("fields, gathered", [
    ({}, torch.bfloat16), ({"lora_rank": 4}, None), ({"fsdp_param_dtype": "float32"}, None),
    ({"fsdp_param_dtype": "bfloat16"}, torch.bfloat16), ({"autocast": False}, None)])
def test_fsdp_gather_dtype(fields: dict, gathered) -> None:
    assert RecipeConfig(**fields).fsdp_gather_dtype == gathered
