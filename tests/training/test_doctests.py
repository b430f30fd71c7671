"""The docstring examples of the world modules run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["font", "scene", "render", "questions", "answers", "samples", "__init__"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module("training.world" + ("" if name == "__init__" else f".{name}"))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
