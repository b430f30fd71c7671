"""The surveillance demo (``streamvxl demo``, ``make demo``) in its fast mode.

- On the tiny random model: one table row per question, one question per video task; the
  question and ground truth shown are the world's own and the verdict is the world's checker;
  the answer's time spans lie within the clip, in seconds (frames at 2 fps), and cover it.
- The CLI's ``demo`` runs it from the installed package alone: nothing of ``training/`` or
  ``examples/`` is imported, wherever it runs from.
- On the shipped default model (skipped while its weights are absent): the same properties.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import streamvxl.demo as demo
from streamvxl import cli
from streamvxl.config import MemoryConfig
from streamvxl.model import default
from streamvxl.video_memory import VideoMemory
from streamvxl.world import is_correct
from tests.conftest import base_llm_unavailable
from training.evaluate import DEFAULT_BOUNDARY

FRAMES, SEED = 48, 1


def table_rows(text: str) -> list[list[str]]:
    """The cells of the printed table's data rows."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]


def check_result(result: demo.DemoResult, printed: str) -> None:
    """The properties every run of the demo must have, whatever the model answers."""
    episode, qas = demo.surveillance_clip(FRAMES, SEED)  # drawn again: the world's own truth
    assert result.episode == episode
    assert episode.cuts and len(episode.signs) == 1  # a scene cut and a needle
    assert [r.qa for r in result.rows] == qas
    assert [qa.task for qa in qas] == list(demo.DEMO_TASKS)  # one question per task

    rows = table_rows(printed)
    assert len(rows) == len(qas)
    for cells, row in zip(rows, result.rows, strict=True):
        assert cells[2].removesuffix("*") == row.qa.question
        assert cells[4] == row.qa.answer  # the ground truth shown is the world's answer
        assert row.correct == is_correct(row.answer.text, row.qa)
        assert cells[5] == ("yes" if row.correct else "no")

        # time spans: within the clip, in seconds (not frame numbers), in order, covering it
        spans = row.answer.intervals
        last = (FRAMES - 1) / episode.fps
        assert all(0.0 <= s.t_start <= s.t_end <= last for s in spans)
        assert spans[0].t_start == 0.0 and spans[-1].t_end == last
        assert all(a.t_end < b.t_start for a, b in zip(spans, spans[1:], strict=False))
        assert sum(s.num_frames for s in spans) == FRAMES
        assert all(s.compressed for s in spans)  # the clip ended: every interval closed
        assert demo.evidence_spans(row, episode.fps)  # the evidence is in some span
        assert row.answer.timings.total > 0
    assert f"{sum(r.correct for r in result.rows)}/{len(qas)} correct" in printed


@pytest.mark.skipif(not default.DEFAULT_DELTA.is_file(), reason="no shipped weights")
def test_default_model_brings_its_training_boundary() -> None:
    """The demo leaves MemoryConfig at its defaults: streamvxl-tiny's weights name the interval
    cutting it was trained with, and that is the recipe's (and the evaluations') boundary."""
    from streamvxl.intervals import BoundaryConfig

    assert BoundaryConfig(**default.trained_settings()["boundary"]) == DEFAULT_BOUNDARY


def test_demo_on_tiny_model(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def tiny(config: MemoryConfig) -> VideoMemory:
        return VideoMemory.from_pretrained(tiny_checkpoint, config=config, device="cpu")

    result = demo.run_demo(FRAMES, SEED, max_new_tokens=4, memory_factory=tiny)
    check_result(result, demo.format_table(result))

    assert demo.main(["--fast", "--seed", str(SEED)], memory_factory=tiny) == 0
    out = capsys.readouterr().out
    assert len(table_rows(out)) == len(demo.DEMO_TASKS)
    assert "frames/s" in out and "ms per answer" in out


def test_cli_demo_runs_the_example(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "default_memory", lambda config: VideoMemory.from_pretrained(
        tiny_checkpoint, config=config, device="cpu"))
    assert cli.main(["demo", "--fast", "--seed", str(SEED)]) == 0
    assert len(table_rows(capsys.readouterr().out)) == len(demo.DEMO_TASKS)


def test_the_demo_needs_nothing_outside_the_package(tmp_path: Path) -> None:
    """From a folder that is not the checkout, the CLI and the demo import no module of
    ``training/`` or ``examples/`` (the installed package must carry all it needs)."""
    import subprocess
    import sys

    code = ("import sys, streamvxl.cli, streamvxl.demo; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'examples')); "
            "assert not bad, bad; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_demo_without_default_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(default, "DEFAULT_DELTA", tmp_path / "streamvxl-tiny.safetensors")
    assert demo.main(["--fast"]) == 2
    assert "default model (streamvxl-tiny) is not available" in capsys.readouterr().err


def _default_model_missing() -> str | None:
    if not default.DEFAULT_DELTA.is_file():
        return (f"the trained streamvxl-tiny weights are not in this checkout "
                f"({default.DEFAULT_DELTA})")
    return base_llm_unavailable()


@pytest.mark.slow
@pytest.mark.skipif(_default_model_missing() is not None, reason=_default_model_missing() or "")
def test_demo_on_default_model() -> None:
    result = demo.run_demo(FRAMES, SEED)
    check_result(result, demo.format_table(result))
