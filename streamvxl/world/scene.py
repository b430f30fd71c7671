"""The world model: what a synthetic video shows, frame by frame, with exact ground truth.

An `Episode` is a complete description of one video: scenes (backdrops; a cut switches the
backdrop), objects (a shape in a colour that enters at ``t_in``, moves or stops, and leaves at
``t_out``) and signs (a board with a word or number, visible for a short span: the needles).
Rendering (`streamvxl.world.render`) is a pure function of it; questions
(`streamvxl.world.questions`) are computed from it.

Colours are chosen so that pixel values identify their source exactly: object colours are
saturated (channel spread >= 130), backdrops and sign boards are muted (spread <= 40) or near
white, and ink is near black, so a pixel equal to an object colour can only come from an object
of that colour. Objects and signs never overlap one another, so every object is visible (fully,
or partly while it crosses an edge) on every frame of ``[t_in, t_out)`` and on no other frame.

Unnamed colours: with ``WorldConfig.unnamed_prob`` > 0 some objects are drawn in a colour no
word of the world names (`unnamed_colour`: vivid, far from every object colour). Such an object
has no colour to ask about or to name it by, so an episode that has one names every object by
its shape (`streamvxl.world.questions.shape_only`; the colour of a shape one object has is asked,
answered "an unnamed colour" for such an object): each shape is then seen in many colours, and a
model learns it apart from the seven colours training pairs it with.

Held-out combinations: the (shape, colour) pairs in `HELD_OUT_COMBOS` are drawn only when
``split="eval"``; ``split="train"`` never produces them.

Letters: F = frames. Coordinates: x to the right, y down, in pixels; an object's (x, y) is its centre; frames are
integers t = 0 .. num_frames - 1 at time t / fps seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..gaps import GAP_MIN_INTERVALS, gap_threshold
from .camera import Camera, CameraConfig, sample_camera
from .font import CHARSET, text_size

Shape = Literal["circle", "square", "triangle", "star", "cross", "ring", "diamond"]
Colour = Literal["red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink"]
Pattern = Literal[
    "solid", "stripes_h", "stripes_v", "stripes_d", "checker", "gradient_h", "gradient_v", "dots"
]
Split = Literal["train", "eval"]
Entry = Literal["pop", "edge"]
RGB = tuple[int, int, int]

SHAPES: tuple[Shape, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "diamond")
PLURALS: dict[Shape, str] = {s: ("crosses" if s == "cross" else s + "s") for s in SHAPES}
COLOURS: dict[Colour, RGB] = {
    "red": (230, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 90, 230),
    "yellow": (240, 220, 30),
    "purple": (150, 60, 210),
    "orange": (250, 140, 20),
    "cyan": (30, 200, 210),
    "pink": (250, 120, 200),
}
PATTERNS: tuple[Pattern, ...] = (
    "solid", "stripes_h", "stripes_v", "stripes_d", "checker", "gradient_h", "gradient_v", "dots")
BACKDROP_COLOURS: tuple[RGB, ...] = (
    (70, 80, 95), (95, 100, 70), (160, 150, 125), (120, 120, 120),
    (80, 100, 85), (100, 80, 100), (150, 120, 110), (45, 50, 65), (175, 175, 170))
"""Muted colours (channel spread <= 40) for backdrops; never equal to an object colour."""
BOARD_COLOURS: tuple[RGB, ...] = ((240, 240, 240), (245, 235, 200), (220, 235, 245))
"""Sign board colours (light, muted)."""
INK: RGB = (20, 20, 20)
"""Sign text and border colour."""

HELD_OUT_COMBOS: frozenset[tuple[Shape, Colour]] = frozenset({
    ("star", "red"), ("ring", "green"), ("triangle", "blue"), ("circle", "yellow"),
    ("square", "purple"), ("cross", "orange"), ("diamond", "cyan"),
})
"""(shape, colour) pairs drawn only in ``split="eval"``: one per shape, each colour at most once,
so every shape and colour is still seen in training, just never in these pairings."""

SIGN_WORDS: tuple[str, ...] = (
    "CAT", "DOG", "SUN", "MAP", "BOX", "KEY", "CUP", "HAT", "FISH", "BIRD", "TREE", "DOOR",
    "LAMP", "BOAT", "KITE", "FROG", "MILK", "ROAD", "SHIP", "WOLF", "BELL", "CAKE", "DUCK",
    "GOAT", "BUS", "JAR", "PEN", "OWL", "FOX", "BEE", "ZOO", "SKY")
"""Words a sign may show (no shape or colour names, to keep needle answers unambiguous)."""


UNNAMED_DISTANCE = 90.0
"""How far (RGB, Euclidean) an `unnamed_colour` stays from every object colour."""
UNNAMED_SPREAD = 60
"""An `unnamed_colour`'s least channel spread (backdrops are <= 40, boards and ink less)."""


def is_unnamed_colour(rgb: RGB) -> bool:
    """Whether ``rgb`` is a colour no word of the world names: vivid (channel spread >=
    `UNNAMED_SPREAD`, so neither a backdrop nor a sign board or ink) and at least
    `UNNAMED_DISTANCE` from every object colour in `COLOURS`."""
    palette = np.array(list(COLOURS.values()), dtype=np.float64)  # (8, 3)
    v = np.asarray(rgb, dtype=np.float64)  # (3,)
    return bool(np.ptp(v) >= UNNAMED_SPREAD
                and np.linalg.norm(palette - v, axis=1).min() >= UNNAMED_DISTANCE)


def unnamed_colour(rng: np.random.Generator) -> RGB:
    """A random colour no question names (`is_unnamed_colour`), drawn by rejection."""
    while True:
        r, g, b = (int(v) for v in rng.integers(0, 256, size=3))
        if is_unnamed_colour((r, g, b)):
            return r, g, b


def train_combos() -> tuple[tuple[Shape, Colour], ...]:
    """Every (shape, colour) pair ``split="train"`` may draw, in a fixed order."""
    return tuple((s, c) for s in SHAPES for c in COLOURS if (s, c) not in HELD_OUT_COMBOS)


@dataclass(frozen=True)
class Backdrop:
    """A scene's background: a pattern of two muted colours."""

    pattern: Pattern
    """Texture kind (solid, stripes, checker, gradient, dots)."""
    colours: tuple[RGB, RGB]
    """The two colours of the pattern (the first only, for ``solid``)."""
    period: int = 16
    """Pattern period in pixels (stripe pair, checker pair, dot spacing)."""


@dataclass(frozen=True)
class Scene:
    """A run of frames with one backdrop; the next scene's ``start`` is a scene cut."""

    start: int
    """First frame of the scene."""
    backdrop: Backdrop
    """What the background looks like."""


@dataclass(frozen=True)
class WorldObject:
    """One object: visible on frames [t_in, t_out); moves linearly until ``t_stop``, then stays.

    The centre at frame t is ``(x, y) + (vx, vy) * (min(t, t_stop) - t_in)``.
    """

    shape: Shape
    colour: Colour
    size: int
    """Side of the bounding square in pixels."""
    t_in: int
    """First visible frame."""
    t_out: int
    """First frame after it left (exclusive end)."""
    x: float
    """Centre x at ``t_in``."""
    y: float
    """Centre y at ``t_in``."""
    vx: float = 0.0
    """Pixels per frame to the right while moving."""
    vy: float = 0.0
    """Pixels per frame down while moving."""
    t_stop: int | None = None
    """Frame at which motion ends; None: moves until it leaves (``t_out - 1``)."""
    enter_by: Entry = "pop"
    """'pop': appears in place; 'edge': its centre is on a frame edge at ``t_in``."""
    leave_by: Entry = "pop"
    """'pop': vanishes in place; 'edge': its centre is on a frame edge at ``t_out - 1``."""
    unnamed: RGB | None = None
    """Drawn in this colour, which no word names (`is_unnamed_colour`), instead of ``colour``
    (then only the draw that placed it: no question asks or names it); None: in ``colour``."""

    @property
    def name(self) -> str:
        """The referring expression, e.g. ``"red circle"``; an unnamed-colour object's is its
        shape alone."""
        return self.shape if self.unnamed is not None else f"{self.colour} {self.shape}"

    @property
    def rgb(self) -> RGB:
        """The colour it is drawn in."""
        return self.unnamed if self.unnamed is not None else COLOURS[self.colour]

    @property
    def combo(self) -> tuple[Shape, Colour]:
        return (self.shape, self.colour)

    def visible(self, t: int) -> bool:
        """Whether the object is on screen at frame ``t``."""
        return self.t_in <= t < self.t_out

    def centres(self, ts: np.ndarray) -> np.ndarray:
        """Centres (F, 2) float64 (x, y) at frames ``ts`` (F,)."""
        stop = self.t_out - 1 if self.t_stop is None else self.t_stop
        dt = (np.minimum(np.asarray(ts), stop) - self.t_in).astype(np.float64)  # (F,)
        return np.stack([self.x + self.vx * dt, self.y + self.vy * dt], axis=1)  # (F, 2)

    def boxes(self, ts: np.ndarray) -> np.ndarray:
        """Top-left pixel (F, 2) int64 (x0, y0) of the size x size box at frames ``ts`` (F,).

        The one rounding rule (half up) that rendering, placement and tests all share.
        """
        return np.floor(self.centres(ts) - self.size / 2 + 0.5).astype(np.int64)


@dataclass(frozen=True)
class Sign:
    """A board with a short word or number (a needle), static, visible on [t_in, t_out)."""

    text: str
    """Uppercase letters or digits, 1-4 characters."""
    t_in: int
    t_out: int
    x: int
    """Left pixel of the board."""
    y: int
    """Top pixel of the board."""
    scale: int = 1
    """Font scale (5x7 glyphs times this)."""
    board: RGB = BOARD_COLOURS[0]
    """Board colour."""

    @property
    def is_number(self) -> bool:
        return self.text.isdigit()

    @property
    def answer(self) -> str:
        """The canonical answer: the word in lowercase, or the number without leading zeros."""
        return str(int(self.text)) if self.is_number else self.text.lower()

    @property
    def shape_hw(self) -> tuple[int, int]:
        """(height, width) of the board: text plus a 2-font-pixel margin (border included)."""
        return sign_size(self.text, self.scale)

    def visible(self, t: int) -> bool:
        return self.t_in <= t < self.t_out


def sign_size(text: str, scale: int) -> tuple[int, int]:
    """(height, width) of a sign board showing ``text`` at ``scale``."""
    h, w = text_size(text, scale)
    return h + 4 * scale, w + 4 * scale


@dataclass(frozen=True)
class Episode:
    """One synthetic video, fully specified. Hand-built episodes are validated too.

    Example:
        >>> bg = Backdrop("solid", ((120, 120, 120), (120, 120, 120)))
        >>> ep = Episode(8, 2.0, 32, 32, (Scene(0, bg),),
        ...              (WorldObject("star", "pink", 10, 2, 6, 16.0, 16.0),))
        >>> ep.duration, ep.objects[0].name
        (4.0, 'pink star')
    """

    num_frames: int
    fps: float
    height: int
    width: int
    scenes: tuple[Scene, ...]
    """Scenes in order; the first starts at frame 0."""
    objects: tuple[WorldObject, ...] = ()
    """Objects, drawn in this order."""
    signs: tuple[Sign, ...] = ()
    """Signs, drawn on top of objects."""
    camera: Camera | None = None
    """What the frames go through after drawing (`streamvxl.world.camera`); None: none."""
    offline: tuple[int, int] | None = None
    """Frames [a, b) the camera did not deliver (it was offline; the world went on): never
    the first or the last frame, and no object enters or leaves, no sign shows and no scene
    cuts on frames a - 1 .. b, so every other question's answer stays in what was delivered
    (`delivered`). None: every frame was delivered."""
    outages_drawn: bool = False
    """Whether the episode's world could take the camera offline (`WorldConfig.offline_prob`
    > 0): only then is it asked whether the camera went offline -- a world without outages
    would answer "no" to every such question and teach a model nothing else."""

    def __post_init__(self) -> None:
        f = self.num_frames
        if f < 1:
            raise ValueError(f"Episode.num_frames must be >= 1, got {f}")
        if not self.fps > 0:
            raise ValueError(f"Episode.fps must be > 0, got {self.fps}")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"Episode size must be >= 8x8, got {self.height}x{self.width}")
        if not self.scenes or self.scenes[0].start != 0:
            raise ValueError("Episode.scenes must be non-empty and start at frame 0")
        starts = [s.start for s in self.scenes]
        if any(b <= a for a, b in itertools.pairwise(starts)) or starts[-1] >= f:
            raise ValueError(f"Episode.scenes starts must increase and be < {f}, got {starts}")
        for s in self.scenes:
            if s.backdrop.pattern not in PATTERNS or s.backdrop.period < 2:
                raise ValueError(f"bad backdrop {s.backdrop}: pattern in {PATTERNS}, period >= 2")
        for o in self.objects:
            if o.shape not in SHAPES or o.colour not in COLOURS:
                raise ValueError(f"object {o.name!r}: shape in {SHAPES}, colour in "
                                 f"{tuple(COLOURS)}")
            if not 0 <= o.t_in < o.t_out <= f:
                raise ValueError(f"object {o.name!r}: need 0 <= t_in < t_out <= {f}, got "
                                 f"[{o.t_in}, {o.t_out})")
            if o.size < 3:
                raise ValueError(f"object {o.name!r}: size must be >= 3 px, got {o.size}")
            if o.unnamed is not None and not (len(o.unnamed) == 3 and all(
                    isinstance(v, int) and 0 <= v <= 255 for v in o.unnamed)
                    and is_unnamed_colour(o.unnamed)):
                raise ValueError(
                    f"object {o.name!r}: unnamed colour {o.unnamed!r} must be three ints in "
                    f"[0, 255], channel spread >= {UNNAMED_SPREAD} and >= {UNNAMED_DISTANCE:g} "
                    "from every named colour (draw one with unnamed_colour)")
            if o.t_stop is not None and not o.t_in <= o.t_stop < o.t_out:
                raise ValueError(f"object {o.name!r}: t_stop must lie in [t_in, t_out)")
        for g in self.signs:
            if not g.text or len(g.text) > 4 or not set(g.text) <= CHARSET:
                raise ValueError(f"sign text {g.text!r}: 1-4 characters from A-Z and 0-9")
            if not 0 <= g.t_in < g.t_out <= f:
                raise ValueError(f"sign {g.text!r}: need 0 <= t_in < t_out <= {f}")
            h, w = g.shape_hw
            if g.x < 0 or g.y < 0 or g.x + w > self.width or g.y + h > self.height:
                raise ValueError(f"sign {g.text!r} ({h}x{w} at x={g.x}, y={g.y}) must lie inside "
                                 f"the {self.height}x{self.width} frame")
        if self.offline is not None:
            a, b = self.offline
            if not 1 <= a < b <= f - 1:
                raise ValueError(f"Episode.offline must be frames [a, b) with 1 <= a < b <= {f - 1}"
                                 f" (the first and last frames delivered), got {self.offline}")
            hidden = [e for e in _events(self) if a - 1 <= e <= b]
            if hidden:
                raise ValueError(f"Episode.offline {self.offline}: objects enter or leave, signs "
                                 f"show or scenes cut at frames {sorted(set(hidden))}, next to or "
                                 "inside the outage; the delivered frames must show every event")

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.fps

    @property
    def cuts(self) -> tuple[int, ...]:
        """Frames where a new scene starts (scene cuts), excluding frame 0."""
        return tuple(s.start for s in self.scenes[1:])

    def scene_at(self, t: int) -> Scene:
        """The scene showing at frame ``t``."""
        current = self.scenes[0]
        for s in self.scenes:
            if s.start > t:
                break
            current = s
        return current

    def timestamps(self) -> np.ndarray:
        """Seconds of every frame, (F,) float64."""
        return np.arange(self.num_frames, dtype=np.float64) / self.fps

    def delivered(self) -> np.ndarray:
        """(F',) int64 the frames the camera delivered: all but those of ``offline``."""
        t = np.arange(self.num_frames, dtype=np.int64)
        if self.offline is None:
            return t
        a, b = self.offline
        return t[(t < a) | (t >= b)]


def _events(ep: Episode) -> list[int]:
    """Frames where something changes: an object's first frame and the frame after its last, a
    sign's first and last frames (and every frame between: a sign is a short needle), cuts."""
    out = [e for o in ep.objects for e in (o.t_in, o.t_out)]
    out += [t for g in ep.signs for t in range(g.t_in, g.t_out)]
    return out + list(ep.cuts)


@dataclass(frozen=True)
class WorldConfig:
    """How `sample_episode` draws random episodes. Sizes and speeds scale with the frame size.

    Example:
        >>> cfg = WorldConfig(num_frames=32, height=96, width=96, max_objects=5)
    """

    num_frames: int = 64
    """Frames per video."""
    fps: float = 2.0
    """Frames per second (sets the time answers)."""
    height: int = 64
    """Frame height in pixels."""
    width: int = 64
    """Frame width in pixels."""
    min_objects: int = 1
    """Fewest objects per video (fewer only if they cannot be placed)."""
    max_objects: int = 4
    """Most objects per video."""
    object_size: tuple[float, float] = (0.16, 0.25)
    """Object size range as a fraction of min(height, width)."""
    min_object_frames: int = 4
    """Shortest span an object is visible."""
    min_entry_gap: int = 2
    """Fewest frames between two objects' entries (keeps order questions answerable)."""
    edge_prob: float = 0.4
    """Chance that an object enters (and, separately, leaves) through a frame edge."""
    static_prob: float = 0.3
    """Chance that an object that pops in never moves."""
    stop_prob: float = 0.3
    """Chance that a moving object stops before it leaves."""
    max_speed: float = 0.06
    """Top speed as a fraction of min(height, width) per frame."""
    cut_prob: float = 0.3
    """Chance that a video has scene cuts at all."""
    max_cuts: int = 3
    """Most scene cuts per video."""
    min_scene_frames: int = 4
    """Shortest scene."""
    sign_prob: float = 0.3
    """Chance that a video has signs at all."""
    max_signs: int = 1
    """Most signs per video (signs never show at the same time)."""
    sign_frames: tuple[int, int] = (2, 6)
    """Range of frames a sign stays visible."""
    number_prob: float = 0.5
    """Chance that a sign shows a number (0-999) rather than a word."""
    sign_scale: int | None = None
    """Font scale of signs; None: max(1, min(height, width) // 64)."""
    eval_held_out_prob: float = 0.5
    """In ``split="eval"``, chance that an object takes a held-out (shape, colour) pair."""
    stay_prob: float | None = None
    """Chance that an object stays on screen to the last frame (None or 0: as drawn). Drawn
    freely, most objects have left by then, so "is the <object> still there?" answered "no" to
    78 % of a training run's questions and "what is on screen now?" "nothing" to 79 %, and a
    model trained on that learned the prior (docs/results.md, the camera runs); a training
    world raises it. None draws the episodes the recorded evaluations drew (and, like any field
    added later, is left out when `training.compare_models` pairs their questions)."""
    camera: CameraConfig | None = None
    """Draw a camera per episode from these ranges (light, blur, noise, H.264); None: perfect
    frames. A dict (from JSON) is read as `CameraConfig` fields."""
    offline_prob: float = 0.0
    """Chance that the camera goes offline for a stretch of the video (`Episode.offline`,
    placed where nothing happens; none when no such stretch exists). 0 draws every recorded
    episode and asks nothing about outages."""
    offline_frames: tuple[int, int] = (5, 8)
    """Range of frames an outage lasts; its shortest must make a gap the memory finds
    (`streamvxl.gaps`: longer than 4 frame intervals and 2 s)."""
    unnamed_prob: float = 0.0
    """Chance that an object is drawn in a colour no word names (`unnamed_colour`,
    `WorldObject.unnamed`); an episode with one names its objects by shape
    (`streamvxl.world.questions.shape_only`). Training a language model on shapes in many
    colours is how it learns a shape apart from the colours it was paired with. 0 draws every
    recorded episode (no draw)."""
    sizes: tuple[tuple[int, int], ...] | None = None
    """Frame sizes (height, width) to draw one of per episode, in place of ``height`` x
    ``width`` (cameras come in many resolutions and aspect ratios; object sizes, speeds and
    sign fonts scale with each); None: always ``height`` x ``width``, no draw (the recorded
    episodes). A multi-image sample draws one size for all its images."""
    rates: tuple[float, ...] | None = None
    """Frame rates (frames per second) to draw one of per episode, in place of ``fps``.
    Cameras deliver 1, 2 or 5 frames a second: drawn at one rate, a video's n-th frame is
    always the same second, and a model learns "when" from a frame's place in the memory
    rather than from its time stamp (`VisualConfig.frame_time`), then answers wrong for any
    other camera (docs/results.md, finding 25). None: always ``fps``, no draw (the recorded
    episodes)."""

    def __post_init__(self) -> None:
        if isinstance(self.camera, dict):
            object.__setattr__(self, "camera", CameraConfig(**{
                k: tuple(v) if isinstance(v, list) else v for k, v in self.camera.items()}))
        if self.sizes is not None:
            self._check_sizes()
        if self.rates is not None:
            self._check_rates()
        m = min(self.height, self.width)
        if self.num_frames < 1:
            raise ValueError(f"WorldConfig.num_frames must be >= 1, got {self.num_frames}")
        if not self.fps > 0:
            raise ValueError(f"WorldConfig.fps must be > 0, got {self.fps}")
        if m < 16:
            raise ValueError(f"WorldConfig height and width must be >= 16, got "
                             f"{self.height}x{self.width}")
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError("WorldConfig needs 0 <= min_objects <= max_objects")
        if self.max_objects > len(train_combos()):
            raise ValueError(f"WorldConfig.max_objects must be <= {len(train_combos())}")
        lo, hi = self.object_size
        if not 0 < lo <= hi <= 0.5 or round(lo * m) < 6:
            raise ValueError(f"WorldConfig.object_size must satisfy 0 < lo <= hi <= 0.5 with "
                             f"lo * {m} >= 6 px, got {self.object_size}")
        for name in ("min_object_frames", "min_entry_gap", "min_scene_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"WorldConfig.{name} must be >= 1")
        for name in ("edge_prob", "static_prob", "stop_prob", "cut_prob", "sign_prob",
                     "number_prob", "eval_held_out_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"WorldConfig.{name} must lie in [0, 1], got "
                                 f"{getattr(self, name)}")
        for name in ("offline_prob", "unnamed_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"WorldConfig.{name} must lie in [0, 1], got "
                                 f"{getattr(self, name)}")
        lo, hi = self.offline_frames
        threshold = gap_threshold([1 / self.fps] * GAP_MIN_INTERVALS)  # at this camera's rate
        if self.offline_prob > 0 and not (1 <= lo <= hi and (lo + 1) / self.fps > threshold):
            raise ValueError(
                f"WorldConfig.offline_frames {self.offline_frames}: the shortest outage must "
                f"leave more than {threshold:g} s between two delivered frames at "
                f"{self.fps:g} fps, or the memory does not find it (streamvxl.gaps)")
        if self.stay_prob is not None and not 0.0 <= self.stay_prob <= 1.0:
            raise ValueError(f"WorldConfig.stay_prob must lie in [0, 1] or be None, got "
                             f"{self.stay_prob}")
        if not self.max_speed > 0:
            raise ValueError("WorldConfig.max_speed must be > 0")
        if self.max_cuts < 0 or self.max_signs < 0:
            raise ValueError("WorldConfig.max_cuts and max_signs must be >= 0")
        if not 1 <= self.sign_frames[0] <= self.sign_frames[1]:
            raise ValueError(f"WorldConfig.sign_frames must be (lo, hi) with 1 <= lo <= hi, got "
                             f"{self.sign_frames}")
        if self.sign_scale is not None and self.sign_scale < 1:
            raise ValueError("WorldConfig.sign_scale must be >= 1 or None")
        h, w = sign_size("8888", self.font_scale)
        if self.sign_prob > 0 and self.max_signs > 0 and (h > self.height - 2
                                                          or w > self.width - 2):
            raise ValueError("WorldConfig: a 4-character sign does not fit the frame; lower "
                             "sign_scale or set sign_prob=0")

    def _check_sizes(self) -> None:
        try:
            sizes = tuple((h, w) for h, w in self.sizes)  # type: ignore[union-attr]
        except (TypeError, ValueError) as e:
            raise ValueError(f"WorldConfig.sizes must be (height, width) pairs, got "
                             f"{self.sizes!r}") from e
        if not all(isinstance(v, int) and not isinstance(v, bool) for s in sizes for v in s):
            raise ValueError(f"WorldConfig.sizes must be whole pixel counts, got {self.sizes!r}")
        if not sizes:
            raise ValueError("WorldConfig.sizes must name at least one (height, width) or be "
                             "None")
        object.__setattr__(self, "sizes", sizes)
        for h, w in sizes:
            try:
                dataclasses.replace(self, height=h, width=w, sizes=None)
            except ValueError as e:
                raise ValueError(f"WorldConfig.sizes: {h}x{w} does not suit this world: {e}"
                                 ) from e

    def _check_rates(self) -> None:
        try:
            rates = tuple(float(r) for r in self.rates)  # type: ignore[union-attr]
        except (TypeError, ValueError) as e:
            raise ValueError(f"WorldConfig.rates must be frames per second, got "
                             f"{self.rates!r}") from e
        if not rates:
            raise ValueError("WorldConfig.rates must name at least one rate or be None")
        object.__setattr__(self, "rates", rates)
        for r in rates:
            try:
                dataclasses.replace(self, fps=r, rates=None)
            except ValueError as e:
                raise ValueError(f"WorldConfig.rates: {r:g} fps does not suit this world: {e}"
                                 ) from e

    def drawn(self, rng: np.random.Generator) -> WorldConfig:
        """This config at one frame size drawn from ``sizes`` and one frame rate drawn from
        ``rates`` (no draw for either that is None).

        Example:
            >>> one = WorldConfig(sizes=((48, 48), (64, 112))).drawn(np.random.default_rng(0))
            >>> (one.height, one.width), one.sizes
            ((64, 112), None)
        """
        cfg = self
        if cfg.sizes is not None:
            h, w = cfg.sizes[int(rng.integers(len(cfg.sizes)))]
            cfg = dataclasses.replace(cfg, height=h, width=w, sizes=None)
        if cfg.rates is not None:
            cfg = dataclasses.replace(cfg, fps=cfg.rates[int(rng.integers(len(cfg.rates)))],
                                      rates=None)
        return cfg

    @property
    def font_scale(self) -> int:
        """The sign font scale in use."""
        return self.sign_scale or max(1, min(self.height, self.width) // 64)

    @property
    def size_range(self) -> tuple[int, int]:
        """Object size range in pixels."""
        m = min(self.height, self.width)
        lo = round(self.object_size[0] * m)
        return lo, max(lo, round(self.object_size[1] * m))


# ------------------------------------------------------------------------------------------
# Sampling


_PLACEMENT_TRIES = 30


def sample_episode(rng: np.random.Generator, config: WorldConfig | None = None,
                   split: Split = "train") -> Episode:
    """Draw a random episode. Deterministic given the generator's state.

    Args:
        rng: source of randomness (``np.random.default_rng(seed)``).
        config: world settings; None takes the defaults.
        split: "train" never draws a pair in `HELD_OUT_COMBOS`; "eval" draws one for each
            object with probability ``config.eval_held_out_prob``.

    Example:
        >>> ep = sample_episode(np.random.default_rng(0), WorldConfig(num_frames=16))
        >>> ep.num_frames
        16
    """
    cfg = (config or WorldConfig()).drawn(rng)
    _check_split(split)
    f = cfg.num_frames
    scenes = _sample_scenes(rng, cfg)

    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    min_frames = min(cfg.min_object_frames, f)
    entries = _spaced(rng, 0, f - min_frames, n, cfg.min_entry_gap)
    objects: list[WorldObject] = []
    tracks: list[_Track] = []
    for t_in in entries:
        stays = bool(cfg.stay_prob) and rng.random() < cfg.stay_prob  # no draw when off
        t_out = f if stays else t_in + int(rng.integers(min_frames, f - t_in + 1))
        combo = _sample_combo(rng, split, cfg, {o.combo for o in objects})
        unnamed = _sample_unnamed(rng, cfg)
        for _ in range(_PLACEMENT_TRIES):
            obj = dataclasses.replace(_sample_motion(rng, cfg, combo, t_in, t_out),
                                      unnamed=unnamed)
            track = _object_track(obj)
            if not any(_clash(track, other) for other in tracks):
                objects.append(obj)
                tracks.append(track)
                break
    signs = _sample_signs(rng, cfg, tracks, f)
    camera = sample_camera(rng, cfg.camera) if cfg.camera is not None else None
    episode = Episode(f, cfg.fps, cfg.height, cfg.width, scenes, tuple(objects), signs, camera)
    if not cfg.offline_prob:  # no draw: the episodes recorded before outages existed
        return episode
    outage = _sample_outage(rng, cfg, episode) if rng.random() < cfg.offline_prob else None
    return dataclasses.replace(episode, offline=outage, outages_drawn=True)


def _sample_outage(rng: np.random.Generator, cfg: WorldConfig, ep: Episode
                   ) -> tuple[int, int] | None:
    """Frames [a, b) to drop where nothing happens, after enough frames for the memory's gap
    rule to know the camera's rate (None: no such stretch)."""
    lo, hi = cfg.offline_frames
    length = int(rng.integers(lo, hi + 1))
    first = GAP_MIN_INTERVALS + 1  # frames 0 .. first - 1: the intervals the gap rule reads
    events = np.array(_events(ep), dtype=np.int64)
    starts = [a for a in range(first, ep.num_frames - length)  # b = a + length <= F - 1
              if not ((events >= a - 1) & (events <= a + length)).any()]
    if not starts:
        return None
    a = starts[int(rng.integers(len(starts)))]
    return a, a + length


def sample_still(rng: np.random.Generator, config: WorldConfig | None = None,
                 split: Split = "train", num_objects: int | None = None,
                 exclude: Collection[tuple[Shape, Colour]] = (),
                 sign: bool | None = None) -> Episode:
    """Draw a one-frame episode (an image): static objects, maybe a sign, one backdrop.

    Args:
        rng: source of randomness.
        config: world settings (size, object sizes, sign odds); its time fields are ignored.
        split: as in `sample_episode`.
        num_objects: objects to place (fewer if they do not fit); None draws from the config.
        exclude: (shape, colour) pairs not to draw.
        sign: force a sign (True) or none (False); None uses ``config.sign_prob``.
    """
    cfg = (config or WorldConfig()).drawn(rng)
    _check_split(split)
    backdrop = _sample_backdrop(rng, cfg, None)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1)) if num_objects is None \
        else num_objects
    objects: list[WorldObject] = []
    tracks: list[_Track] = []
    lo, hi = cfg.size_range
    for _ in range(n):
        combo = _sample_combo(rng, split, cfg, {o.combo for o in objects} | set(exclude))
        unnamed = _sample_unnamed(rng, cfg)
        for _ in range(_PLACEMENT_TRIES):
            size = int(rng.integers(lo, hi + 1))
            x, y = _inside(rng, cfg, size)
            obj = WorldObject(combo[0], combo[1], size, 0, 1, x, y, unnamed=unnamed)
            track = _object_track(obj)
            if not any(_clash(track, other) for other in tracks):
                objects.append(obj)
                tracks.append(track)
                break
    want_sign = rng.random() < cfg.sign_prob if sign is None else sign
    signs = _place_signs(rng, cfg, tracks, [(0, 1)]) if want_sign else ()
    camera = sample_camera(rng, cfg.camera) if cfg.camera is not None else None
    return Episode(1, cfg.fps, cfg.height, cfg.width, (Scene(0, backdrop),), tuple(objects),
                   signs, camera)


def _check_split(split: str) -> None:
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")


def _spaced(rng: np.random.Generator, lo: int, hi: int, k: int, gap: int) -> list[int]:
    """k sorted ints in [lo, hi], consecutive ones >= gap apart (fewer if they cannot fit)."""
    if hi < lo or k <= 0:
        return []
    k = min(k, (hi - lo) // gap + 1)
    room = hi - lo + 1 - (k - 1) * (gap - 1)  # choose k distinct of `room`, then spread out
    u = np.sort(rng.choice(room, size=k, replace=False))
    return [lo + int(v) + i * (gap - 1) for i, v in enumerate(u)]


def _sample_combo(rng: np.random.Generator, split: Split, cfg: WorldConfig,
                  used: set[tuple[Shape, Colour]]) -> tuple[Shape, Colour]:
    held = sorted(HELD_OUT_COMBOS - used)
    if split == "eval" and held and rng.random() < cfg.eval_held_out_prob:
        pool = held
    else:
        base = train_combos() if split == "train" else tuple(
            (s, c) for s in SHAPES for c in COLOURS)
        pool = [c for c in base if c not in used]
    return pool[int(rng.integers(len(pool)))]


def _sample_unnamed(rng: np.random.Generator, cfg: WorldConfig) -> RGB | None:
    """An `unnamed_colour` with chance ``cfg.unnamed_prob``; no draw when it is 0 (the
    recorded episodes)."""
    if cfg.unnamed_prob and rng.random() < cfg.unnamed_prob:
        return unnamed_colour(rng)
    return None


def _sample_backdrop(rng: np.random.Generator, cfg: WorldConfig,
                     previous: Backdrop | None) -> Backdrop:
    """A backdrop that differs from ``previous`` in pattern and first colour (a visible cut)."""
    while True:
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
        a, b = rng.choice(len(BACKDROP_COLOURS), size=2, replace=False)
        colours = (BACKDROP_COLOURS[int(a)], BACKDROP_COLOURS[int(b)])
        m = min(cfg.height, cfg.width)
        period = int(rng.integers(max(4, m // 8), max(5, m // 3) + 1))
        bd = Backdrop(pattern, colours, period)
        if previous is None or (bd.pattern != previous.pattern
                                and bd.colours[0] != previous.colours[0]):
            return bd


def _sample_scenes(rng: np.random.Generator, cfg: WorldConfig) -> tuple[Scene, ...]:
    f, m = cfg.num_frames, cfg.min_scene_frames
    k = int(rng.integers(1, cfg.max_cuts + 1)) if cfg.max_cuts and rng.random() < cfg.cut_prob \
        else 0
    cuts = _spaced(rng, m, f - m, k, m)
    scenes: list[Scene] = []
    previous = None
    for start in [0, *cuts]:
        previous = _sample_backdrop(rng, cfg, previous)
        scenes.append(Scene(start, previous))
    return tuple(scenes)


def _inside(rng: np.random.Generator, cfg: WorldConfig, size: int) -> tuple[float, float]:
    """A centre that keeps a size x size box fully inside the frame."""
    return (float(rng.uniform(size / 2, cfg.width - size / 2)),
            float(rng.uniform(size / 2, cfg.height - size / 2)))


def _on_edge(rng: np.random.Generator, cfg: WorldConfig, size: int,
             side: int) -> tuple[float, float]:
    """A centre on frame edge ``side`` (0 left, 1 right, 2 top, 3 bottom): half the box shows."""
    x, y = _inside(rng, cfg, size)
    return ((0.0, y), (float(cfg.width), y), (x, 0.0), (x, float(cfg.height)))[side]


def _sample_motion(rng: np.random.Generator, cfg: WorldConfig, combo: tuple[Shape, Colour],
                   t_in: int, t_out: int) -> WorldObject:
    """An object with a random path: pop or edge entry, static / moving / stopping, pop or edge
    exit. The centre stays within the frame rectangle, so part of it always shows."""
    lo, hi = cfg.size_range
    size = int(rng.integers(lo, hi + 1))
    vmax = cfg.max_speed * min(cfg.height, cfg.width)
    last = t_out - 1
    for _ in range(_PLACEMENT_TRIES):
        can_move = last > t_in
        enter = "edge" if can_move and rng.random() < cfg.edge_prob else "pop"
        leave = "edge" if can_move and rng.random() < cfg.edge_prob else "pop"
        side = int(rng.integers(4))
        start = _on_edge(rng, cfg, size, side) if enter == "edge" else _inside(rng, cfg, size)
        if leave == "edge":
            end, t_b = _on_edge(rng, cfg, size, (side + 1 + int(rng.integers(3))) % 4), last
        elif enter == "pop" and (not can_move or rng.random() < cfg.static_prob):
            end, t_b = start, t_in
        else:
            end = _inside(rng, cfg, size)
            t_b = int(rng.integers(t_in + 1, last + 1)) if rng.random() < cfg.stop_prob else last
        steps = max(t_b - t_in, 1)
        vx, vy = (end[0] - start[0]) / steps, (end[1] - start[1]) / steps
        if math.hypot(vx, vy) <= vmax:
            return WorldObject(combo[0], combo[1], size, t_in, t_out, start[0], start[1], vx, vy,
                               t_b, enter, leave)
        # too fast for this span: draw again
    x, y = _inside(rng, cfg, size)
    return WorldObject(combo[0], combo[1], size, t_in, t_out, x, y, t_stop=t_in)


@dataclass(frozen=True)
class _Track:
    """Where an entity's box is on each frame of its span: for overlap tests."""

    t_in: int
    t_out: int
    corners: np.ndarray  # (F, 2) top-left (x0, y0) for frames t_in .. t_out - 1
    h: int
    w: int


def _object_track(o: WorldObject) -> _Track:
    return _Track(o.t_in, o.t_out, o.boxes(np.arange(o.t_in, o.t_out)), o.size, o.size)


def _clash(a: _Track, b: _Track, margin: int = 1) -> bool:
    """Whether two boxes come within ``margin`` pixels on any frame both are visible."""
    lo, hi = max(a.t_in, b.t_in), min(a.t_out, b.t_out)
    if lo >= hi:
        return False
    pa = a.corners[lo - a.t_in: hi - a.t_in]  # (F, 2)
    pb = b.corners[lo - b.t_in: hi - b.t_in]  # (F, 2)
    apart_x = (pa[:, 0] + a.w + margin <= pb[:, 0]) | (pb[:, 0] + b.w + margin <= pa[:, 0])
    apart_y = (pa[:, 1] + a.h + margin <= pb[:, 1]) | (pb[:, 1] + b.h + margin <= pa[:, 1])
    return bool(np.any(~(apart_x | apart_y)))


def _sign_text(rng: np.random.Generator, cfg: WorldConfig, used: set[str]) -> str:
    while True:
        if rng.random() < cfg.number_prob:
            text = str(int(rng.integers(0, 1000)))
        else:
            text = SIGN_WORDS[int(rng.integers(len(SIGN_WORDS)))]
        if text not in used:
            return text


def _place_signs(rng: np.random.Generator, cfg: WorldConfig, tracks: Sequence[_Track],
                 spans: Sequence[tuple[int, int]]) -> tuple[Sign, ...]:
    """One sign per span, placed clear of every object (dropped if no place is found)."""
    signs: list[Sign] = []
    scale = cfg.font_scale
    for t_in, t_out in spans:
        text = _sign_text(rng, cfg, {g.text for g in signs})
        h, w = sign_size(text, scale)
        board = BOARD_COLOURS[int(rng.integers(len(BOARD_COLOURS)))]
        for _ in range(_PLACEMENT_TRIES):
            x = int(rng.integers(0, cfg.width - w + 1))
            y = int(rng.integers(0, cfg.height - h + 1))
            corners = np.tile(np.array([[x, y]], dtype=np.int64), (t_out - t_in, 1))
            track = _Track(t_in, t_out, corners, h, w)
            if not any(_clash(track, other) for other in tracks):
                signs.append(Sign(text, t_in, t_out, x, y, scale, board))
                break
    return tuple(signs)


def _sample_signs(rng: np.random.Generator, cfg: WorldConfig, tracks: Sequence[_Track],
                  f: int) -> tuple[Sign, ...]:
    if not cfg.max_signs or rng.random() >= cfg.sign_prob:
        return ()
    k = int(rng.integers(1, cfg.max_signs + 1))
    longest = min(cfg.sign_frames[1], f)
    starts = _spaced(rng, 0, f - longest, k, longest + 1)  # spans never overlap in time
    spans = []
    for t_in in starts:
        d = int(rng.integers(min(cfg.sign_frames[0], longest), longest + 1))
        spans.append((t_in, t_in + d))
    return _place_signs(rng, cfg, tracks, spans)
