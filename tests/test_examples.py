"""The examples run, in a fast mode, on the tiny random checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples import cameras_on_one_model
from streamvxl import Hub


def test_cameras_on_one_model(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = Hub.from_pretrained(tiny_checkpoint, device="cpu")
    assert cameras_on_one_model.main(["--seconds", "3", "--every", "1.5"], hub=hub) == 0
    out = capsys.readouterr().out
    for name in cameras_on_one_model.CAMERAS:
        assert out.count(f"[{name}] ") == 2  # asked twice while streaming
        line = next(x for x in out.splitlines() if x.startswith(f"{name}: "))
        assert int(line.split()[1]) > 0  # frames reached its memory
