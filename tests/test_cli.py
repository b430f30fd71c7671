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


def test_demo_says_what_is_missing(capsys) -> None:
    assert main(["demo"]) == 2
    assert "default model" in capsys.readouterr().err
