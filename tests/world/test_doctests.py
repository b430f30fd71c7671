"""The docstring examples of the world modules (and of training.samples) run and give what
they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["streamvxl.world.font", "streamvxl.world.scene", "streamvxl.world.render",
           "streamvxl.world.questions", "streamvxl.world.answers", "streamvxl.world",
           "training.samples"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
