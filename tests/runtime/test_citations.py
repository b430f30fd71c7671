"""Citations are read from the answer's own decoder cache; here they are recomputed the slow
way -- the memory as stored, then [frames not yet compressed | question | answer] through the
model in one pass (`memory_attention`, itself checked against a float64 reference) -- and must
be the same shares."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamvxl import VideoMemory
from streamvxl.model.attribution import memory_attention
from streamvxl.runtime.runtime import Runtime
from tests.runtime.helpers import QUESTION, config, scenes


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint: Path) -> Runtime:
    return Runtime.from_pretrained(tiny_checkpoint, device="cpu")


def recomputed(mem: VideoMemory, answer_ids: list[int]) -> dict[tuple[float, int | None], float]:
    """Each span's share of the answer's attention, from one pass over the whole context: the
    span's mass in the layer and head that gave it the most, normalised over the spans."""
    runtime, state = mem.runtime, mem.state
    model, store = runtime.model, state.store
    text = state.settings.config.prompt.format_question(QUESTION, tuple(state.gaps))
    ids = torch.tensor(runtime.tokenizer(text, add_special_tokens=False)["input_ids"])
    raw = state.raw_tokens()  # (N, C)
    chunk = torch.cat((raw[None].to(model.dtype),
                       model.embed_ids(torch.cat((ids, torch.tensor(answer_ids[:-1])))[None])),
                      dim=1)  # (1, N+Q+A-1, C)
    first = raw.shape[0] + ids.shape[0] - 1
    mass = memory_attention(model, store.rotated_keys(), store.values(), chunk,
                            torch.arange(first, first + len(answer_ids)))  # (L, H, M+T)

    def best_head(a: int, b: int) -> float:
        return max(float(mass[lay, h, a:b].sum()) for lay in range(mass.shape[0])
                   for h in range(mass.shape[1]))

    shares, at = {}, store.sink_tokens
    for r in store.records:
        shares[(r.t_start, r.id)] = best_head(at, at + r.num_tokens)
        at += r.num_tokens
    for part, t_start in zip(state.raw_parts(), raw_starts(state), strict=True):
        shares[(t_start, None)] = best_head(at, at + part.shape[0])
        at += part.shape[0]
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()}


def raw_starts(state) -> list[float]:
    starts = [job.t_start for job in state.pending]
    return starts + ([state.open.timestamps[0]] if len(state.open) else [])


def test_citations_are_the_answers_attention_recomputed_over_its_whole_context(runtime
                                                                              ) -> None:
    mem = VideoMemory.on(runtime, config(), background=False)
    mem.extend(scenes(4, 9), timestamps=[float(i) for i in range(36)])
    mem.flush()
    mem.extend(scenes(1, 5, seed=9), timestamps=[50.0 + i for i in range(5)])  # still open, after a gap
    answer = mem.ask(QUESTION, max_new_tokens=8)
    cited = {(c.t_start, c.interval): c.weight for c in answer.cited}
    expected = recomputed(mem, answer.token_ids)
    assert cited.keys() == expected.keys() and any(k[1] is None for k in cited)
    assert mem.state.gaps  # told in words before the question: part of the context too
    for key, weight in expected.items():
        assert cited[key] == pytest.approx(weight, abs=1e-5), key
    assert answer.timings.cite > 0
    mem.close()
