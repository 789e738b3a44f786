"""Captioned image data (shapes.py, datasets.py) and the shapes attribute classifier
(feature_net.py): every caption is checked against the pixels it describes, measured here from
the image alone (pure colour, centroid, extent, fill fraction of the box)."""

import itertools
import json
import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import datasets
import evaluation
import feature_net
import shapes
from utils import ConfigError

RGB = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "magenta": (255, 0, 255), "cyan": (0, 255, 255), "white": (255, 255, 255),
}
POSITIONS = {"left": (0.5, 0.25), "right": (0.5, 0.75), "top": (0.25, 0.5),
             "bottom": (0.75, 0.5), "centre": (0.5, 0.5)}  # (row, column) / image side
PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
           "bottom": "at the bottom", "centre": "in the centre"}


def _one_line_error(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def _measure(image):
    """What each object in a uint8 [S, S, 3] image is, from its pixels alone."""
    size = image.shape[0]
    labels, count = ndimage.label(image.any(axis=-1))
    found = []
    for k in range(1, count + 1):
        rows, cols = np.nonzero(labels == k)
        colours = {tuple(int(c) for c in image[r, c]) for r, c in zip(rows, cols, strict=True)}
        assert len(colours) == 1, f"object {k} is not one flat colour: {colours}"
        value = colours.pop()
        colour = next((n for n, rgb in RGB.items() if rgb == value), None)
        assert colour is not None, "not a pure colour"
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        fill = len(rows) / (height * width)
        shape = "square" if fill == 1.0 else "circle" if 0.72 < fill < 0.88 else (
            "triangle" if 0.52 < fill < 0.67 else None)
        centroid = np.array([rows.mean() + 0.5, cols.mean() + 0.5]) / size
        distance = {p: np.linalg.norm(centroid - a) for p, a in POSITIONS.items()}
        position = min(distance, key=distance.get)
        found.append({
            "colour": colour,
            "shape": shape,
            "size": "small" if max(height, width) <= 10 * size / 32 else (
                "large" if min(height, width) >= 12 * size / 32 else None),
            "position": position if distance[position] * 32 < 4.5 else None,
            "square_box": height == width,
        })
    return found


def _agrees(asked, seen):
    return seen["square_box"] and all(v is None or seen[k] == v for k, v in asked.items())


def _check_caption_against_pixels(image, caption):
    asked = datasets.parse_shapes_caption(caption, strict=True)
    seen = _measure(image)
    assert len(seen) == len(asked), (caption, seen)
    assert any(
        all(_agrees(a, s) for a, s in zip(asked, perm, strict=True))
        for perm in itertools.permutations(seen)
    ), (caption, seen)
    return asked, seen


@pytest.fixture(scope="module")
def train():
    return datasets.get_dataset("shapes", "train", 32, 3)


@pytest.fixture(scope="module")
def test_split():
    return datasets.get_dataset("shapes", "test", 32, 3)


# --- the generator draws what each caption says ------------------------------------------------


def test_sizes_vocabulary_and_attributes(train, test_split):
    assert (len(train), len(test_split)) == (20000, 2000)
    assert train.image_shape == (32, 32, 3) and train.num_classes == 0
    assert datasets.SHAPES_COLOURS == tuple(RGB) and datasets.SHAPES_SHAPES == (
        "circle", "square", "triangle")
    assert datasets.SHAPES_SIZES == ("small", "large")
    assert datasets.SHAPES_POSITIONS == tuple(POSITIONS)
    assert len(train.captions) == 20000
    image, label = train[3]
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3) and label == -1
    a = train.attributes
    n = a["num_objects"]
    assert set(np.unique(n)) == {1, 2} and 0.15 < np.mean(n == 2) < 0.35
    for key, vocab in datasets.SHAPES_ATTRIBUTES.items():
        assert a[key].shape == (20000, 2)
        assert (a[key][n == 1, 1] == -1).all() and (a[key][:, 0] >= 0).all()
        assert set(np.unique(a[key][:, 0])) == set(range(len(vocab)))
    two = n == 2
    assert (a["position"][two, 0] != a["position"][two, 1]).all()


@pytest.mark.parametrize("split", ["train", "test"])
def test_pixels_show_what_the_caption_says(split, train, test_split):
    source = {"train": train, "test": test_split}[split]
    for i in range(250):
        _check_caption_against_pixels(source[i][0], source.captions[i])


def test_background_is_black_and_labels_match_pixels(train):
    for i in range(200):
        image = train[i][0]
        seen = _measure(image)
        truth = [
            {k: vocab[train.attributes[k][i, j]] for k, vocab in datasets.SHAPES_ATTRIBUTES.items()}
            for j in range(train.attributes["num_objects"][i])
        ]
        assert any(all(_agrees(t, s) for t, s in zip(truth, p, strict=True))
                   for p in itertools.permutations(seen))
        assert len(np.unique(image.reshape(-1, 3), axis=0)) == 1 + len({s["colour"] for s in seen})


def test_left_out_attributes_vary(train):
    a, captions = train.attributes, train.captions
    one = np.flatnonzero(a["num_objects"] == 1)
    no_position = [i for i in one if datasets.parse_shapes_caption(captions[i])[0]["position"]
                   is None]
    counts = np.bincount(a["position"][no_position, 0], minlength=5) / len(no_position)
    assert (counts > 0.12).all(), counts
    no_size = [i for i in one if datasets.parse_shapes_caption(captions[i])[0]["size"] is None]
    assert 0.4 < np.mean(a["size"][no_size, 0]) < 0.6
    mentions = [datasets.parse_shapes_caption(c)[0] for c in captions[:2000]]
    assert 0.35 < np.mean([m["position"] is not None for m in mentions]) < 0.65


def test_other_image_sizes_scale_the_drawing():
    images, _, captions = shapes.generate("test", 40, image_size=64)
    assert images.shape == (40, 64, 64, 3)
    for image, caption in zip(images, captions, strict=True):
        _check_caption_against_pixels(image, caption)
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("shapes", "train", 8, 3)
    _one_line_error(excinfo, "data.image_size")
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("shapes", "train", 32, 1)
    _one_line_error(excinfo, "data.num_channels")
    with pytest.raises(ConfigError, match="split"):
        datasets.get_dataset("shapes", "validation", 32, 3)


# --- determinism and splits --------------------------------------------------------------------


def test_deterministic_from_seed_and_index(train, test_split):
    shapes._scenes.cache_clear()
    again = datasets.get_dataset("shapes", "train", 32, 3)
    assert again.captions == train.captions
    for i in (0, 17, 19999):
        np.testing.assert_array_equal(again[i][0], train[i][0])
    prefix, captions = shapes.draw_scenes("train", 30)  # image i does not depend on the count
    assert list(captions) == train.captions[:30]
    np.testing.assert_array_equal(prefix["colour"], train.attributes["colour"][:30])
    assert train.captions[:50] != test_split.captions[:50]
    same = sum(np.array_equal(train[i][0], test_split[i][0]) for i in range(50))
    assert same < 5


def test_iterators_yield_the_source_index(train):
    batch = next(datasets.train_iterator(train, 8, seed=0, random_flip=False, num_threads=1))
    assert batch["index"].dtype == np.int32 and batch["index"].shape == (8,)
    for x, i in zip(batch["image"], batch["index"], strict=True):
        np.testing.assert_array_equal(x, train[i][0] / np.float32(255.0))
    small = datasets.ImageSource("five", 5, train._read, train.image_shape, 0,
                                 captions=train.captions[:5])
    batches = list(datasets.eval_iterator(small, 4, num_threads=1))
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]),
                                  [0, 1, 2, 3, 4, -1, -1, -1])


# --- holdout -----------------------------------------------------------------------------------


def test_holdout_pairs_never_in_train_but_in_test(train):
    holdout = [("red", "triangle"), "blue circle"]
    held = datasets.get_dataset("shapes", "train", 32, 3, holdout=holdout)
    test = datasets.get_dataset("shapes", "test", 32, 3, holdout=holdout)
    pairs = [(0, 2), (2, 0)]  # (red, triangle), (blue, circle) as ids
    for source, present in ((held, False), (test, True), (train, True)):
        a = source.attributes
        hits = sum(int(((a["colour"] == c) & (a["shape"] == s)).sum()) for c, s in pairs)
        assert (hits > 0) == present
    for i in range(150):  # the pixels agree: no red triangle, no blue circle
        seen = _measure(held[i][0])
        assert not any((s["colour"], s["shape"]) in holdout for s in seen)
        assert all(f"{c} {s}" not in held.captions[i] for c, s in holdout[:1])
    a, h = train.attributes, held.attributes
    clean = ~np.any([(a["colour"] == c) & (a["shape"] == s) for c, s in pairs], axis=(0, 2))
    assert clean.mean() > 0.8
    for i in np.flatnonzero(clean)[:50]:  # images without a held-out pair are unchanged
        np.testing.assert_array_equal(held[i][0], train[i][0])
        assert held.captions[i] == train.captions[i]
    assert not np.array_equal(h["colour"][~clean], a["colour"][~clean])


@pytest.mark.parametrize("holdout", [[("red", "hexagon")], [("crimson", "circle")], ["red"],
                                     [(c, s) for c in RGB for s in ("circle", "square",
                                                                    "triangle")]])
def test_bad_holdout_is_one_line(holdout):
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("shapes", "test", 32, 3, holdout=holdout)
    _one_line_error(excinfo, "data.holdout")


def test_holdout_only_for_shapes():
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("digits", "train", 16, 1, holdout=[("red", "circle")])
    _one_line_error(excinfo, "data.holdout", "shapes")


# --- caption grammar ---------------------------------------------------------------------------


def _phrase(colour, shape, size, position):
    words = ["a"] + ([size] if size else []) + [colour, shape]
    return " ".join(words + ([PHRASES[position]] if position else []))


def test_parse_round_trips_every_template():
    singles = list(itertools.product(RGB, ("circle", "square", "triangle"),
                                     (None, "small", "large"), (None, *POSITIONS)))
    assert len(singles) == 7 * 3 * 3 * 6
    for colour, shape, size, position in singles:
        want = {"colour": colour, "shape": shape, "size": size, "position": position}
        assert datasets.parse_shapes_caption(_phrase(*want.values()), strict=True) == [want]
    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = (singles[k] for k in rng.integers(0, len(singles), 2))
        text = _phrase(*a) + " and " + _phrase(*b)
        got = datasets.parse_shapes_caption(text, strict=True)
        keys = ("colour", "shape", "size", "position")
        assert got == [dict(zip(keys, a, strict=True)), dict(zip(keys, b, strict=True))]


def test_training_captions_parse_to_their_labels(train):
    for i in range(500):
        got = datasets.parse_shapes_caption(train.captions[i], strict=True)
        for j, obj in enumerate(got):
            for key, vocab in datasets.SHAPES_ATTRIBUTES.items():
                if obj[key] is not None:
                    assert obj[key] == vocab[train.attributes[key][i, j]]


def test_free_prompts_are_read_leniently_and_rejected_when_strict():
    assert datasets.parse_shapes_caption("  A Red Circle at the center. ") == [
        {"colour": "red", "shape": "circle", "size": None, "position": "centre"}]
    assert datasets.parse_shapes_caption("a crimson disc on the left") == [
        {"colour": None, "shape": None, "size": None, "position": "left"}]
    assert datasets.parse_shapes_caption("big blue square and tiny yellow triangle top") == [
        {"colour": "blue", "shape": "square", "size": None, "position": None},
        {"colour": "yellow", "shape": "triangle", "size": None, "position": "top"}]
    assert datasets.parse_shapes_caption("a photo of a cat") == []
    for text in ("a crimson disc on the left", "a red circle and a blue square and a cat",
                 "red circle", "a circle red"):
        with pytest.raises(ConfigError) as excinfo:
            datasets.parse_shapes_caption(text, strict=True)
        _one_line_error(excinfo, repr(text), "grammar")


# --- captioned digits and image folders --------------------------------------------------------


def test_digits_captioned():
    source = datasets.get_dataset("digits_captioned", "train", 16, 1)
    plain = datasets.get_dataset("digits", "train", 16, 1)
    assert len(source) == len(plain) == len(source.captions) == 1500
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for i in range(0, 1500, 37):
        image, label = source[i]
        np.testing.assert_array_equal(image, plain[i][0])
        assert source.captions[i] == f"a handwritten {words[label]}"
    assert plain.captions is None and plain.attributes is None


def _write_images(root, names):
    for k, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12, 3), 20 * k, np.uint8)).save(path)


def test_image_folder_with_metadata_jsonl(tmp_path):
    _write_images(tmp_path, ["b.png", "sub/a.png", "c.png"])
    rows = [{"file_name": "sub/a.png", "text": "a grey square "},
            {"file_name": "b.png", "text": "a black square"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n\n")
    with pytest.warns(UserWarning, match="1 image file.*not in"):
        source = datasets.get_dataset("image_folder", "train", 8, 3, data_dir=str(tmp_path))
    assert len(source) == 2 and source.captions == ["a grey square", "a black square"]
    assert source[0][0][0, 0, 0] == 20 and source[1][0][0, 0, 0] == 0
    batch = next(datasets.train_iterator(source, 2, seed=0, random_flip=False, num_threads=1))
    for x, i in zip(batch["image"], batch["index"], strict=True):
        np.testing.assert_array_equal(x, source[i][0] / np.float32(255.0))


def test_metadata_beside_split_folders_keeps_the_split(tmp_path):
    _write_images(tmp_path, ["train/a.png", "test/b.png"])
    rows = [{"file_name": "test/b.png", "text": "b"}, {"file_name": "train/a.png", "text": "a"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(map(json.dumps, rows)))
    for split, caption in (("train", "a"), ("test", "b")):
        source = datasets.get_dataset("image_folder", split, 8, 3, data_dir=str(tmp_path))
        assert source.captions == [caption]


def test_image_folder_with_txt_files(tmp_path):
    _write_images(tmp_path, ["x.png", "deep/y.jpg"])
    (tmp_path / "x.txt").write_text("first\ncaption\n")
    (tmp_path / "deep" / "y.txt").write_text("second")
    source = datasets.get_dataset("image_folder", "train", 8, 3, data_dir=str(tmp_path))
    assert source.captions == ["second", "first caption"]  # files sorted: deep/y.jpg, x.png
    _write_images(tmp_path, ["z.png"])
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("image_folder", "train", 8, 3, data_dir=str(tmp_path))
    _one_line_error(excinfo, "data.data_dir", str(tmp_path / "z.png"), "z.txt")
    (tmp_path / "z.txt").write_text("  \n")
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("image_folder", "train", 8, 3, data_dir=str(tmp_path))
    _one_line_error(excinfo, str(tmp_path / "z.txt"), "empty caption")


@pytest.mark.parametrize("row, words", [
    ({"file_name": "missing.png", "text": "a cat"}, ["missing.png", "not a file"]),
    ({"file_name": "a.png"}, ["no caption"]),
    ({"file_name": "a.png", "text": "   "}, ["no caption"]),
    ({"text": "a cat"}, ["file_name"]),
    ("not json", ["not a JSON object"]),
])
def test_bad_metadata_rows_are_one_line(tmp_path, row, words):
    _write_images(tmp_path, ["a.png"])
    good = json.dumps({"file_name": "a.png", "text": "fine"})
    bad = row if isinstance(row, str) else json.dumps(row)
    (tmp_path / "metadata.jsonl").write_text(good + "\n" + bad + "\n")
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("image_folder", "train", 8, 3, data_dir=str(tmp_path))
    _one_line_error(excinfo, str(tmp_path / "metadata.jsonl"), "row 2", *words)


def test_uncaptioned_folder_keeps_captions_none(tmp_path):
    _write_images(tmp_path, ["a.png"])
    (tmp_path / "notes.txt").write_text("not a caption: no notes.png beside it")
    assert datasets.get_dataset("image_folder", "x", 8, 3, data_dir=str(tmp_path)).captions is None


# --- the attribute classifier ------------------------------------------------------------------


@pytest.fixture(scope="module")
def net():
    return feature_net.load_shapes_classifier()


@pytest.fixture(scope="module")
def fresh():
    """Single-object images of a stream nobody trained on, with the generator's labels (which
    the pixel tests above tie to the images)."""
    images, attributes, _ = shapes.generate(11, 600, num_objects=1)
    return images / np.float32(255.0), {k: attributes[k][:, 0] for k in feature_net.SHAPES_HEADS}


def _accuracy(net, images, labels):
    got = feature_net.shapes_attributes(net, images)
    assert all(v.shape == (len(images),) and v.dtype == np.int32 for v in got.values())
    return {k: float(np.mean(got[k] == labels[k])) for k in labels}


def test_classifier_reads_fresh_clean_images(net, fresh):
    acc = _accuracy(net, *fresh)
    print("shapes classifier accuracy, clean:", acc)
    assert min(acc.values()) >= 0.98, acc


def test_classifier_is_robust_to_blur_and_noise(net, fresh):
    images, labels = fresh
    blurred = ndimage.gaussian_filter(images, sigma=(0, 0.6, 0.6, 0), mode="constant")
    noisy = images + 0.04 * np.random.default_rng(1).standard_normal(images.shape)
    for name, x in (("blur", blurred), ("noise", noisy)):
        acc = _accuracy(net, np.clip(x, 0, 1).astype(np.float32), labels)
        print(f"shapes classifier accuracy, {name}:", acc)
        assert min(acc.values()) >= 0.9, (name, acc)


def test_classifier_file_features_and_input_checks(net, fresh, tmp_path):
    assert os.path.getsize(feature_net.SHAPES_DEFAULT_PATH) < 1 << 20
    assert net.metadata["command"] == feature_net.SHAPES_TRAIN_COMMAND
    assert net.identity.startswith("shapes-cnn-v1:")
    assert dict(net.metric_names)["frechet_distance"] == "fd_shapes"
    images, labels = fresh
    feats, joint = evaluation.network_features(net, images[:300])
    assert feats.shape == (300, 64) and joint.shape == (300, 210)
    np.testing.assert_allclose(np.exp(joint).sum(axis=1), 1.0, rtol=1e-4)
    flat = (((labels["colour"] * 3 + labels["shape"]) * 2 + labels["size"]) * 5
            + labels["position"])[:300]
    assert np.mean(np.argmax(joint, axis=1) == flat) >= 0.95
    other, _ = evaluation.network_features(net, images[300:])
    blank = np.zeros_like(images[:300])
    blank[:, 12:20, 12:20] = 0.5  # grey squares: no colour of the set
    fd_real = evaluation.fid(feats, other)
    fd_bad = evaluation.fid(feats, evaluation.network_features(net, blank)[0])
    assert fd_real < 0.1 * fd_bad, (fd_real, fd_bad)
    with pytest.raises(ConfigError, match=r"\[B, 32, 32, 3\]") as excinfo:
        feature_net.shapes_attributes(net, np.zeros((2, 16, 16, 1), np.float32))
    _one_line_error(excinfo, "RGB shapes")
    with pytest.raises(ConfigError) as excinfo:
        feature_net.load_shapes_classifier(tmp_path / "none.npz")
    _one_line_error(excinfo, "none.npz", feature_net.SHAPES_TRAIN_COMMAND)
