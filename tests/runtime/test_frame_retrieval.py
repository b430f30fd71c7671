"""Retrieval that scores frames (`Retrieval.scorer` "frames" / "both"): each interval keeps the
text-to-frame embeddings of a few of its frames, the question's words pick the intervals, the
embeddings survive restarts and snapshots, and citations weigh attention by the match."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from streamvxl import VideoMemory
from streamvxl.errors import CheckpointError
from streamvxl.memory.recall import Retrieval, frame_rows, look_scores, select, standardised
from streamvxl.runtime.retrieval import held, key_scores, scores
from streamvxl.runtime.runtime import Runtime
from tests.runtime.helpers import QUESTION, config, scenes, tiered

pytest.importorskip("open_clip")

FRAMES = scenes(6, 9)  # what `tiered` feeds


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint: Path) -> Runtime:
    return Runtime.from_pretrained(tiny_checkpoint, device="cpu")


def filled(runtime: Runtime, background: bool = False, **kw) -> VideoMemory:
    """`tiered` (fed FRAMES), retrieving by frames unless told otherwise."""
    kw.setdefault("retrieval", Retrieval(budget=12, scorer="frames"))
    return tiered(runtime, background, **kw)


def test_each_interval_keeps_the_embeddings_of_its_spread_frames(runtime) -> None:
    mem = filled(runtime)
    scorer = runtime.frame_scorer("world")
    records = held(mem.state)
    assert len(records) > 3 and mem.state.archive.entries  # some left the GPU
    for r in records:
        picked = [r.frame_start + i for i in frame_rows(r.num_frames, 8)]
        want = scorer.embed_frames(np.stack([FRAMES[i] for i in picked])).half()
        assert r.looks is not None and torch.allclose(r.looks.float(), want.float(), atol=2e-3)


def test_an_open_scorer_is_the_models_choice(runtime) -> None:
    assert runtime.default_scorer == "keys"  # a checkpoint: its keys, which any model has
    mem = filled(runtime, retrieval=Retrieval(budget=12))
    assert mem.state.settings.scorer == "keys" and all(r.looks is None for r in held(mem.state))
    runtime.default_scorer = "frames"  # what `Runtime.default` sets for streamvxl-tiny
    try:
        mem = filled(runtime, retrieval=Retrieval(budget=12))
        assert mem.state.settings.scorer == "frames"
        assert all(r.looks is not None for r in held(mem.state))
    finally:
        runtime.default_scorer = "keys"


def test_the_answer_reads_the_intervals_its_words_match(runtime) -> None:
    mem = filled(runtime)
    scorer = runtime.frame_scorer("world")
    records = held(mem.state)
    text = scorer.embed_text([QUESTION])[0]
    match = torch.tensor([max(float(row.float() @ text) for row in r.looks) for r in records])
    chosen = select([r.num_tokens for r in records], match, 12, 0.25)
    assert 0 < len(chosen) < len(records)
    answer = mem.ask(QUESTION, max_new_tokens=4)
    assert [(s.t_start, s.t_end) for s in answer.intervals] == \
        [(records[i].t_start, records[i].t_end) for i in chosen]


def test_both_averages_the_standardised_scores(runtime) -> None:
    mem = filled(runtime, retrieval=Retrieval(budget=12, scorer="both"))
    question = mem._question(QUESTION, 4, 0.0, 1.0, None, True)
    text = runtime.frame_scorer("world").embed_text([QUESTION])[0]
    keys = key_scores(runtime, mem.state, question.ids)
    looks = look_scores([r.looks for r in held(mem.state)], text)
    assert torch.allclose(scores(runtime, mem.state, question.ids, text),
                          (standardised(keys) + standardised(looks)) / 2)


def test_the_worker_keeps_what_the_caller_keeps(runtime) -> None:
    sync, worker = filled(runtime), filled(runtime, background=True)
    for a, b in zip(held(sync.state), held(worker.state), strict=True):
        assert torch.equal(a.looks, b.looks)
    x, y = sync.ask(QUESTION, max_new_tokens=6), worker.ask(QUESTION, max_new_tokens=6)
    assert x.text == y.text and x.intervals == y.intervals
    assert [(c.interval, c.match) for c in x.cited] == [(c.interval, c.match) for c in y.cited]
    worker.close()


def test_embeddings_survive_restarts_and_snapshots(runtime, tmp_path) -> None:
    mem = filled(runtime, log_dir=tmp_path / "log")
    before = {r.id: r.looks for r in held(mem.state)}
    answer = mem.ask(QUESTION, max_new_tokens=4)
    mem.save(tmp_path / "snap.svxl")
    mem.close()
    for where in (tmp_path / "log", tmp_path / "snap.svxl"):
        again = VideoMemory.open(where, runtime=runtime, background=False)
        assert {r.id for r in held(again.state)} == set(before)
        assert all(torch.equal(r.looks, before[r.id]) for r in held(again.state))
        assert again.ask(QUESTION, max_new_tokens=4).intervals == answer.intervals
        again.close()
    # keys only: the embeddings are not used (nor kept on); another scorer: not trusted
    cfg = config(token_budget=40, eviction="offload", log_dir=tmp_path / "log")
    keys = VideoMemory.open(tmp_path / "log", runtime=runtime, background=False,
                            config=dataclasses.replace(cfg, retrieval=Retrieval(budget=12)))
    assert all(r.looks is None for r in held(keys.state))
    assert all(c.match is None for c in keys.ask(QUESTION, max_new_tokens=4).cited)
    keys.close()


def test_embeddings_of_other_weights_under_the_same_name_are_dropped(runtime, tmp_path,
                                                                      caplog) -> None:
    """A log tags its frame embeddings with the scorer's name and weights digest: reopened
    under other "world" weights (a new release's), they rank nothing; an untagged log (from
    before the digest) is taken by its name."""
    from streamvxl.memory.clip_scorer import (
        WORLD_CLIP_MEAN,
        WORLD_CLIP_STD,
        ClipScorer,
        build_world_clip,
        world_tokenizer,
    )

    filled(runtime, log_dir=tmp_path / "log").close()
    retrained = Runtime(runtime.model, runtime.tokenizer)
    retrained._frame_scorers["world"] = ClipScorer(build_world_clip(), world_tokenizer(), 64,
                                                   WORLD_CLIP_MEAN, WORLD_CLIP_STD)
    assert retrained.frame_scorer("world").digest != runtime.frame_scorer("world").digest
    with caplog.at_level("WARNING"):
        again = VideoMemory.open(tmp_path / "log", runtime=retrained, background=False)
    assert all(r.looks is None for r in held(again.state)) and "another scorer" in caplog.text
    again.close()
    same = VideoMemory.open(tmp_path / "log", runtime=runtime, background=False)
    assert all(r.looks is not None for r in held(same.state))
    same.close()
    older = filled(runtime, log_dir=tmp_path / "older")  # written as before the digest
    older.state.settings = dataclasses.replace(older.state.settings, looks_tag="world")
    older.save(tmp_path / "older.svxl")
    older.close()
    untagged = VideoMemory.open(tmp_path / "older.svxl", runtime=retrained, background=False)
    assert all(r.looks is not None for r in held(untagged.state))
    untagged.close()


def test_citations_weigh_attention_by_the_frames_match(runtime, tmp_path) -> None:
    mem = filled(runtime, log_dir=tmp_path / "log")
    mem.extend(scenes(1, 5, seed=9), timestamps=[54.0 + i for i in range(5)])  # open frames
    framed = mem.ask(QUESTION, max_new_tokens=6, retrieve=False)
    mem.close()
    cfg = config(token_budget=40, eviction="offload", log_dir=tmp_path / "log")
    plain = VideoMemory.open(tmp_path / "log", runtime=runtime, background=False,
                             config=dataclasses.replace(cfg, retrieval=Retrieval(budget=12)))
    plain.extend(scenes(1, 5, seed=9), timestamps=[54.0 + i for i in range(5)])
    attention = plain.ask(QUESTION, max_new_tokens=6, retrieve=False)
    plain.close()
    assert framed.text == attention.text  # the same context (no gap: the same question)
    scorer = runtime.frame_scorer("world")
    by_span = {(c.t_start, c.t_end): c for c in framed.cited}
    assert any(c.interval is None for c in framed.cited)  # open frames are matched too
    spans = [(c.t_start, c.t_end) for c in attention.cited]
    match = torch.tensor([by_span[s].match for s in spans])
    share = torch.softmax(scorer.scale * match, 0)
    want = torch.tensor([c.weight for c in attention.cited]) * share
    want = want / want.sum()
    got = torch.tensor([by_span[s].weight for s in spans])
    assert torch.allclose(got, want, atol=1e-5)


def test_an_unloadable_scorer_fails_when_the_memory_is_made(runtime, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        VideoMemory.on(runtime, config(retrieval=Retrieval(
            scorer="frames", frames=f"ViT-B-32@{tmp_path / 'missing.safetensors'}")))


def test_a_moment_probe_weighs_the_change_of_the_match(runtime, tmp_path, monkeypatch) -> None:
    """With a `MomentProbe` on the runtime, a cited span's attention weight is multiplied by the
    softmax of its moment score (`moment_scores` of the spans' looks in context order, with the
    probe's reading of the question's queries in its layer, around the span the plain citation
    puts first) instead of its plain match."""
    from streamvxl.memory.moments import MOMENTS, MomentProbe
    from streamvxl.model.queries import question_queries
    from streamvxl.runtime import citations

    llm = runtime.model.config.llm
    features = llm.num_attention_heads * llm.dim_per_head
    g = torch.Generator().manual_seed(3)
    probe = MomentProbe(llm.num_hidden_layers - 1, torch.zeros(features), torch.ones(features),
                        torch.randn(len(MOMENTS), features, generator=g),
                        torch.tensor([0.0, 2.0, 0.0]), "test")
    seen: list[tuple[list, torch.Tensor, torch.Tensor]] = []
    follows_seen: list[list[bool]] = []
    around_seen: list[int] = []

    def spy(looks, text, p, follows=None, around=None):
        out = citations_moment_scores(looks, text, p, follows, around)
        seen.append((list(looks), p, out))
        follows_seen.append(list(follows))
        around_seen.append(around)
        return out

    citations_moment_scores = citations.moment_scores
    monkeypatch.setattr(citations, "moment_scores", spy)
    mem = filled(runtime, log_dir=tmp_path / "log")
    mem.extend(scenes(1, 5, seed=9), timestamps=[54.0 + i for i in range(5)])  # open frames
    runtime.moment_probe = probe
    try:
        timed = mem.ask(QUESTION, max_new_tokens=6, retrieve=False)
        wide = filled(runtime, retrieval=Retrieval(budget=30, recent=0.0, scorer="frames"))
        retrieved = wide.ask(QUESTION, max_new_tokens=6)
        wide.close()
    finally:
        runtime.moment_probe = None
    # a stay runs only through spans that follow one another in the stream: the newest
    # intervals and the open frames do; retrieved ones far apart do not (1 frame a second)
    for answer, follows in zip((timed, retrieved), follows_seen, strict=True):
        spans = sorted((c.t_start, c.t_end) for c in answer.cited)
        assert follows == [i > 0 and spans[i][0] == spans[i - 1][1] + 1.0
                           for i in range(len(spans))], (spans, follows)
    assert follows_seen[0][1:] == [True] * (len(follows_seen[0]) - 1)
    assert not all(follows_seen[1][1:])
    del seen[1:]
    framed = mem.ask(QUESTION, max_new_tokens=6, retrieve=False)
    sink = mem.state.store.sink_tokens
    ids = torch.tensor(runtime.tokenizer(mem.config.prompt.format_question(QUESTION),
                                         add_special_tokens=False)["input_ids"])
    queries = question_queries(runtime.model, mem.state.store.keys()[:, :, :, :sink],
                               mem.state.store.values()[:, :, :, :sink], ids,
                               slice(probe.layer, probe.layer + 1))[0]
    mem.close()
    assert len(seen) == 1  # once, for the question with a probe
    looks, p, moment = seen[0]
    assert torch.allclose(p, probe.probabilities(queries), atol=1e-5)
    assert timed.text == framed.text  # the probe changes what is cited, never the answer
    # the stay is built around the span the plain citation (no probe) puts first
    spans = sorted((c.t_start, c.t_end) for c in framed.cited)
    assert around_seen[0] == spans.index((framed.cited[0].t_start, framed.cited[0].t_end))
    # the spans in context order (time order): each cited weight is the plain-match citation's
    # attention share re-weighed by the moment score instead of the match
    spans = sorted((c.t_start, c.t_end) for c in framed.cited)
    assert len(looks) == len(spans)
    by_match = {(c.t_start, c.t_end): c for c in framed.cited}
    scale = runtime.frame_scorer("world").scale
    match = torch.tensor([by_match[s].match for s in spans])
    attention = torch.tensor([by_match[s].weight for s in spans]) / torch.softmax(
        scale * match, 0)
    want = attention * torch.softmax(scale * moment, 0)
    want = want / want.sum()
    by_moment = {(c.t_start, c.t_end): c for c in timed.cited}
    got = torch.tensor([by_moment[s].weight for s in spans])
    assert torch.allclose(got, want, atol=1e-4)
    assert [by_moment[s].match for s in spans] == [by_match[s].match for s in spans]
