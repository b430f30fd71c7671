"""Questions and answers computed from an episode's ground truth.

Five video tasks, each with several question *forms*; every form has at least 10 training
phrasings and 2 held-out phrasings that only ``split="eval"`` uses:

- ``attribute``: the colour of the (only) <shape>; the shape of the (only) <colour> object.
- ``order``: which of two objects appeared first; the first / last object; the order of 3-4
  objects (VICO-style).
- ``count``: objects; <colour> objects; <shape>s; scene cuts.
- ``time``: when an object appeared / disappeared (seconds); did X appear before Y (yes/no);
  which object was on screen at second N.
- ``needle``: the word or number on a sign (or on the k-th sign when there are several).
- ``exist``: did <a red star / a star / a red object> appear -- present ones ("yes") and, as
  often, absent ones ("no"), half of those sharing a colour or a shape with an object present;
  what colour was the <shape> when no <shape> appeared.
- ``now``: what is on screen now (at the end: the video ends when the question is asked) --
  an object, or "nothing"; is the <object> still on screen.
- ``offline`` (in a world that draws outages, `WorldConfig.offline_prob`): was the camera
  offline at any point (yes / no), when it went offline and for how long (seconds), and what
  happened meanwhile -- which the memory cannot know (any denial). The memory tells the model
  of the outage in words before every question (`streamvxl.gaps`).

Questions whose true answer is that nothing of the kind was seen ("what colour was the
<shape>" when no <shape> appeared; "what is on screen now" over an empty frame) are answered
right by any denial ("none", "there was no star", "I did not see one"; kind ``absent``).

The newer tasks come last in `VIDEO_TASKS` and their forms last in `FORMS`, and draw from the
generator only when asked for: questions of the first five tasks drawn task by task (as the
evaluations and the demo draw them) are the ones they were before these tasks existed.

Forms of the newer tasks are phrased by a grammar (`streamvxl.world.grammar`): training expands
`TRAIN_GRAMMAR`, held-out evaluation as often `HELD_OUT_GRAMMAR`, whose wording shares no phrasing with it.

A question is only asked when the ground truth makes it unambiguous: objects are named by
"<colour> <shape>" only when that name is unique in the episode, "the <shape>" only when one
object has that shape, order questions only between objects entering on different frames, and
"on screen at second N" only when exactly one object (and no sign) is visible around N.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from .answers import number_to_words
from .grammar import (
    HELD_OUT_GRAMMAR,
    TEMPLATE_FORMS_HELD_OUT_GRAMMAR,
    TEMPLATE_FORMS_TRAIN_CORES,
    TRAIN_GRAMMAR,
    Grammar,
    expand,
    symbols_below,
)
from .scene import COLOURS, HELD_OUT_COMBOS, PLURALS, SHAPES, Episode, Sign, Split, WorldObject

Task = Literal["attribute", "order", "count", "time", "needle", "exist", "now", "offline",
               "compare"]
AnswerKind = Literal["text", "number", "seconds", "yes_no", "list", "absent"]
HeldOut = Literal["templates", "grammar", "crossed"]
"""Where eval's held-out phrasings of a template form come from: its two held-out templates,
`streamvxl.world.grammar.TEMPLATE_FORMS_HELD_OUT_GRAMMAR`, or ("crossed") for a form with a
denial counterpart in `WORDED_ALIKE`, the counterpart's *training* wordings -- words that may
have taught the model the other form's answer ("What colour was the <shape>?" -> "none"); the
other forms then use their held-out templates. Forms with a grammar always use the held-out
grammar."""
ExistNaming = Literal["recorded", "balanced"]
"""How existence questions name an absent thing. "recorded": one thing sharing a part with a
present object, named by both parts, and one sharing neither, named by both or by one -- the
draw every recorded question set used, which names absent things by both parts far more often
than present ones, so the wording alone predicted the answer (a model trained on it answered
"a red star" -> "no", "a star" -> "yes"; docs/results.md). "balanced": each absent thing named
as a present object is (`_exists_present`): by colour and shape, by shape, or by colour, a
third each, so only the video tells the answer."""
Pairing = Literal["trained", "held_out"]
"""Whether a question is about an object of a (shape, colour) pairing training drew (`pairing`)."""
VIDEO_TASKS: tuple[Task, ...] = ("attribute", "order", "count", "time", "needle", "exist", "now",
                                 "offline")
"""Tasks `make_questions` asks about a video ("compare" is for multi-image samples)."""
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


@dataclass(frozen=True)
class QA:
    """One question about an episode with its answer and the frames that show the answer."""

    task: Task
    form: str
    """The question form, a key of `FORMS` (or of the image forms in `training.samples`)."""
    question: str
    answer: str
    """The canonical short answer ("red", "3", "12 seconds", "yes", "red circle")."""
    accepted: tuple[str, ...]
    """Answers that count as correct (before the tolerant matching of `is_correct`)."""
    evidence: tuple[int, int]
    """Frames [start, stop) that show the answer (for multi-image samples: image indices)."""
    kind: AnswerKind = "text"
    """How `is_correct` compares: text, number, seconds (with tolerance), yes_no, list."""
    template: str = ""
    """The phrasing the question was written from."""
    novel_phrasing: bool = False
    """Whether the phrasing is held out of training."""
    params: tuple[tuple[str, str], ...] = field(default=())
    """What the question is about, e.g. (("shape", "star"),) or (("a", "0"), ("b", "2"))."""

    def param(self, key: str) -> str:
        """One entry of ``params``."""
        return dict(self.params)[key]


@dataclass(frozen=True)
class Form:
    """A question form: its phrasings and how its answer is compared."""

    name: str
    task: Task
    kind: AnswerKind
    templates: tuple[str, ...]
    """Training phrasings (``str.format`` templates)."""
    held_out: tuple[str, ...]
    """Phrasings only ``split="eval"`` uses."""
    grammar: str = ""
    """Start symbol in `streamvxl.world.grammar`'s grammars; when set, phrasings come from
    them instead of ``templates`` / ``held_out``."""
    weight: float = 1.0
    """Relative chance of this form among its task's forms that have a question: it keeps a
    task's yes / no answers balanced where more of its forms answer "no" than "yes"."""


def _grammar_form(name: str, task: Task, kind: AnswerKind, symbol: str,
                  weight: float = 1.0) -> Form:
    return Form(name, task, kind, (), (), symbol, weight)


def _form(name: str, task: Task, kind: AnswerKind, *phrasings: str) -> Form:
    """The last two phrasings are held out."""
    return Form(name, task, kind, phrasings[:-2], phrasings[-2:])


FORMS: dict[str, Form] = {f.name: f for f in (
    _form(
        "colour_of_shape", "attribute", "text",
        "What colour is the {shape}?",
        "What color is the {shape}?",
        "Which colour was the {shape} in the video?",
        "Tell me the color of the {shape}.",
        "The {shape} that appeared: what colour was it?",
        "What is the colour of the {shape}?",
        "Name the color of the {shape} you saw.",
        "In the video, which color does the {shape} have?",
        "A {shape} appeared at some point. What colour was it?",
        "Can you tell what color the {shape} was?",
        "Describe the {shape}'s colour in one word.",
        "Of what hue was the {shape}?"),
    _form(
        "shape_of_colour", "attribute", "text",
        "What shape is the {colour} object?",
        "What shape was the {colour} object?",
        "Which shape had the colour {colour}?",
        "Name the shape of the {colour} object.",
        "The {colour} object in the video: what shape was it?",
        "What kind of shape was {colour}?",
        "Tell me the shape of the {colour} thing.",
        "Which shape appeared in {colour}?",
        "What was the {colour} object's shape?",
        "Identify the shape of the {colour} object.",
        "One object was {colour}. Which shape was it?",
        "What form did the {colour} item take?"),
    _form(
        "first_of_two", "order", "text",
        "Which appeared first, the {a} or the {b}?",
        "Which came first: the {a} or the {b}?",
        "Did the {a} or the {b} show up earlier?",
        "Between the {a} and the {b}, which one appeared first?",
        "Which was seen first, the {a} or the {b}?",
        "Of the {a} and the {b}, which entered the scene first?",
        "Which object appeared earlier: the {a} or the {b}?",
        "Tell me which appeared sooner, the {a} or the {b}.",
        "The {a} and the {b} both appeared. Which one was first?",
        "Which showed up before the other, the {a} or the {b}?",
        "Who made an entrance earlier, the {a} or the {b}?",
        "Pick the one that arrived first: the {a} or the {b}."),
    _form(
        "first_overall", "order", "text",
        "Which object appeared first?",
        "What was the first object to appear?",
        "Which object showed up first in the video?",
        "Name the object that appeared first.",
        "Which object entered the scene first?",
        "What object appeared first in the video?",
        "Tell me which object came first.",
        "Which object was the earliest to appear?",
        "Of all the objects, which one appeared first?",
        "Which object did you see appear first?",
        "Which object was the very first to show up?",
        "Among all objects, which arrived before every other?"),
    _form(
        "last_overall", "order", "text",
        "Which object appeared last?",
        "What was the last object to appear?",
        "Which object showed up last in the video?",
        "Name the object that appeared last.",
        "Which object entered the scene last?",
        "What object appeared last in the video?",
        "Tell me which object came last.",
        "Which object was the latest to appear?",
        "Of all the objects, which one appeared last?",
        "Which object did you see appear last?",
        "Which object was the final one to show up?",
        "Among all objects, which arrived after every other?"),
    _form(
        "sequence", "order", "list",
        "In what order did these objects appear: {objects}?",
        "Put these objects in the order they appeared: {objects}.",
        "List {objects} in order of appearance.",
        "Sort these by when they first appeared: {objects}.",
        "What was the order of appearance of {objects}?",
        "In which order did the following show up: {objects}?",
        "Order these objects from first to last appearance: {objects}.",
        "Arrange {objects} by the time they appeared.",
        "Give the order in which {objects} appeared.",
        "Rank these by appearance time, earliest first: {objects}.",
        "Chronologically, how did {objects} enter the video?",
        "Sequence these objects by arrival: {objects}."),
    _form(
        "count_objects", "count", "number",
        "How many objects appeared in the video?",
        "How many objects did you see?",
        "Count the objects that appeared.",
        "What is the number of objects that appeared?",
        "How many different objects showed up?",
        "How many shapes appeared in total?",
        "In total, how many objects were there?",
        "How many objects entered the scene?",
        "Tell me how many objects appeared.",
        "What is the total count of objects in the video?",
        "How many distinct things appeared over the whole video?",
        "Give the object count for this video."),
    _form(
        "count_colour", "count", "number",
        "How many {colour} objects appeared?",
        "How many {colour} objects were there?",
        "Count the {colour} objects.",
        "How many objects were {colour}?",
        "How many {colour} shapes did you see?",
        "What is the number of {colour} objects in the video?",
        "How many of the objects were colored {colour}?",
        "Tell me how many {colour} objects showed up.",
        "How many times did a new {colour} object appear?",
        "In total, how many {colour} objects appeared?",
        "Give the count of {colour} items in the video.",
        "How many things in {colour} could be seen?"),
    _form(
        "count_shape", "count", "number",
        "How many {shapes} appeared?",
        "How many {shapes} were there?",
        "Count the {shapes}.",
        "How many {shapes} did you see?",
        "What is the number of {shapes} in the video?",
        "How many {shapes} showed up in total?",
        "Tell me how many {shapes} appeared.",
        "How many objects were {shapes}?",
        "How many of the objects were {shapes}?",
        "In total, how many {shapes} appeared?",
        "Give the count of {shapes} in the video.",
        "How many {shape}-shaped things could be seen?"),
    _form(
        "count_cuts", "count", "number",
        "How many scene cuts were there?",
        "How many times did the scene change?",
        "How many cuts does the video have?",
        "Count the scene cuts in the video.",
        "How many times did the background change?",
        "How many scene changes happened?",
        "How many cuts to a new scene were there?",
        "What is the number of scene cuts?",
        "Tell me how many times the video cut to a new scene.",
        "How many abrupt scene changes occurred?",
        "How often did the backdrop switch?",
        "Give the number of shot boundaries in the video."),
    _form(
        "when_appear", "time", "seconds",
        "When did the {obj} appear?",
        "At what second did the {obj} appear?",
        "When did the {obj} first show up?",
        "At which time did the {obj} enter?",
        "How many seconds into the video did the {obj} appear?",
        "At what time does the {obj} appear?",
        "When was the {obj} first visible?",
        "Tell me when the {obj} appeared.",
        "At what point in seconds did the {obj} show up?",
        "When did the {obj} come into view?",
        "The {obj} arrived at which second?",
        "What was the timestamp of the {obj}'s entrance?"),
    _form(
        "when_leave", "time", "seconds",
        "When did the {obj} disappear?",
        "At what second did the {obj} disappear?",
        "When did the {obj} leave?",
        "At which time did the {obj} leave the scene?",
        "How many seconds into the video did the {obj} disappear?",
        "At what time does the {obj} vanish?",
        "When was the {obj} no longer visible?",
        "Tell me when the {obj} left.",
        "At what point in seconds did the {obj} go away?",
        "When did the {obj} go out of view?",
        "The {obj} departed at which second?",
        "What was the timestamp of the {obj}'s exit?"),
    _form(
        "before", "time", "yes_no",
        "Did the {a} appear before the {b}?",
        "Did the {a} show up earlier than the {b}?",
        "Was the {a} seen before the {b}?",
        "Did the {a} come before the {b}?",
        "Is it true that the {a} appeared before the {b}?",
        "Did the {a} enter the scene before the {b} did?",
        "Was the {a} earlier than the {b}?",
        "Did the {a} appear prior to the {b}?",
        "Answer yes or no: did the {a} appear before the {b}?",
        "Had the {a} already appeared when the {b} appeared?",
        "Was the {b} preceded by the {a}?",
        "Did the {a} arrive ahead of the {b}?"),
    _form(
        "on_screen", "time", "text",
        "What object was on screen at second {second}?",
        "Which object was visible at {time}?",
        "What object could be seen at second {second}?",
        "Which object was in view {time} into the video?",
        "At second {second}, which object was on screen?",
        "Name the object visible at the {second}-second mark.",
        "What object was showing at {time}?",
        "Which object could you see at second {second}?",
        "Tell me which object was on screen at {time}.",
        "Around second {second}, what object was on screen?",
        "What was visible when the clock read {time}?",
        "Identify the object present at time {second} s."),
    _form(
        "needle_word", "needle", "text",
        "What word was written on the sign?",
        "What did the sign say?",
        "Which word appeared on the sign?",
        "What was written on the sign?",
        "Read the sign: what word was on it?",
        "What text was shown on the sign?",
        "Tell me the word on the sign.",
        "A sign appeared briefly. What word did it show?",
        "What word could be read on the sign?",
        "What was the word on the sign in the video?",
        "Which word did the board display?",
        "Transcribe the sign's word."),
    _form(
        "needle_number", "needle", "number",
        "What number was written on the sign?",
        "What number did the sign show?",
        "Which number appeared on the sign?",
        "What was the number on the sign?",
        "Read the sign: what number was on it?",
        "What number was displayed on the sign?",
        "Tell me the number on the sign.",
        "A sign appeared briefly. What number did it show?",
        "What number could be read on the sign?",
        "What was the number written on the sign in the video?",
        "Which digits did the board display?",
        "Transcribe the sign's number."),
    _form(
        "needle_nth", "needle", "text",
        "What was written on the {ordinal} sign?",
        "What did the {ordinal} sign say?",
        "What text was on the {ordinal} sign?",
        "Read the {ordinal} sign: what did it show?",
        "What was shown on the {ordinal} sign that appeared?",
        "Tell me what the {ordinal} sign said.",
        "Several signs appeared. What did the {ordinal} one say?",
        "What could be read on the {ordinal} sign?",
        "What was written on the sign that appeared {ordinal}?",
        "Which word or number was on the {ordinal} sign?",
        "Of the signs, what did the {ordinal} one display?",
        "Transcribe the {ordinal} sign."),
    _grammar_form("colour_of_absent", "exist", "absent", "colour_of_absent"),
    # as often as the two forms whose answer is a denial together: a model trained on
    # uniform forms learned to answer "no" to "did a <present thing> appear?" (docs/results.md, the camera run)
    _grammar_form("exists_present", "exist", "yes_no", "exists", weight=2.0),
    _grammar_form("exists_absent", "exist", "yes_no", "exists"),
    _grammar_form("on_screen_now", "now", "text", "on_screen_now"),
    _grammar_form("nothing_now", "now", "absent", "on_screen_now"),
    # one form per answer: most objects have left by the last frame, so one form drawing from
    # every object answered "no" to 4 of 5 questions, and a model that learned "no" looked right
    _grammar_form("still_there", "now", "yes_no", "still_there"),
    _grammar_form("no_longer_there", "now", "yes_no", "still_there"),
    # an episode with an outage has four forms to ask, one without it one: the "yes" form
    # weighs two so that the task's yes / no answers are not one in four
    _grammar_form("went_offline", "offline", "yes_no", "offline_any", weight=2.0),
    _grammar_form("never_offline", "offline", "yes_no", "offline_any"),
    _grammar_form("offline_when", "offline", "seconds", "offline_when"),
    _grammar_form("offline_how_long", "offline", "seconds", "offline_how_long"),
    _grammar_form("missed_offline", "offline", "absent", "offline_missed"),
)}
"""Every video question form by name."""


# ------------------------------------------------------------------------------------------
# Answer variants (shared with `training.samples`)


def seconds_of(frame: int, fps: float) -> int:
    """Frame time in whole seconds, rounded half up."""
    return int(np.floor(frame / fps + 0.5))


def seconds_text(seconds: int) -> str:
    """"1 second", "12 seconds"."""
    return f"{seconds} second" + ("" if seconds == 1 else "s")


def number_variants(n: int) -> tuple[str, ...]:
    """Digits first, then words: ("3", "three")."""
    return (str(n), number_to_words(n)) if 0 <= n <= 999 else (str(n),)


def seconds_variants(seconds: int) -> tuple[str, ...]:
    """("12 seconds", "12", "12 s", "twelve seconds")."""
    words = number_to_words(seconds) if seconds <= 999 else str(seconds)
    return (seconds_text(seconds), str(seconds), f"{seconds} s",
            f"{words} second" + ("" if seconds == 1 else "s"))


def name_variants(obj: WorldObject, among: Iterable[WorldObject]) -> tuple[str, ...]:
    """Ways to name ``obj``: "red circle", plus "circle" / "red" when that alone singles it
    out among ``among``."""
    others = [o for o in among if o is not obj]
    out = [obj.name]
    if all(o.shape != obj.shape for o in others):
        out.append(obj.shape)
    if all(o.colour != obj.colour for o in others):
        out += [obj.colour, f"{obj.colour} one", f"{obj.colour} object"]
    return tuple(out)


def join_names(names: Sequence[str]) -> str:
    """"the a, the b and the c"."""
    items = [f"the {n}" for n in names]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ------------------------------------------------------------------------------------------
# Facts: every unambiguous instance of each form in an episode


@dataclass(frozen=True)
class Fact:
    """One unambiguous instance of a form: what fills its phrasing, and the answer."""

    slots: dict[str, str]
    """Template fields, e.g. {"shape": "star"}."""
    answer: str
    accepted: tuple[str, ...]
    evidence: tuple[int, int]
    params: tuple[tuple[str, str], ...] = ()


def shape_only(ep: Episode) -> bool:
    """Whether ``ep`` names its objects by shape alone: it shows an object in a colour no word
    names (`WorldObject.unnamed`), which a colour word ("the red star", "how many red
    objects") might or might not be taken to cover. Then every object is named by its shape
    (`object_names`), only a shape one object has names one, no question names a colour
    (existence by colour, "which shape was the <colour> object", colour counts), and a colour
    is asked only of an object whose shape no other object has (`_attribute_facts`; an
    unnamed colour is answered `UNNAMED_COLOUR`): existence and counts of a shape, order,
    first and last, when, the shape at a time, now, needles and outages are asked as ever."""
    return any(o.unnamed is not None for o in ep.objects)


COLOUR_FORMS: frozenset[str] = frozenset({"colour_of_shape", "shape_of_colour", "count_colour"})
"""Forms whose question or answer names a colour: in a `shape_only` episode only
"colour_of_shape" is asked (`_attribute_facts`)."""

UNNAMED_COLOUR: tuple[str, ...] = ("an unnamed colour", "unnamed", "a colour I cannot name",
                                   "a colour with no name")
"""The answer (first) and its accepted variants to "what colour was the <shape>" when the
object's colour has no word (`WorldObject.unnamed`). Not a denial: the object was there."""


def object_names(ep: Episode) -> list[str]:
    """What questions and answers call each object of ``ep``: "red circle", or in a
    `shape_only` episode its shape."""
    only = shape_only(ep)
    return [o.shape if only else o.name for o in ep.objects]


def _answer_names(ep: Episode, obj: WorldObject, among: Iterable[WorldObject]) -> tuple[str, ...]:
    """`name_variants`, or in a `shape_only` episode the shape alone."""
    return (obj.shape,) if shape_only(ep) else name_variants(obj, among)


def _referable(ep: Episode) -> list[int]:
    """Indices of objects whose name (`object_names`) is unique in the episode."""
    names = object_names(ep)
    return [i for i, n in enumerate(names) if names.count(n) == 1]


def _attribute_facts(ep: Episode, key: Literal["shape", "colour"]) -> list[Fact]:
    """For each shape (``key="shape"``) or colour only one object has, that object's other
    part. Asked by shape, an object in an unnamed colour is answered `UNNAMED_COLOUR`: a shape in a
    colour never paired with it is there, not "none" (the answer to a shape that is absent)."""
    facts = []
    values = SHAPES if key == "shape" else tuple(COLOURS)
    for value in values:
        hits = [o for o in ep.objects if getattr(o, key) == value]
        if len(hits) == 1:
            o = hits[0]
            accepted = (o.shape,) if key == "colour" else (
                (o.colour,) if o.unnamed is None else UNNAMED_COLOUR)
            facts.append(Fact({key: value}, accepted[0], accepted, (o.t_in, o.t_out),
                               ((key, value),)))
    return facts


def _first_of_two(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    facts = []
    obs, names = ep.objects, object_names(ep)
    for i, j in itertools.permutations(_referable(ep), 2):
        a, b = obs[i], obs[j]
        if a.t_in == b.t_in:
            continue
        first = i if a.t_in < b.t_in else j
        facts.append(Fact({"a": names[i], "b": names[j]}, names[first],
                          _answer_names(ep, obs[first], (a, b)),
                           (min(a.t_in, b.t_in), max(a.t_in, b.t_in) + 1),
                           (("a", str(i)), ("b", str(j)))))
    return facts


def _extreme(ep: Episode, last: bool) -> list[Fact]:
    ref = set(_referable(ep))
    if len(ep.objects) < 2:
        return []
    order = sorted(range(len(ep.objects)), key=lambda i: ep.objects[i].t_in, reverse=last)
    top, runner = ep.objects[order[0]], ep.objects[order[1]]
    if order[0] not in ref or top.t_in == runner.t_in:
        return []
    lo, hi = sorted((top.t_in, runner.t_in))
    return [Fact({}, object_names(ep)[order[0]], _answer_names(ep, top, ep.objects),
                 (lo, hi + 1))]


def _sequence(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    ref, all_names = _referable(ep), object_names(ep)
    facts = []
    for k in (3, 4):
        for subset in itertools.combinations(ref, k):
            times = [ep.objects[i].t_in for i in subset]
            if len(set(times)) < k:
                continue
            asked = [subset[int(p)] for p in rng.permutation(k)]
            ordered = sorted(subset, key=lambda i: ep.objects[i].t_in)
            names = [all_names[i] for i in ordered]
            answer = ", ".join(names)
            facts.append(Fact({"objects": join_names([all_names[i] for i in asked])},
                               answer, (answer, " then ".join(names)),
                               (min(times), max(times) + 1),
                               (("objects", ",".join(map(str, asked))),)))
    return facts


def _count_objects(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    n = len(ep.objects)
    return [Fact({}, str(n), number_variants(n), (0, ep.num_frames))]


def _count_by(ep: Episode, rng: np.random.Generator,
              key: Literal["shape", "colour"]) -> list[Fact]:
    values = SHAPES if key == "shape" else tuple(COLOURS)
    present = [v for v in values if any(getattr(o, key) == v for o in ep.objects)]
    absent = [v for v in values if v not in present]
    asked = present + ([absent[int(rng.integers(len(absent)))]] if absent else [])
    facts = []
    for v in asked:
        n = sum(getattr(o, key) == v for o in ep.objects)
        slots = {key: v, "shapes": PLURALS[v]} if key == "shape" else {key: v}
        accepted = number_variants(n) + (("none", "no") if n == 0 else ())
        facts.append(Fact(slots, str(n), accepted, (0, ep.num_frames), ((key, v),)))
    return facts


def _count_cuts(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    n = len(ep.cuts)
    return [Fact({}, str(n), number_variants(n), (0, ep.num_frames))]


def _when(ep: Episode, rng: np.random.Generator, leave: bool) -> list[Fact]:
    facts, names = [], object_names(ep)
    for i in _referable(ep):
        o = ep.objects[i]
        if leave and o.t_out >= ep.num_frames:
            continue  # never left
        frame = o.t_out if leave else o.t_in
        s = seconds_of(frame, ep.fps)
        span = (o.t_out - 1, min(o.t_out + 1, ep.num_frames)) if leave else (o.t_in, o.t_in + 1)
        facts.append(Fact({"obj": names[i]}, seconds_text(s), seconds_variants(s), span,
                           (("object", str(i)),)))
    return facts


def _before(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    facts, names = [], object_names(ep)
    for i, j in itertools.permutations(_referable(ep), 2):
        a, b = ep.objects[i], ep.objects[j]
        if a.t_in == b.t_in:
            continue
        answer = "yes" if a.t_in < b.t_in else "no"
        facts.append(Fact({"a": names[i], "b": names[j]}, answer, (answer,),
                           (min(a.t_in, b.t_in), max(a.t_in, b.t_in) + 1),
                           (("a", str(i)), ("b", str(j)))))
    return facts


def on_screen_window(ep: Episode, second: int) -> tuple[int, int]:
    """Frames [start, stop) that "at second N" covers: N * fps, +- half a second; empty when
    no frame is within half a second of it (under 1 fps a second may fall between two)."""
    f = int(np.floor(second * ep.fps + 0.5))
    if abs(f / ep.fps - second) > 0.5:
        return f, f
    h = int(ep.fps // 2)
    return max(0, f - h), min(ep.num_frames, f + h + 1)


def _on_screen(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    ref = set(_referable(ep))
    facts = []
    for second in range(int((ep.num_frames - 1) / ep.fps) + 1):
        a, b = on_screen_window(ep, second)
        if a >= b:
            continue
        seen = [i for i, o in enumerate(ep.objects) if o.t_in < b and o.t_out > a]
        signs = [g for g in ep.signs if g.t_in < b and g.t_out > a]
        if len(seen) != 1 or signs or seen[0] not in ref:
            continue
        o = ep.objects[seen[0]]
        if not (o.t_in <= a and o.t_out >= b):
            continue  # enters or leaves inside the window
        if ep.offline is not None and a < ep.offline[1] and b > ep.offline[0]:
            continue  # the camera did not deliver (all of) the window
        facts.append(Fact({"second": str(second), "time": seconds_text(second)},
                           object_names(ep)[seen[0]], _answer_names(ep, o, ep.objects), (a, b),
                           (("second", str(second)),)))
    return facts


def _sign_answer(sign: Sign) -> tuple[str, tuple[str, ...]]:
    return sign.answer, (number_variants(int(sign.text)) if sign.is_number else (sign.answer,))


def _needle(ep: Episode, rng: np.random.Generator, numbers: bool) -> list[Fact]:
    if len(ep.signs) != 1 or ep.signs[0].is_number != numbers:
        return []
    g = ep.signs[0]
    answer, accepted = _sign_answer(g)
    return [Fact({}, answer, accepted, (g.t_in, g.t_out), (("sign", "0"),))]


def _needle_nth(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    order = sorted(range(len(ep.signs)), key=lambda i: ep.signs[i].t_in)
    times = [ep.signs[i].t_in for i in order]
    if len(order) < 2 or len(set(times)) < len(times) or len(order) > len(ORDINALS):
        return []
    facts = []
    for rank, i in enumerate(order):
        g = ep.signs[i]
        answer, accepted = _sign_answer(g)
        facts.append(Fact({"ordinal": ORDINALS[rank]}, answer, accepted, (g.t_in, g.t_out),
                           (("sign", str(i)),)))
    return facts


def _indefinite(phrase: str) -> str:
    """"a red star", "an orange ring"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _noun_phrases(shape: str | None, colour: str | None) -> str:
    if shape and colour:
        return _indefinite(f"{colour} {shape}")
    return _indefinite(shape) if shape else _indefinite(f"{colour} object")


def _exists_present(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    """One fact per object: named by colour and shape, by shape, or by colour (drawn)."""
    facts = []
    for o in ep.objects:
        how = int(rng.integers(3))
        shape, colour = (o.shape, o.colour) if how == 0 else (
            (o.shape, None) if how == 1 else (None, o.colour))
        facts.append(Fact({"np": _noun_phrases(shape, colour)}, "yes", ("yes",),
                          (o.t_in, o.t_out), (("shape", shape or ""), ("colour", colour or ""))))
    return facts


def _shapes_present(ep: Episode) -> list[Fact]:
    """Existence in a `shape_only` episode: one fact per shape present, named by it (its
    evidence: the first object of that shape)."""
    facts = []
    for shape in SHAPES:
        hits = [o for o in ep.objects if o.shape == shape]
        if hits:
            facts.append(Fact({"np": _noun_phrases(shape, None)}, "yes", ("yes",),
                              (hits[0].t_in, hits[0].t_out), (("shape", shape), ("colour", ""))))
    return facts


def _shapes_absent(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    """Existence in a `shape_only` episode: up to two shapes no object has, named by shape
    (whether a named colour covers an unnamed one is not asked)."""
    shapes = {o.shape for o in ep.objects}
    absent = [s for s in SHAPES if s not in shapes]
    picked = rng.choice(len(absent), size=min(2, len(absent)), replace=False) if absent else []
    return [Fact({"np": _noun_phrases(absent[int(k)], None)}, "no", ("no",), (0, ep.num_frames),
                 (("shape", absent[int(k)]), ("colour", ""), ("near", "False")))
            for k in picked]


def _exists_absent(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    """Up to two absent things, one sharing a colour or a shape with an object present
    ("near") and one sharing neither ("far"), so each is half of what is asked."""
    combos = {o.combo for o in ep.objects}
    shapes = {o.shape for o in ep.objects}
    colours = {o.colour for o in ep.objects}
    near = [(s, c) for s in SHAPES for c in COLOURS
            if (s, c) not in combos and (s in shapes or c in colours)]
    far = [(s, None) for s in SHAPES if s not in shapes] + \
          [(None, c) for c in COLOURS if c not in colours] + \
          [(s, c) for s in SHAPES for c in COLOURS if s not in shapes and c not in colours]
    facts = []
    for pool in (near, far):
        if pool:
            shape, colour = pool[int(rng.integers(len(pool)))]
            facts.append(Fact({"np": _noun_phrases(shape, colour)}, "no", ("no",),
                              (0, ep.num_frames),
                              (("shape", shape or ""), ("colour", colour or ""),
                               ("near", str(pool is near)))))
    return facts


def _exists_absent_balanced(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    """Up to two absent things, each named the way `_exists_present` names a present object
    (colour and shape, shape alone, colour alone: a third each), so a question's wording says
    nothing of its answer (`ExistNaming`). Named by both parts, the first shares a colour or a
    shape with an object present ("near": a red star beside a red circle) and the second
    shares neither, as in the recorded draw; a thing named by one part is absent by that
    part alone. A naming with no absent thing to name (every shape on screen) is skipped."""
    combos = {o.combo for o in ep.objects}
    shapes = {o.shape for o in ep.objects}
    colours = {o.colour for o in ep.objects}
    pairs = [(s, c) for s in SHAPES for c in COLOURS if (s, c) not in combos]
    near = [(s, c) for s, c in pairs if s in shapes or c in colours]
    far = [(s, c) for s, c in pairs if s not in shapes and c not in colours]
    by_naming: tuple[list[tuple[str | None, str | None]], ...] = (
        [], [(s, None) for s in SHAPES if s not in shapes],
        [(None, c) for c in COLOURS if c not in colours])
    facts: list[Fact] = []
    asked: set[tuple[str | None, str | None]] = set()
    for k in range(2):
        how = int(rng.integers(3))
        pool = [t for t in ((near if k == 0 else far) if how == 0 else by_naming[how])
                if t not in asked]
        if not pool:
            continue
        shape, colour = pool[int(rng.integers(len(pool)))]
        asked.add((shape, colour))
        shares = (shape is not None and shape in shapes) or (colour is not None and
                                                              colour in colours)
        facts.append(Fact({"np": _noun_phrases(shape, colour)}, "no", ("no",),
                          (0, ep.num_frames),
                          (("shape", shape or ""), ("colour", colour or ""),
                           ("near", str(shares)))))
    return facts


EXIST_YES_NO_FORMS: tuple[str, ...] = ("exists_present", "exists_absent")
"""The existence forms answered "yes" (the thing appeared) or "no" (it did not), each naming its
thing (`naming`); the task's third form, the colour of an absent shape, is answered by a
denial."""


def naming(qa: QA) -> Literal["both", "shape", "colour"] | None:
    """How an existence question names its thing: by colour and shape ("both"), by shape, or
    by colour; None for any other question. Splitting existence accuracy by naming shows a
    model that answers from the wording (`ExistNaming`)."""
    if qa.form not in EXIST_YES_NO_FORMS:
        return None
    shape, colour = qa.param("shape"), qa.param("colour")
    return "both" if shape and colour else ("shape" if shape else "colour")


def _last_frame(ep: Episode) -> tuple[list[int], list[Sign]]:
    t = ep.num_frames - 1
    return ([i for i, o in enumerate(ep.objects) if o.visible(t)],
            [g for g in ep.signs if g.visible(t)])


def _on_screen_now(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    seen, signs = _last_frame(ep)
    if len(seen) != 1 or signs or seen[0] not in _referable(ep):
        return []
    o = ep.objects[seen[0]]
    return [Fact({}, object_names(ep)[seen[0]], _answer_names(ep, o, ep.objects),
                 (ep.num_frames - 1, ep.num_frames))]


NOTHING = ("nothing", "none", "no object", "nothing is on screen", "no objects")


def _nothing_now(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    seen, signs = _last_frame(ep)
    if seen or signs:
        return []
    return [Fact({}, "nothing", NOTHING, (ep.num_frames - 1, ep.num_frames))]


def _still_there(ep: Episode, rng: np.random.Generator, visible: bool) -> list[Fact]:
    """"Is the <object> still on screen?" about objects that are (``visible``) or are not in
    the last frame."""
    t = ep.num_frames - 1
    facts, names = [], object_names(ep)
    for i in _referable(ep):
        o = ep.objects[i]
        if o.visible(t) != visible:
            continue
        answer = "yes" if visible else "no"
        facts.append(Fact({"obj": names[i]}, answer, (answer,),
                          (max(o.t_out - 1, 0), t + 1),
                          (("object", str(i)),)))
    return facts


def _colour_of_absent(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    shapes = {o.shape for o in ep.objects}
    absent = [s for s in SHAPES if s not in shapes]
    if not absent:
        return []
    shape = absent[int(rng.integers(len(absent)))]
    return [Fact({"shape": shape}, "none", ("none", f"no {shape}", f"there was no {shape}"),
                 (0, ep.num_frames), (("shape", shape),))]


def _went_offline(ep: Episode, rng: np.random.Generator, went: bool) -> list[Fact]:
    """"Was the camera offline at any point?" (``went``: it was), asked only in a world that
    draws outages (`Episode.outages_drawn`)."""
    if not ep.outages_drawn or (ep.offline is not None) != went:
        return []
    answer = "yes" if went else "no"
    return [Fact({}, answer, (answer,), _outage_frames(ep) if went else (0, ep.num_frames))]


def _outage_frames(ep: Episode) -> tuple[int, int]:
    """The delivered frames on either side of the outage and what it hid: [a - 1, b + 1)."""
    assert ep.offline is not None
    a, b = ep.offline
    return a - 1, b + 1


def _offline_when(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    """When the camera went offline: the last frame before the outage (what the memory's note
    says, `streamvxl.prompt.PromptTemplate.gap`)."""
    if ep.offline is None:
        return []
    s = seconds_of(ep.offline[0] - 1, ep.fps)
    return [Fact({}, seconds_text(s), seconds_variants(s), _outage_frames(ep))]


def _offline_how_long(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    """How long the memory saw nothing: from the last frame before the outage to the first
    after it."""
    if ep.offline is None:
        return []
    a, b = ep.offline
    s = int(np.floor((b - (a - 1)) / ep.fps + 0.5))
    return [Fact({}, seconds_text(s), seconds_variants(s), _outage_frames(ep))]


UNSEEN = ("I did not see that", "nothing I could see", "I did not see it")


def _missed_offline(ep: Episode, rng: np.random.Generator) -> list[Fact]:
    """What happened while the camera was offline: the memory cannot know (any denial)."""
    if ep.offline is None:
        return []
    return [Fact({}, UNSEEN[0], UNSEEN, _outage_frames(ep))]


_FACTS: dict[str, Callable[[Episode, np.random.Generator], list[Fact]]] = {
    "colour_of_shape": lambda ep, rng: _attribute_facts(ep, "shape"),
    "shape_of_colour": lambda ep, rng: _attribute_facts(ep, "colour"),
    "first_of_two": _first_of_two,
    "first_overall": lambda ep, rng: _extreme(ep, last=False),
    "last_overall": lambda ep, rng: _extreme(ep, last=True),
    "sequence": _sequence,
    "count_objects": _count_objects,
    "count_colour": lambda ep, rng: _count_by(ep, rng, "colour"),
    "count_shape": lambda ep, rng: _count_by(ep, rng, "shape"),
    "count_cuts": _count_cuts,
    "when_appear": lambda ep, rng: _when(ep, rng, leave=False),
    "when_leave": lambda ep, rng: _when(ep, rng, leave=True),
    "before": _before,
    "on_screen": _on_screen,
    "needle_word": lambda ep, rng: _needle(ep, rng, numbers=False),
    "needle_number": lambda ep, rng: _needle(ep, rng, numbers=True),
    "needle_nth": _needle_nth,
    "colour_of_absent": _colour_of_absent,
    "exists_present": _exists_present,
    "exists_absent": _exists_absent,
    "on_screen_now": _on_screen_now,
    "nothing_now": _nothing_now,
    "still_there": lambda ep, rng: _still_there(ep, rng, visible=True),
    "no_longer_there": lambda ep, rng: _still_there(ep, rng, visible=False),
    "went_offline": lambda ep, rng: _went_offline(ep, rng, went=True),
    "never_offline": lambda ep, rng: _went_offline(ep, rng, went=False),
    "offline_when": _offline_when,
    "offline_how_long": _offline_how_long,
    "missed_offline": _missed_offline,
}


WORDED_ALIKE: dict[str, str] = {"colour_of_absent": "colour_of_shape"}
"""A form whose answer is "none" -> the template form asking the same of a present object.
Trained with ``grammar_prob`` > 0, each is also worded as the other: with wordings of their
own, "What colour was the <shape>?" meant "none" to the third camera candidate, which then
denied the colour of every present object in the clips from outside the renderer (4 of 5;
docs/results.md). The other denial forms share their grammar with their counterparts already
(`exists_absent` / `exists_present`, `nothing_now` / `on_screen_now`, ...)."""


def template_train_grammar(forms: dict[str, Form]) -> Grammar:
    """The training grammar of the template forms among ``forms``: per form, an opening, a
    core -- one of its training templates or one of `TEMPLATE_FORMS_TRAIN_CORES`' wordings --
    and for yes / no and number answers a closing. A template list alone taught the model its
    wording (the five tasks fell 11 points in the held-out grammar, docs/results.md); the
    grammar multiplies the training phrasings without touching the held-out ones. A form that
    is the counterpart of a denial form (`WORDED_ALIKE`) also takes that form's training
    wordings, as a second alternative."""
    closes: dict[AnswerKind, str] = {"yes_no": "<yes_no_close>", "number": "<count_close_train>"}
    grammar: Grammar = {k: TRAIN_GRAMMAR[k] for k in ("scope_video", "yes_no_close")}
    grammar.update({k: TEMPLATE_FORMS_TRAIN_CORES[k]
                    for k in ("template_open", "count_close_train")})
    counterparts = {present: forms[absent] for absent, present in WORDED_ALIKE.items()
                    if absent in forms}
    for form in forms.values():
        if form.grammar or not form.templates:
            continue
        grammar[form.name] = (f"<template_open><{form.name}_core>{closes.get(form.kind, '')}",)
        grammar[f"{form.name}_core"] = (
            form.templates + TEMPLATE_FORMS_TRAIN_CORES.get(form.name, ()))
        if (denial := counterparts.get(form.name)) is not None:
            grammar[form.name] += TRAIN_GRAMMAR[denial.grammar]
            grammar.update({k: TRAIN_GRAMMAR[k]
                            for k in symbols_below(TRAIN_GRAMMAR, denial.grammar)
                            if k not in grammar})
    return grammar


_TEMPLATE_TRAIN_GRAMMAR = template_train_grammar(FORMS)
_DENIAL_OF = {present: absent for absent, present in WORDED_ALIKE.items()}


def phrase(form: Form, slots: dict[str, str], rng: np.random.Generator, split: Split,
           novel_phrasing_prob: float = 0.5, held_out: HeldOut = "templates",
           grammar_prob: float = 0.0) -> tuple[str, str, bool]:
    """Pick a phrasing and fill it: (question, template, novel). Training never picks a
    held-out phrasing; eval picks one with probability ``novel_phrasing_prob`` (for a form
    with a grammar: a phrasing of the held-out grammar; for a template form: one of its
    held-out templates, or with ``held_out="grammar"`` a phrasing of
    `TEMPLATE_FORMS_HELD_OUT_GRAMMAR`). A template form's training phrasing comes from
    `template_train_grammar` with probability ``grammar_prob`` (0: its template list, drawing
    what the recorded evaluations drew), and so does a denial form's in `WORDED_ALIKE` (its
    counterpart's training grammar). With ``held_out="crossed"`` the counterpart of a denial
    form takes its novel phrasing from the denial form's training grammar."""
    own = FORMS.get(form.name) is form  # not an image form of the same name (training.samples)
    if form.grammar:
        alike = WORDED_ALIKE.get(form.name) if own else None
        if split == "train" and alike and grammar_prob > 0 and rng.random() < grammar_prob:
            template = expand(_TEMPLATE_TRAIN_GRAMMAR, alike, rng)  # worded as its counterpart
            return template.format(**slots), template, False
        novel = split == "eval" and rng.random() < novel_phrasing_prob
        template = expand(HELD_OUT_GRAMMAR if novel else TRAIN_GRAMMAR, form.grammar, rng)
        return template.format(**slots), template, novel
    novel = split == "eval" and bool(form.held_out) and rng.random() < novel_phrasing_prob
    if novel and held_out == "grammar":
        template = expand(TEMPLATE_FORMS_HELD_OUT_GRAMMAR, form.name, rng)
        return template.format(**slots), template, novel
    denial = _DENIAL_OF.get(form.name) if own else None
    if novel and held_out == "crossed" and denial:
        template = expand(TRAIN_GRAMMAR, FORMS[denial].grammar, rng)
        return template.format(**slots), template, novel
    if not novel and own and grammar_prob > 0 and rng.random() < grammar_prob:
        template = expand(_TEMPLATE_TRAIN_GRAMMAR, form.name, rng)
        return template.format(**slots), template, novel
    pool = form.held_out if novel else form.templates
    template = pool[int(rng.integers(len(pool)))]
    return template.format(**slots), template, novel


_BALANCED_FACTS: dict[str, Callable[[Episode, np.random.Generator], list[Fact]]] = {
    "exists_absent": _exists_absent_balanced,
}
"""The forms whose facts ``exist_naming="balanced"`` draws another way (`ExistNaming`)."""


def form_facts(name: str, episode: Episode, rng: np.random.Generator,
               exist_naming: ExistNaming = "recorded") -> list[Fact]:
    """Every unambiguous instance of video form ``name`` in ``episode`` (some forms draw from
    ``rng``: the listing order of `sequence`, the absent colour or shape of counts, the absent
    things of `exists_absent` -- named as ``exist_naming`` says; in a `shape_only` episode by
    shape, and of the forms in `COLOUR_FORMS` only "colour_of_shape" has facts)."""
    if name not in _FACTS:
        raise ValueError(f"unknown form {name!r}; choose from {tuple(_FACTS)}")
    if shape_only(episode):  # no colour names a thing: existence by shape alone
        if name in COLOUR_FORMS and name != "colour_of_shape":
            return []
        if name == "exists_present":
            return _shapes_present(episode)
        if name == "exists_absent":
            return _shapes_absent(episode, rng)
    if exist_naming == "balanced" and name in _BALANCED_FACTS:
        return _BALANCED_FACTS[name](episode, rng)
    return _FACTS[name](episode, rng)


def _pick_form(by_form: dict[str, list[Fact]], forms: dict[str, Form],
               rng: np.random.Generator) -> str:
    names = list(by_form)
    weights = np.array([forms[n].weight for n in names])
    if (weights == weights[0]).all():  # uniform: the draw the recorded question sets used
        return names[int(rng.integers(len(names)))]
    return names[int(np.searchsorted(np.cumsum(weights), rng.random() * weights.sum(),
                                     side="right"))]


def draw_questions(facts: dict[str, list[Fact]], forms: dict[str, Form],
                   rng: np.random.Generator, split: Split, n: int,
                   novel_phrasing_prob: float = 0.5, held_out: HeldOut = "templates",
                   grammar_prob: float = 0.0,
                   task_weights: Mapping[str, float] | None = None) -> list[QA]:
    """Up to ``n`` questions from candidate ``facts`` (by form name; consumed): a task among
    those with candidates (uniformly, or by ``task_weights``: a task not named weighs 1, one
    weighing 0 is never asked), then a form of it (by `Form.weight`), then a fact, then a
    phrasing (`phrase`)."""
    pools: dict[Task, dict[str, list[Fact]]] = {}
    for name, items in facts.items():
        weight = 1.0 if not task_weights else task_weights.get(forms[name].task, 1.0)
        if items and weight > 0:
            pools.setdefault(forms[name].task, {})[name] = items
    out: list[QA] = []
    while len(out) < n and pools:
        if task_weights:
            w = np.array([task_weights.get(t, 1.0) for t in pools], dtype=np.float64)
            task = list(pools)[int(rng.choice(len(pools), p=w / w.sum()))]
        else:  # the uniform draw every recorded evaluation and run made
            task = list(pools)[int(rng.integers(len(pools)))]
        by_form = pools[task]
        name = _pick_form(by_form, forms, rng)
        fact = by_form[name].pop(int(rng.integers(len(by_form[name]))))
        if not by_form[name]:
            del by_form[name]
            if not by_form:
                del pools[task]
        form = forms[name]
        question, template, novel = phrase(form, fact.slots, rng, split, novel_phrasing_prob,
                                           held_out, grammar_prob)
        out.append(QA(form.task, name, question, fact.answer, fact.accepted, fact.evidence,
                      form.kind, template, novel, fact.params))
    return out


def make_questions(episode: Episode, rng: np.random.Generator, split: Split = "train",
                   tasks: Iterable[Task] | None = None, n: int = 4,
                   novel_phrasing_prob: float = 0.5, held_out: HeldOut = "templates",
                   grammar_prob: float = 0.0,
                   exist_naming: ExistNaming = "recorded",
                   task_weights: Mapping[str, float] | None = None) -> list[QA]:
    """Up to ``n`` distinct unambiguous questions about an episode, tasks drawn uniformly
    (among those that have a question; by ``task_weights`` when given), then forms, then
    instances.

    Args:
        episode: the ground truth.
        rng: source of randomness; the result is deterministic given its state.
        split: "train" uses only training phrasings; "eval" also held-out ones.
        tasks: tasks to ask (default: all of `VIDEO_TASKS`).
        n: most questions to return (fewer when the episode has fewer).
        novel_phrasing_prob: in eval, chance of a held-out phrasing.
        held_out: where a template form's held-out phrasings come from (`HeldOut`): "grammar"
            measures robustness to wording no template list holds, for every task.
        grammar_prob: chance that a first-five-task question in a training phrasing is worded
            by `template_train_grammar` instead of its template list (0: the recorded draws).
        exist_naming: how existence questions name absent things (`ExistNaming`; "recorded":
            the draw of the recorded question sets, whose wording predicts the answer).
        task_weights: relative chance of each task in each question's draw (a task not named
            weighs 1; None or empty: uniform, the recorded draws).

    Example:
        >>> from streamvxl.world.scene import sample_episode
        >>> rng = np.random.default_rng(0)
        >>> qas = make_questions(sample_episode(rng), rng, tasks=["count"], n=2)
        >>> [qa.task for qa in qas]
        ['count', 'count']
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if held_out not in get_args(HeldOut):
        raise ValueError(f"held_out must be one of {get_args(HeldOut)}, got {held_out!r}")
    wanted = VIDEO_TASKS if tasks is None else tuple(tasks)
    for t in wanted:
        if t not in VIDEO_TASKS:
            raise ValueError(f"unknown task {t!r}; choose from {VIDEO_TASKS}")
    if exist_naming not in get_args(ExistNaming):
        raise ValueError(f"exist_naming must be one of {get_args(ExistNaming)}, "
                         f"got {exist_naming!r}")
    facts = {name: form_facts(name, episode, rng, exist_naming)
             for name, form in FORMS.items() if form.task in wanted}
    if not 0.0 <= grammar_prob <= 1.0:
        raise ValueError(f"grammar_prob must be in [0, 1], got {grammar_prob}")
    for t, w in (task_weights or {}).items():
        if t not in VIDEO_TASKS or not w >= 0:
            raise ValueError(f"task_weights: expected tasks of {VIDEO_TASKS} weighing >= 0, "
                             f"got {t!r}: {w!r}")
    return draw_questions(facts, FORMS, rng, split, n, novel_phrasing_prob, held_out,
                          grammar_prob, task_weights)


def subjects(episode: Episode, qa: QA) -> list[WorldObject]:
    """The objects a question is about: the ones it names or whose name answers it (empty for
    counts of everything, scene cuts, signs, and things that never appeared)."""
    obs = episode.objects
    p = dict(qa.params)
    if "object" in p:
        return [obs[int(p["object"])]]
    if "a" in p:
        return [obs[int(p["a"])], obs[int(p["b"])]]
    if "objects" in p:
        return [obs[int(i)] for i in p["objects"].split(",")]
    if "shape" in p or "colour" in p:  # attributes, counts, existence: every match present
        shape, colour = p.get("shape") or None, p.get("colour") or None
        return [o for o in obs if shape in (None, o.shape) and colour in (None, o.colour)]
    if qa.kind == "text":  # first / last of all, on screen at N or now: the answer names it
        return [o for o, name in zip(obs, object_names(episode), strict=True)
                if name == qa.answer]
    return []


def pairing(episode: Episode, qa: QA) -> Pairing | None:
    """Whether a question is about an object whose (shape, colour) pairing training never
    drew (`streamvxl.world.scene.HELD_OUT_COMBOS`: "held_out"), only about trained pairings
    ("trained"), or about no object (None). The issue's target compares the two per kind:
    a model that composes what it sees answers both alike. An object in an unnamed colour
    has no pairing."""
    about = [o for o in subjects(episode, qa) if o.unnamed is None]
    if not about:
        return None
    return "held_out" if any(o.combo in HELD_OUT_COMBOS for o in about) else "trained"
