"""The CLI streams a real source into a checkpoint's memory and answers."""

from __future__ import annotations

from streamvxl.cli import main


def test_watch_lavfi(tiny_checkpoint, capsys) -> None:
    rc = main(["watch", "lavfi:testsrc=size=64x48:rate=10:duration=3", "--model",
               str(tiny_checkpoint), "--fps", "5", "--ask", "What is shown?", "--every", "1",
               "--max-new-tokens", "3", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    # frames at 0.0 .. 2.8 s: asked at t=1 s, t=2 s and once more at the end of the stream
    assert [line.split("]")[0] for line in out.splitlines() if "Q:" in line] == [
        "[t=1.0s", "[t=2.0s", "[end of stream"]
    assert "end of stream" in out


def test_watch_bad_model_is_a_clear_error(tmp_path, capsys) -> None:
    rc = main(["watch", "lavfi:testsrc=duration=1", "--model", str(tmp_path)])
    assert rc == 2
    assert "CheckpointError" in capsys.readouterr().err


def test_demo_says_what_is_missing(capsys, monkeypatch, tmp_path) -> None:
    """Without the default model's weights the demo says so and exits 2 (tests/test_demo.py
    runs it on a model)."""
    from streamvxl.model import default

    monkeypatch.setattr(default, "DEFAULT_DELTA", tmp_path / "streamvxl-tiny.safetensors")
    assert main(["demo", "--fast"]) == 2
    assert "default model" in capsys.readouterr().err


def test_watch_asks_relative_to_the_first_frame(tiny_checkpoint, capsys, monkeypatch) -> None:
    """A live stream's clock need not start at 0: --every counts from its first frame."""
    import numpy as np

    import streamvxl.sources as sources
    from streamvxl.frames import Frame
    from streamvxl.sources import SourceStats

    class Late:
        """A source whose clock starts at 1000 s."""

        def __init__(self, *a, **k) -> None:
            self.frames = [Frame(np.full((48, 64, 3), i, np.uint8), 1000.0 + 0.5 * i, i)
                           for i in range(10)]

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def __iter__(self):
            return iter(self.frames)

        def close(self) -> None:
            return None

        def stats(self) -> SourceStats:
            return SourceStats("streaming", 10, 10, 0, 0, 0, 0.0, 2.0)

    monkeypatch.setattr(sources, "open_source", Late)
    rc = main(["watch", "x", "--model", str(tiny_checkpoint), "--every", "2", "--ask", "Q?",
               "--max-new-tokens", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    # frames at 1000.0 .. 1004.5: asked at 1002.0 and 1004.0, then at the end
    assert [line.split("]")[0] for line in out.splitlines() if "Q:" in line] == [
        "[t=1002.0s", "[t=1004.0s", "[end of stream"]


def test_watch_uses_the_default_model_without_model(capsys) -> None:
    """No --model: the embedded streamvxl-tiny (skipped while its weights or base are absent)."""
    import pytest

    from streamvxl.model import default
    from tests.conftest import base_llm_unavailable

    if not default.DEFAULT_DELTA.is_file() or base_llm_unavailable():
        pytest.skip("the default model is not available here")
    rc = main(["watch", "lavfi:testsrc=size=64x48:rate=10:duration=2", "--fps", "2",
               "--max-new-tokens", "2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0 and "[end of stream] Q:" in captured.out
    assert "4 frames in memory" in captured.err  # the final progress line
