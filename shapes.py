"""The embedded captioned shapes set: coloured circles, squares and triangles on black, drawn on
demand from (seed, stream, index), with captions from a small grammar and their parser.
A toy stand-in for the captioned images latent diffusion is trained on (no download).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

import numpy as np

from utils import ConfigError

SHAPES_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "white")
SHAPES_SHAPES = ("circle", "square", "triangle")
SHAPES_SIZES = ("small", "large")
SHAPES_POSITIONS = ("left", "right", "top", "bottom", "centre")
SHAPES_ATTRIBUTES = {  # attribute name -> its vocabulary, in the order of the label ids
    "colour": SHAPES_COLOURS,
    "shape": SHAPES_SHAPES,
    "size": SHAPES_SIZES,
    "position": SHAPES_POSITIONS,
}
SHAPES_RGB = {  # pure colours, no anti-aliasing: every object pixel has exactly this value
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
    "white": (255, 255, 255),
}
SHAPES_POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}
# Side of an object's square box in pixels at image_size 32 (scaled for other sizes); one of
# three is drawn per object, and the box centre is jittered by up to JITTER_PX each way.
SIZE_PIXELS = {"small": (7, 8, 9), "large": (13, 14, 15)}
JITTER_PX = 1
# Box centre of each position as a fraction of the image side: (row, column).
ANCHORS = {
    "left": (0.5, 0.25),
    "right": (0.5, 0.75),
    "top": (0.25, 0.5),
    "bottom": (0.75, 0.5),
    "centre": (0.5, 0.5),
}
GAP_PX = 1  # two objects' boxes are at least this many empty pixels apart
PROB_TWO_OBJECTS = 0.25
PROB_MENTION = {"size": 0.5, "position": 0.5}  # colour and shape are always in the caption
MIN_IMAGE_SIZE = 16
STREAMS = {"train": 0, "test": 1, "classifier_train": 2, "classifier_test": 3}
DRAWS = 128  # uniform draws kept per image; enough for the usual redraws
SEED = 20260  # the fixed seed of the embedded set (like the digits, one set for everyone)

# ---------------------------------------------------------------------------------------------
# Scenes: attributes and pixel boxes of one or two objects
# ---------------------------------------------------------------------------------------------


def check_holdout(holdout) -> frozenset[tuple[int, int]]:
    """`data.holdout` as a set of (colour id, shape id) pairs, or a one-line ConfigError.

    Args:
      holdout: pairs such as [('red', 'triangle')]; a pair may also be one string 'red triangle'.
    """
    pairs = set()
    for item in holdout or ():
        pair = item.split() if isinstance(item, str) else list(item)
        if (len(pair) != 2 or pair[0] not in SHAPES_COLOURS or pair[1] not in SHAPES_SHAPES):
            raise ConfigError(
                f"data.holdout: {item!r} is not a (colour, shape) pair; colours "
                f"{', '.join(SHAPES_COLOURS)}; shapes {', '.join(SHAPES_SHAPES)}"
            )
        pairs.add((SHAPES_COLOURS.index(pair[0]), SHAPES_SHAPES.index(pair[1])))
    if len(pairs) == len(SHAPES_COLOURS) * len(SHAPES_SHAPES):
        raise ConfigError("data.holdout: holds out every (colour, shape) pair; nothing to train")
    return frozenset(pairs)


def _box_pixels(image_size: int) -> dict[str, tuple[int, ...]]:
    scale = image_size / 32.0
    return {k: tuple(max(2, round(s * scale)) for s in v) for k, v in SIZE_PIXELS.items()}


class _Draws:
    """Uniform draws of one image, read in order: its row of the stream's [N, DRAWS] table,
    then (rarely, after many redraws) more from a generator seeded by the image's own key."""

    def __init__(self, row: np.ndarray, key: tuple[int, ...]):
        self._values, self._next, self._key = row.tolist(), 0, key

    def uniform(self) -> float:
        if self._next == len(self._values):
            extra = np.random.default_rng((*self._key, len(self._values)))
            self._values += extra.random(DRAWS, np.float32).tolist()
        self._next += 1
        return self._values[self._next - 1]

    def integer(self, n: int) -> int:
        k = int(self.uniform() * n)
        return k if k < n else n - 1


@functools.lru_cache(maxsize=64)
def _centred_starts(image_size: int, side: int) -> tuple[tuple[int, int], ...]:
    """Unjittered box origin (y0, x0) of a box of `side` at each position."""
    return tuple(tuple(math.floor(f * image_size - side / 2 + 0.5) for f in ANCHORS[p])
                 for p in SHAPES_POSITIONS)


def _draw_geometry(draws: _Draws, n: int, image_size: int):
    """Size ids, position ids and boxes (y0, x0, side) of n objects, drawn until the
    positions are distinct and the boxes at least GAP_PX apart."""
    sides = _box_pixels(image_size)
    jitter = max(1, round(JITTER_PX * image_size / 32.0))
    while True:
        size_ids, pos_ids, boxes = [], [], []
        for _ in range(n):
            size_ids.append(draws.integer(len(SHAPES_SIZES)))
            free = [p for p in range(len(SHAPES_POSITIONS)) if p not in pos_ids]
            pos_ids.append(free[draws.integer(len(free))])
            side = sides[SHAPES_SIZES[size_ids[-1]]]
            side = side[draws.integer(len(side))]
            origin = [
                min(max(start + draws.integer(2 * jitter + 1) - jitter, 0), image_size - side)
                for start in _centred_starts(image_size, side)[pos_ids[-1]]
            ]
            boxes.append((*origin, side))
        if n == 1 or _apart(*boxes):
            return size_ids, pos_ids, boxes


def _apart(a, b) -> bool:
    (ay, ax, ad), (by, bx, bd) = a, b
    return (
        ay + ad + GAP_PX <= by or by + bd + GAP_PX <= ay
        or ax + ad + GAP_PX <= bx or bx + bd + GAP_PX <= ax
    )


def _draw_scene(draws: _Draws, image_size: int, holdout: frozenset, num_objects) -> dict:
    """One random image's {'colour', 'shape', 'size', 'position': int32 [n],
    'box': int32 [n, 3] (y0, x0, side), 'caption': str}; holdout pairs are redrawn."""
    n = num_objects or (2 if draws.uniform() < PROB_TWO_OBJECTS else 1)
    colours, shapes = [], []
    for _ in range(n):
        while True:
            c, s = draws.integer(len(SHAPES_COLOURS)), draws.integer(len(SHAPES_SHAPES))
            if (c, s) not in holdout:
                break
        colours.append(c)
        shapes.append(s)
    size_ids, pos_ids, boxes = _draw_geometry(draws, n, image_size)
    as_array = lambda v: np.asarray(v, np.int32)
    scene = {"colour": as_array(colours), "shape": as_array(shapes), "size": as_array(size_ids),
             "position": as_array(pos_ids), "box": as_array(boxes).reshape(n, 3)}
    mention = {k: draws.uniform() < p for k, p in PROB_MENTION.items()}
    scene["caption"] = caption_of(scene, **mention)
    return scene


def caption_of(scene: dict, size: bool, position: bool) -> str:
    """The caption of a scene: 'a [size] colour shape [position]' per object, joined by 'and'."""
    phrases = []
    for k in range(len(scene["colour"])):
        words = ["a"]
        if size:
            words.append(SHAPES_SIZES[scene["size"][k]])
        words += [SHAPES_COLOURS[scene["colour"][k]], SHAPES_SHAPES[scene["shape"][k]]]
        if position:
            words.append(SHAPES_POSITION_PHRASES[SHAPES_POSITIONS[scene["position"][k]]])
        phrases.append(" ".join(words))
    return " and ".join(phrases)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def shape_mask(shape: str, side: int) -> np.ndarray:
    """bool [side, side]: the pixels of a circle, square or (upward) triangle filling the box.

    Pixel (i, j) is tested at its centre for the circle; a triangle row is as wide as the
    triangle at the row's lower edge, so the apex row is never empty and every shape spans the
    whole box.
    """
    centre = (np.arange(side) + 0.5) / side  # pixel centres in box units
    v, u = np.meshgrid(centre, centre, indexing="ij")
    if shape == "circle":
        mask = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    elif shape == "triangle":
        lower_edge = (np.arange(side)[:, None] + 1.0) / side
        mask = np.abs(u - 0.5) <= lower_edge / 2 + 1e-9
    else:
        mask = np.ones((side, side), bool)
    mask.flags.writeable = False
    return mask


def render(scene: dict, image_size: int) -> np.ndarray:
    """uint8 [image_size, image_size, 3]: the scene's objects in pure colours on black."""
    image = np.zeros((image_size, image_size, 3), np.uint8)
    for k in range(len(scene["colour"])):
        y0, x0, side = (int(v) for v in scene["box"][k])
        mask = shape_mask(SHAPES_SHAPES[scene["shape"][k]], side)
        rgb = np.asarray(SHAPES_RGB[SHAPES_COLOURS[scene["colour"][k]]], np.uint8)
        image[y0 : y0 + side, x0 : x0 + side][mask] = rgb
    return image


def _stream_key(stream, seed: int) -> tuple[int, int]:
    if isinstance(stream, str):
        if stream not in STREAMS:
            raise ConfigError(f"split: {stream!r} is not one of {', '.join(STREAMS)}")
        return (int(seed), STREAMS[stream])
    return (int(seed), int(stream))


@functools.lru_cache(maxsize=8)
def _scenes(key: tuple[int, int], num: int, image_size: int, holdout: frozenset, num_objects):
    table = np.random.default_rng(key).random((num, DRAWS), np.float32)  # row i: image i
    scenes = [_draw_scene(_Draws(table[i], (*key, i)), image_size, holdout, num_objects)
              for i in range(num)]
    return scene_arrays(scenes), tuple(s["caption"] for s in scenes)


def draw_scenes(stream, num: int, image_size: int = 32, holdout=(),
                num_objects: int | None = None, seed: int = SEED):
    """Attributes and captions of images 0..num-1 of a stream (cached; images are rendered
    on demand by `render_index`). Image i depends only on (seed, stream, i) and the options.

    Args:
      stream: 'train', 'test', 'classifier_train', 'classifier_test', or an int of your own.
      num: number of images.
      image_size: image side in pixels (>= 16).
      holdout: (colour, shape) name pairs never drawn (see `check_holdout`).
      num_objects: 1, 2, or None (two with probability PROB_TWO_OBJECTS).
      seed: the set's seed.

    Returns:
      (attributes, captions): the dict of `scene_arrays`, and a tuple of num strings.
    """
    if not (isinstance(image_size, int | np.integer) and image_size >= MIN_IMAGE_SIZE):
        raise ConfigError(f"data.image_size: shapes needs >= {MIN_IMAGE_SIZE}, got {image_size}")
    if num_objects not in (None, 1, 2):
        raise ConfigError(f"num_objects: must be 1, 2 or None, got {num_objects!r}")
    key = _stream_key(stream, seed)
    return _scenes(key, int(num), int(image_size), check_holdout(holdout), num_objects)


def render_index(attributes: dict, i: int, image_size: int) -> np.ndarray:
    """uint8 [S, S, 3] image of row i of `draw_scenes`' attributes."""
    return render(scene_of(attributes, i), image_size)


def generate(stream, num: int, image_size: int = 32, holdout=(),
             num_objects: int | None = None, seed: int = SEED):
    """All of `draw_scenes`, rendered: uint8 images [num, S, S, 3], attributes, captions."""
    attributes, captions = draw_scenes(stream, num, image_size, holdout, num_objects, seed)
    images = np.stack([render_index(attributes, i, image_size) for i in range(num)])
    return images, attributes, captions


def scene_arrays(scenes: Sequence[dict]) -> dict[str, np.ndarray]:
    """Attribute labels of scenes as arrays: 'colour', 'shape', 'size', 'position' int32 [N, 2]
    (-1 where there is no second object), 'num_objects' int32 [N], 'box' int32 [N, 2, 3]."""
    n = len(scenes)
    out = {k: np.full((n, 2), -1, np.int32) for k in SHAPES_ATTRIBUTES}
    out["box"] = np.full((n, 2, 3), -1, np.int32)
    out["num_objects"] = np.zeros(n, np.int32)
    for i, scene in enumerate(scenes):
        m = len(scene["colour"])
        out["num_objects"][i] = m
        for k in (*SHAPES_ATTRIBUTES, "box"):
            out[k][i, :m] = scene[k]
    for v in out.values():
        v.flags.writeable = False
    return out


def scene_of(attributes: dict, i: int) -> dict:
    """Scene dict of row i of `scene_arrays` output (the inverse of its packing)."""
    m = int(attributes["num_objects"][i])
    return {k: attributes[k][i, :m] for k in (*SHAPES_ATTRIBUTES, "box")}


# ---------------------------------------------------------------------------------------------
# Caption grammar
# ---------------------------------------------------------------------------------------------

_WORDS = {"size": SHAPES_SIZES, "colour": SHAPES_COLOURS, "shape": SHAPES_SHAPES}
_OBJECT = (
    r"an? (?:(?P<size>{size}) )?(?P<colour>{colour}) (?P<shape>{shape})"
    r"(?: (?P<position>{position}))?"
).format(
    **{k: "|".join(v) for k, v in _WORDS.items()},
    position="|".join(SHAPES_POSITION_PHRASES.values()),
)
_OBJECT_RE = re.compile(_OBJECT)
_CAPTION_RE = re.compile(rf"{_OBJECT}(?: and {_OBJECT.replace('?P<', '?P<b_')})?")
_PHRASE_TO_POSITION = {v: k for k, v in SHAPES_POSITION_PHRASES.items()}
GRAMMAR = (
    "'a [small|large] <colour> <shape> [on the left|on the right|at the top|at the bottom|"
    "in the centre]', two such joined by ' and '"
)


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace("center", "centre").split()).rstrip(".").strip()


def _lenient_object(phrase: str) -> dict:
    words = re.findall(r"[a-z]+", phrase)
    found = {k: next((w for w in words if w in vocab), None) for k, vocab in _WORDS.items()}
    position = next((p for ph, p in _PHRASE_TO_POSITION.items() if ph in phrase), None)
    if position is None:  # bare position words: 'left', 'top', ...
        position = next((w for w in words if w in SHAPES_POSITIONS), None)
    return {**found, "position": position}


def parse_shapes_caption(text: str, strict: bool = False) -> list[dict]:
    """The objects a caption asks for: [{'colour', 'shape', 'size', 'position'}, ...].

    Each value is a vocabulary word (`SHAPES_COLOURS`, ...; positions as `SHAPES_POSITIONS`) or
    None where the caption leaves it out. Text in the grammar ("a small red circle on the left",
    "a red circle and a blue square") parses exactly. Other text (a free prompt) is read
    leniently unless `strict`: split at 'and', each part's first colour, shape and size word and
    its position phrase are taken, and parts naming none are dropped.

    Args:
      text: a caption or prompt.
      strict: raise for text outside the grammar instead of reading it leniently.

    Returns:
      One dict per object, in caption order.

    Raises:
      ConfigError: (strict only) the text is outside the grammar.
    """
    norm = _normalise(text)
    match = _CAPTION_RE.fullmatch(norm)
    if match:
        groups = match.groupdict()
        objects = [{k: groups[k] for k in SHAPES_ATTRIBUTES}]
        if groups["b_colour"]:
            objects.append({k: groups["b_" + k] for k in SHAPES_ATTRIBUTES})
        for obj in objects:
            obj["position"] = _PHRASE_TO_POSITION.get(obj["position"])
        return objects
    if strict:
        raise ConfigError(f"caption {text!r} is outside the shapes grammar: {GRAMMAR}")
    objects = [_lenient_object(part) for part in re.split(r"\band\b", norm)]
    return [obj for obj in objects if any(v is not None for v in obj.values())]
