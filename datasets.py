"""Datasets: embedded 2-D toy sets (generated from a seed, no download), embedded and on-disk
image sets (digits, captioned shapes, tfds, captioned image folders), iterators, scalers."""

from __future__ import annotations

import functools
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

import analytic
import shapes
from shapes import (  # noqa: F401  (the public vocabulary and parser of the shapes set)
    SHAPES_ATTRIBUTES,
    SHAPES_COLOURS,
    SHAPES_POSITION_PHRASES,
    SHAPES_POSITIONS,
    SHAPES_SHAPES,
    SHAPES_SIZES,
    parse_shapes_caption,
)
from utils import ConfigError, choose, require

# ---------------------------------------------------------------------------------------------
# Embedded 2-D toy data
# ---------------------------------------------------------------------------------------------


def _checkerboard(rng, n):
    k1, k2, k3 = jax.random.split(rng, 3)
    x1 = jax.random.uniform(k1, (n,)) * 4 - 2
    x2 = jax.random.uniform(k2, (n,)) - 2.0 * jax.random.randint(k3, (n,), 0, 2)
    x2 = x2 + jnp.floor(x1) % 2
    return jnp.stack([x1, x2], axis=1) * 2


def _swissroll(rng, n):
    k1, k2 = jax.random.split(rng)
    t = 1.5 * jnp.pi * (1 + 2 * jax.random.uniform(k1, (n,)))
    x = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1) / 5.0
    return x + 0.1 * jax.random.normal(k2, (n, 2))


def _moons(rng, n):
    k1, k2, k3 = jax.random.split(rng, 3)
    theta = jnp.pi * jax.random.uniform(k1, (n,))
    upper = jax.random.bernoulli(k2, 0.5, (n,))
    x = jnp.where(upper, jnp.cos(theta), 1 - jnp.cos(theta))
    y = jnp.where(upper, jnp.sin(theta), 0.5 - jnp.sin(theta))
    pts = jnp.stack([x - 0.5, y - 0.25], axis=1) * 2.0
    return pts + 0.1 * jax.random.normal(k3, (n, 2))


def eight_gaussians() -> analytic.GaussianMixture:
    """Eight equal Gaussians on a circle of radius 2 (std 0.25): an exact mixture."""
    angles = np.arange(8) * np.pi / 4
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return analytic.GaussianMixture(np.ones(8), means, 0.25 * np.ones(8))


TOY = {
    "checkerboard": _checkerboard,
    "swissroll": _swissroll,
    "moons": _moons,
    "eight_gaussians": lambda rng, n: eight_gaussians().sample(rng, n),
    "gmm": lambda rng, n: analytic.toy_gmm().sample(rng, n),
}


def toy_mixture(name: str) -> analytic.GaussianMixture | None:
    """The exact mixture behind a toy set, where there is one ('gmm', 'eight_gaussians')."""
    return {"gmm": analytic.toy_gmm, "eight_gaussians": eight_gaussians}.get(name, lambda: None)()


def in_checkerboard(x) -> float:
    """Fraction of points `x` [n, 2] inside the squares of the 'checkerboard' set.

    The set is uniform on the eight 2 x 2 squares of [-4, 4]^2 whose cell indices
    (floor(x1 / 2), floor(x2 / 2)) have an even sum; its own samples score 1.

    Args:
      x: [n, 2] points in data space.

    Returns:
      the fraction in [0, 1] as a Python float.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ConfigError(f"in_checkerboard: need points of shape [n, 2], n >= 1, got {x.shape}")
    cells = np.floor(x / 2.0)
    inside = np.all(np.abs(x) <= 4.0, axis=1) & (cells.sum(axis=1) % 2 == 0)
    return float(np.mean(inside))


def sample_toy(name: str, rng, n: int) -> jnp.ndarray:
    """n points of the embedded 2-D dataset `name`: [n, 2] float32.

    Deterministic given `rng`; traceable under jit for a static `n`.
    """
    choose("data.dataset", name, TOY)
    return TOY[name](rng, n).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# Image data: embedded digits, tfds array_record sources, image folders; grain iterators
# ---------------------------------------------------------------------------------------------

DIGITS_NUM_TEST = 297  # the last 297 of scikit-learn's 1,797 digits form the test split
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPES_NUM_EXAMPLES = {"train": 20000, "test": 2000}  # drawn from separate streams
METADATA_FILE = "metadata.jsonl"  # captions of an image folder: {"file_name", "text"} rows
TFDS_CENTRE_CROP = {"cifar10": None, "svhn_cropped": None, "celeb_a": 140}  # square crop first
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_UNREADABLE = (OSError, SyntaxError, ValueError)  # what PIL raises for a broken file


class ImageSource(Sequence):
    """One split of an image dataset with random access, read on demand.

    `source[i]` is `(image, label)`: image uint8 [H, W, C] in 0..255 with H = W = image_size;
    label an int, -1 where the dataset has no labels. Feed it to `train_iterator` or
    `eval_iterator`.

    Attributes:
      name: the dataset name (`data.dataset`).
      image_shape: (image_size, image_size, num_channels).
      num_classes: number of label classes; 0 for unlabelled data.
      num_skipped: image files left out because they could not be read (image folders).
      captions: list of `length` strings, caption i of image i; None for uncaptioned data.
      attributes: for 'shapes', the labels of what each image shows (see `SHAPES_ATTRIBUTES`):
        'colour', 'shape', 'size', 'position' int32 [N, 2] (-1: no second object),
        'num_objects' int32 [N], 'box' int32 [N, 2, 3] (y0, x0, side); else None.
    """

    def __init__(
        self,
        name: str,
        length: int,
        read: Callable[[int], tuple[np.ndarray, int]],
        image_shape: tuple[int, int, int],
        num_classes: int,
        num_skipped: int = 0,
        captions: Sequence[str] | None = None,
        attributes: dict[str, np.ndarray] | None = None,
    ):
        if captions is not None and len(captions) != length:
            raise ValueError(f"{len(captions)} captions for {length} images")
        self.name = name
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.num_skipped = num_skipped
        self.captions = None if captions is None else list(captions)
        self.attributes = attributes
        self._length = length
        self._read = read

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        index = int(index)
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} is out of range for {self._length} images")
        return self._read(index % self._length)

    def __repr__(self) -> str:
        return f"ImageSource({self.name!r}, len={self._length}, image_shape={self.image_shape})"


def _centre_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _fit_image(image, image_size: int, num_channels: int, crop: int | None = None) -> np.ndarray:
    """Bring one image to uint8 [image_size, image_size, num_channels].

    Centre-crops a `crop` x `crop` square first when given (CelebA: 140, as the SDE paper), then
    resizes the shorter side to `image_size` (bilinear; PIL antialiases when shrinking) and
    centre-crops the square. Grey and RGB are converted to match `num_channels`.

    Args:
      image: a PIL image, or a uint8 array [H, W] or [H, W, C].
      image_size: output height and width.
      num_channels: 1 (grey) or 3 (RGB).
      crop: side of the centre square cropped before resizing, or None.

    Returns:
      uint8 array [image_size, image_size, num_channels].
    """
    if isinstance(image, np.ndarray):
        if crop is None and image.shape == (image_size, image_size, num_channels):
            return image
        grey = image.ndim == 3 and image.shape[-1] == 1
        image = Image.fromarray(image[..., 0] if grey else image)
    img = image.convert("L" if num_channels == 1 else "RGB")
    if crop is not None:
        img = _centre_crop(img, min(crop, *img.size))
    if img.size != (image_size, image_size):
        w, h = img.size
        scale = image_size / min(w, h)
        size = (max(image_size, round(w * scale)), max(image_size, round(h * scale)))
        img = _centre_crop(img.resize(size, Image.Resampling.BILINEAR), image_size)
    x = np.asarray(img, dtype=np.uint8)
    return x[..., None] if x.ndim == 2 else x


@functools.lru_cache(maxsize=4)
def _digits_arrays(image_size: int, num_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: uint8 [N, image_size, image_size, num_channels] and int32 labels [N]."""
    from sklearn.datasets import load_digits  # slow import, needed only here

    bunch = load_digits()  # images [N, 8, 8] with values 0..16
    resized = [
        np.asarray(Image.fromarray(x).resize((image_size, image_size), Image.Resampling.BILINEAR))
        for x in bunch.images.astype(np.float32) * (255.0 / 16.0)
    ]
    images = np.clip(np.rint(np.stack(resized)), 0, 255).astype(np.uint8)[..., None]
    images = np.repeat(images, num_channels, axis=-1)
    labels = bunch.target.astype(np.int32)
    images.flags.writeable = labels.flags.writeable = False  # shared through the cache
    return images, labels


def _digits_source(split, image_size, num_channels, data_dir) -> ImageSource:
    del data_dir  # embedded in scikit-learn
    choose("split", split, ("train", "test"))
    images, labels = _digits_arrays(image_size, num_channels)
    part = slice(None, -DIGITS_NUM_TEST) if split == "train" else slice(-DIGITS_NUM_TEST, None)
    images, labels = images[part], labels[part]
    read = lambda i: (images[i], int(labels[i]))
    return ImageSource("digits", len(images), read, images.shape[1:], num_classes=10)


def _digits_captioned_source(split, image_size, num_channels, data_dir) -> ImageSource:
    """The digits with captions 'a handwritten seven'."""
    source = _digits_source(split, image_size, num_channels, data_dir)
    read = source._read
    labels = [read(i)[1] for i in range(len(source))]
    captions = [f"a handwritten {DIGIT_WORDS[y]}" for y in labels]
    return ImageSource("digits_captioned", len(source), read, source.image_shape,
                       num_classes=10, captions=captions)


def _shapes_source(split, image_size, num_channels, data_dir, holdout=()) -> ImageSource:
    """The embedded captioned shapes (shapes.py): 20,000 train / 2,000 test images, drawn on
    demand; `holdout` (colour, shape) pairs are redrawn in the train split only."""
    del data_dir  # generated
    choose("split", split, SHAPES_NUM_EXAMPLES)
    require(num_channels == 3, "data.num_channels", f"shapes are RGB: use 3, got {num_channels}")
    shapes.check_holdout(holdout)  # a bad pair is an error in either split
    pairs = holdout if split == "train" else ()
    attributes, captions = shapes.draw_scenes(split, SHAPES_NUM_EXAMPLES[split], image_size,
                                              pairs)
    read = lambda i: (shapes.render_index(attributes, i, image_size), -1)
    return ImageSource("shapes", SHAPES_NUM_EXAMPLES[split], read, (image_size, image_size, 3),
                       num_classes=0, captions=captions, attributes=attributes)


def _tfds_prepare_hint(name: str, data_dir: str) -> str:
    return (
        f"prepare it once with TensorFlow installed (pip install tensorflow-cpu): "
        f"tfds build {name} --data_dir={data_dir} --file_format=array_record"
    )


def _tfds_source(name, split, image_size, num_channels, data_dir) -> ImageSource:
    import tensorflow_datasets as tfds  # slow import, needed only for tfds datasets

    data_dir = os.path.expanduser(
        data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    )
    require(
        os.path.isdir(data_dir),
        "data.data_dir",
        f"{data_dir} does not exist; {_tfds_prepare_hint(name, data_dir)}",
    )
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except (KeyError, NotImplementedError, FileNotFoundError) as e:
        raise ConfigError(
            f"data.dataset: {name!r} is not prepared as array_record under data.data_dir="
            f"{data_dir}; {_tfds_prepare_hint(name, data_dir)}"
        ) from e
    except ValueError as e:  # e.g. an unknown split name
        raise ConfigError(f"split {split!r} of {name}: {str(e).splitlines()[0]}") from e
    features = source.dataset_info.features
    num_classes = features["label"].num_classes if "label" in features else 0
    crop = TFDS_CENTRE_CROP[name]

    def read(i):
        example = source[i]
        label = int(example["label"]) if num_classes else -1
        return _fit_image(example["image"], image_size, num_channels, crop), label

    return ImageSource(name, len(source), read, (image_size, image_size, num_channels), num_classes)


def _scan_images(root: str) -> tuple[list[str], list[str]]:
    """PNG/JPEG files under `root`, recursively and sorted: (readable headers, unreadable)."""
    good, bad = [], []
    for dirpath, _, filenames in os.walk(root, followlinks=True):
        for fname in filenames:
            if not fname.lower().endswith(IMAGE_SUFFIXES):
                continue
            path = os.path.join(dirpath, fname)
            try:
                with Image.open(path):  # parses the header only; cheap on big folders
                    good.append(path)
            except _UNREADABLE:
                bad.append(path)
    return sorted(good), sorted(bad)


def _read_image_file(files: list[str], image_size: int, num_channels: int, substitute: bool,
                     index: int):
    """Decode files[index]; a file that fails to decode is replaced by the next one that does
    (if `substitute`; a captioned folder stops instead, as its caption would no longer fit)."""
    for k in range(len(files) if substitute else 1):
        path = files[(index + k) % len(files)]
        try:
            with Image.open(path) as img:
                return _fit_image(img, image_size, num_channels), -1
        except _UNREADABLE as e:
            if not substitute:
                raise ConfigError(f"data.data_dir: cannot decode captioned image {path} ({e}); "
                                  "fix or remove it") from None
            warnings.warn(
                f"image_folder: cannot decode {path} ({e}); using the next image", stacklevel=2
            )
    raise ConfigError(f"data.data_dir: none of the {len(files)} image files can be decoded")


def _metadata_rows(meta_path: str) -> list[tuple[str, str]]:
    """(image path, caption) of each row of a metadata.jsonl; one-line ConfigError on a bad row.
    File names are relative to the metadata file's folder, as fine-tuning datasets write them."""
    folder, rows = os.path.dirname(meta_path), []
    with open(meta_path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{meta_path}: row {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: not a JSON object ({e.msg})") from None
            name = row.get("file_name") if isinstance(row, dict) else None
            require(isinstance(name, str) and name, where, 'needs a "file_name" string')
            path = os.path.normpath(os.path.join(folder, name))
            require(os.path.isfile(path), where, f"names {name!r}, which is not a file ({path})")
            text = row.get("text")
            require(isinstance(text, str) and text.strip(), where,
                    f'has no caption: "text" must be a non-empty string, got {text!r}')
            rows.append((path, text.strip()))
    require(rows, "data.data_dir", f"{meta_path} has no rows")
    return rows


def _captioned_files(data_dir: str, root: str, files: list[str], bad: list[str]):
    """(files, captions, num_skipped) of a folder: from metadata.jsonl in `root` (else in
    `data_dir`, keeping the rows under `root`), else from a .txt beside each image, else
    (files, None, len(bad)) for an uncaptioned folder."""
    metas = [os.path.join(d, METADATA_FILE) for d in dict.fromkeys((root, data_dir))]
    meta_path = next((m for m in metas if os.path.isfile(m)), None)
    if meta_path is not None:
        top = os.path.abspath(root)
        rows = [r for r in _metadata_rows(meta_path)
                if os.path.commonpath([os.path.abspath(r[0]), top]) == top]
        unreadable = {os.path.normpath(p) for p in bad}
        kept = [r for r in rows if r[0] not in unreadable]
        require(kept, "data.data_dir", f"{meta_path} lists no readable image under {root}")
        unlisted = {os.path.normpath(p) for p in files} - {path for path, _ in kept}
        if unlisted:
            warnings.warn(f"image_folder: {len(unlisted)} image file(s) under {root} are not in "
                          f"{meta_path} and are left out, e.g. {min(unlisted)}", stacklevel=4)
        return [p for p, _ in kept], [t for _, t in kept], len(rows) - len(kept)
    texts = {p: os.path.splitext(p)[0] + ".txt" for p in files}
    have = [p for p in files if os.path.isfile(texts[p])]
    if not have:
        return files, None, len(bad)
    captions = []
    for path in files:
        require(path in have, "data.data_dir",
                f"{path} has no caption file {texts[path]} (other images under {root} have one)")
        with open(texts[path], encoding="utf-8") as f:
            text = " ".join(f.read().split())
        require(text, "data.data_dir", f"{texts[path]}: empty caption")
        captions.append(text)
    return files, captions, len(bad)


def _folder_source(split, image_size, num_channels, data_dir) -> ImageSource:
    require(
        data_dir is not None,
        "data.data_dir",
        "dataset 'image_folder' needs data.data_dir=<a directory of PNG/JPEG images>",
    )
    data_dir = os.path.expanduser(data_dir)
    require(os.path.isdir(data_dir), "data.data_dir", f"{data_dir} is not a directory")
    root = os.path.join(data_dir, split)  # an optional per-split subfolder
    root = root if os.path.isdir(root) else data_dir
    files, bad = _scan_images(root)
    require(files or bad, "data.data_dir", f"no PNG/JPEG images found under {root}")
    if bad:
        warnings.warn(
            f"image_folder: skipped {len(bad)} unreadable image file(s) under {root}, "
            f"e.g. {bad[0]}",
            stacklevel=3,
        )
    require(files, "data.data_dir", f"none of the {len(bad)} image files under {root} can be read")
    files, captions, num_skipped = _captioned_files(data_dir, root, files, bad)
    read = functools.partial(_read_image_file, files, image_size, num_channels, captions is None)
    return ImageSource(
        "image_folder",
        len(files),
        read,
        (image_size, image_size, num_channels),
        num_classes=0,
        num_skipped=num_skipped,
        captions=captions,
    )


IMAGE_DATASETS = {
    "digits": _digits_source,
    "digits_captioned": _digits_captioned_source,
    "shapes": _shapes_source,
    "cifar10": functools.partial(_tfds_source, "cifar10"),
    "svhn_cropped": functools.partial(_tfds_source, "svhn_cropped"),
    "celeb_a": functools.partial(_tfds_source, "celeb_a"),
    "image_folder": _folder_source,
}


def get_dataset(
    dataset: str,
    split: str,
    image_size: int,
    num_channels: int,
    data_dir: str | None = None,
    holdout: Sequence = (),
) -> ImageSource:
    """One split of an image dataset; nothing is downloaded.

    Args:
      dataset: 'digits' (scikit-learn's 8x8 digits, embedded), 'digits_captioned' (the same,
        captioned 'a handwritten seven'), 'shapes' (captioned coloured shapes, generated),
        'cifar10', 'svhn_cropped', 'celeb_a' (tfds datasets prepared once as array_record;
        CelebA is centre-cropped to 140 first) or 'image_folder' (PNG/JPEG files found
        recursively under `data_dir`, captioned by a metadata.jsonl of {"file_name", "text"}
        rows or by a .txt file beside each image where there are such).
      split: 'train' or 'test' for digits and shapes; any tfds split ('train', 'test[:10%]');
        for image folders, the subfolder `data_dir/split` if it exists, else all of `data_dir`.
      image_size: output height and width; images are resized (shorter side) and centre-cropped
        (shapes are drawn at this size, >= 16).
      num_channels: 1 (grey) or 3 (RGB); images are converted to match (shapes: 3 only).
      data_dir: the tfds data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets) or
        the image folder; unused for digits and shapes.
      holdout: shapes only: (colour, shape) pairs such as [('red', 'triangle')] that the train
        split never shows (`data.holdout`); the test split keeps them.

    Returns:
      An ImageSource: `len(source)` examples, `source[i] -> (uint8 [H, W, C], int label)`, and
      `source.captions` (or None) and `source.attributes` (shapes; else None).

    Raises:
      ConfigError: an unknown name, a bad size, a missing or unprepared dataset, an empty folder,
        a bad caption file or row, a holdout for a dataset other than shapes.
    """
    choose("data.dataset", dataset, IMAGE_DATASETS)
    require(
        isinstance(image_size, int | np.integer) and image_size > 0,
        "data.image_size",
        f"must be a positive integer, got {image_size!r}",
    )
    require(num_channels in (1, 3), "data.num_channels", f"must be 1 or 3, got {num_channels!r}")
    holdout = tuple(holdout or ())
    require(not holdout or dataset == "shapes", "data.holdout",
            f"(colour, shape) pairs apply to data.dataset='shapes' only, not {dataset!r}")
    extra = {"holdout": holdout} if holdout else {}
    return IMAGE_DATASETS[dataset](split, int(image_size), int(num_channels), data_dir, **extra)


def _rows_per_process(global_batch_size, process_index, process_count, key) -> int:
    require(
        global_batch_size > 0 and global_batch_size % process_count == 0,
        key,
        f"{global_batch_size} is not a positive multiple of the process count {process_count}",
    )
    require(
        0 <= process_index < process_count,
        "process_index",
        f"{process_index} is not in [0, {process_count})",
    )
    return global_batch_size // process_count


def _to_example(item, rng: np.random.Generator, random_flip: bool, uniform_dequantization: bool):
    """(uint8 image, label) -> {'image': float32 [H, W, C] in [0, 1], 'label': int32}."""
    image, label = item
    if random_flip and rng.random() < 0.5:
        image = image[:, ::-1]  # horizontal flip
    x = image.astype(np.float32)
    if uniform_dequantization:
        # u ~ U[0, 1 - 2^-15): the float32 sum x + u then never rounds up to x + 1, so the
        # result stays in [0, 1) and floor(256 * result) recovers the pixel value
        u = rng.random(x.shape, dtype=np.float32) * np.float32(1.0 - 2.0**-15)
        x = (x + u) / 256.0
    else:
        x = x / 255.0
    return {"image": x, "label": np.int32(label)}


class _Indexed(Sequence):
    """source[i] paired with i, so batches can carry the source index of each example."""

    def __init__(self, source: ImageSource):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int):
        return self._source[index], index


def _indexed_example(item, rng, random_flip: bool, uniform_dequantization: bool):
    example, index = item
    out = _to_example(example, rng, random_flip, uniform_dequantization)
    out["index"] = np.int32(index)
    return out


def _read_options(num_threads: int):
    import grain

    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads)


def train_iterator(
    source: ImageSource,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    *,
    process_index: int = 0,
    process_count: int = 1,
    random_flip: bool = True,
    uniform_dequantization: bool = False,
    num_threads: int = 8,
) -> Iterator[dict[str, np.ndarray]]:
    """Infinite, shuffled training batches for this process, deterministic given (seed, step).

    Built on grain's MapDataset: examples are shuffled per epoch (each epoch reshuffled from
    `seed` and the epoch number), augmented with a per-example generator derived from `seed` and
    the example's position in the stream, and cut into global batches. Global batch `s` holds
    stream positions [s * G, (s + 1) * G) and this process gets rows [p * L, (p + 1) * L) of it,
    L = G / process_count. Since batch `s` is a pure function of (seed, s), a run resumed at
    `start_step` sees exactly the batches of an uninterrupted one; no iterator state is saved.

    Args:
      source: from `get_dataset`.
      global_batch_size: G, summed over processes; a multiple of `process_count`.
      seed: data seed.
      start_step: index of the first batch returned (the step a resumed run starts from).
      process_index, process_count: this host and the number of hosts (jax.process_index(),
        jax.process_count()).
      random_flip: flip each image horizontally with probability 1/2.
      uniform_dequantization: return (x * 255 + u) / 256 with u ~ U[0, 1) instead of x.
      num_threads: reader threads (batches are prefetched two per thread).

    Returns:
      An iterator of dicts: 'image' float32 [L, H, W, C] in [0, 1], 'label' int32 [L], 'index'
      int32 [L] (each example's index in `source`, e.g. to look up `source.captions`).
    """
    import grain  # slow import, needed only for image pipelines

    rows = _rows_per_process(global_batch_size, process_index, process_count, "training.batch_size")
    shuffle_seed, augment_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    augment = functools.partial(
        _indexed_example, random_flip=random_flip, uniform_dequantization=uniform_dequantization
    )
    stream = grain.MapDataset.source(_Indexed(source)).shuffle(seed=shuffle_seed).repeat()
    stream = stream.random_map(augment, seed=augment_seed)
    local = stream.batch(rows, drop_remainder=True)  # local batch k = s * P + p
    local = local.slice(slice(start_step * process_count + process_index, None, process_count))
    return iter(local.to_iter_dataset(_read_options(num_threads)))


def eval_iterator(
    source: ImageSource,
    global_batch_size: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
    uniform_dequantization: bool = False,
    seed: int = 0,
    num_threads: int = 8,
) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over the whole split, padded to whole batches, no flips.

    Global batch `b` holds examples [b * G, (b + 1) * G) and this process gets rows
    [p * L, (p + 1) * L) of it. Every process yields ceil(len(source) / G) batches of the same
    shape (so jitted and collective code sees no ragged tail); rows past the end of the split
    are zero images with label -1 and mask False. Keep `image[mask]`.

    Args:
      source: from `get_dataset`.
      global_batch_size: G, summed over processes; a multiple of `process_count`.
      process_index, process_count: this host and the number of hosts.
      uniform_dequantization: as in `train_iterator` (noise drawn from `seed` and the index).
      seed: seed of the dequantisation noise.
      num_threads: reader threads.

    Returns:
      An iterator of dicts: 'image' float32 [L, H, W, C] in [0, 1], 'label' int32 [L],
      'mask' bool [L] (True for real examples), 'index' int32 [L] (the example's index in
      `source`; -1 for padding).
    """
    import grain  # slow import, needed only for image pipelines

    rows = _rows_per_process(global_batch_size, process_index, process_count, "eval.batch_size")
    n = len(source)
    padding = (np.zeros(source.image_shape, np.uint8), -1)

    def example(index, rng):
        item = source[index] if index < n else padding
        out = _to_example(item, rng, False, uniform_dequantization)
        out["mask"] = np.bool_(index < n)
        out["index"] = np.int32(index if index < n else -1)
        return out

    num_batches = math.ceil(n / global_batch_size)
    indices = grain.MapDataset.range(num_batches * global_batch_size)
    local = indices.random_map(example, seed=seed).batch(rows)
    local = local.slice(slice(process_index, None, process_count))
    return iter(local.to_iter_dataset(_read_options(num_threads)))


def get_data_scaler(centered: bool) -> Callable:
    """Map data from [0, 1] to the model's space: [-1, 1] if `centered`, else unchanged.

    Args:
      centered: `data.centered`.

    Returns:
      A function x -> scaled x (numpy or jax arrays, any shape).
    """
    return (lambda x: 2.0 * x - 1.0) if centered else (lambda x: x)


def get_data_inverse_scaler(centered: bool) -> Callable:
    """Inverse of `get_data_scaler`: the model's space back to [0, 1].

    Args:
      centered: `data.centered`.

    Returns:
      A function x -> unscaled x.
    """
    return (lambda x: (x + 1.0) / 2.0) if centered else (lambda x: x)
