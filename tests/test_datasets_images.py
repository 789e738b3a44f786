"""Image data: embedded digits, tfds sources (mocked, no TensorFlow), image folders, iterators."""

import itertools
import os
import tempfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import datasets
from utils import ConfigError


def _take(iterator, n):
    return list(itertools.islice(iterator, n))


def _id_source(n, size=4):
    """Example i: label i, image[h, w] = i % 200 + w (left-right asymmetric, so flips show)."""

    def read(i):
        row = (i % 200 + np.arange(size)).astype(np.uint8)
        return np.broadcast_to(row[None, :, None], (size, size, 1)), i

    return datasets.ImageSource("ids", n, read, (size, size, 1), num_classes=0)


def _one_line_error(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


# --- embedded digits ---------------------------------------------------------------------------


def test_digits_shapes_range_labels_and_split():
    train = datasets.get_dataset("digits", "train", 16, 1)
    test = datasets.get_dataset("digits", "test", 16, 1)
    assert (len(train), len(test)) == (1500, 297)
    image, label = test[0]
    assert image.shape == (16, 16, 1) and image.dtype == np.uint8
    assert train.image_shape == (16, 16, 1) and train.num_classes == 10
    images = np.stack([test[i][0] for i in range(len(test))])
    assert images.min() == 0 and images.max() >= 250
    for split in (train, test):
        labels = {split[i][1] for i in range(len(split))}
        assert labels == set(range(10))
    everything, _ = datasets._digits_arrays(16, 1)
    np.testing.assert_array_equal(test[0][0], everything[1500])
    rgb = datasets.get_dataset("digits", "test", 16, 3)[5][0]
    assert rgb.shape == (16, 16, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("imagenet", "train", 32, 3)
    _one_line_error(excinfo, "data.dataset", "digits", "cifar10", "celeb_a", "image_folder")
    with pytest.raises(ConfigError, match="data.num_channels"):
        datasets.get_dataset("digits", "train", 16, 2)


# --- tfds data sources, mocked (no TensorFlow, no files) ---------------------------------------


@pytest.fixture(autouse=True)
def _tfds_scratch(monkeypatch, tmp_path_factory):
    # tfds makes an empty temp dir whenever a builder has no prepared data; keep it in pytest's.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tfds_scratch")))


@pytest.fixture
def mock_tfds():
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


@pytest.mark.parametrize(
    "name, size, num_classes",
    [("cifar10", 32, 10), ("svhn_cropped", 32, 10), ("celeb_a", 64, 0)],
)
def test_tfds_sources(mock_tfds, tmp_path, name, size, num_classes):
    source = datasets.get_dataset(name, "train", size, 3, data_dir=str(tmp_path))
    image, label = source[7]
    assert len(source) == 40 and source.num_classes == num_classes
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert (0 <= label < 10) if num_classes else label == -1


def test_tfds_train_iterator_deterministic_resumable_sharded(mock_tfds, tmp_path):
    source = datasets.get_dataset("cifar10", "train", 32, 3, data_dir=str(tmp_path))
    run = lambda **kw: _take(datasets.train_iterator(source, 8, seed=3, **kw), 6)
    full = run()
    batch = full[0]
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    for a, b in zip(full, run(), strict=True):  # same (seed, step) -> same batch
        np.testing.assert_array_equal(a["image"], b["image"])
    other = _take(datasets.train_iterator(source, 8, seed=4), 1)[0]
    assert not np.array_equal(other["image"], batch["image"])
    resumed = _take(datasets.train_iterator(source, 8, seed=3, start_step=4), 2)
    for a, b in zip(full[4:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    halves = [run(process_index=p, process_count=2) for p in (0, 1)]
    for step, whole in enumerate(full):
        assert halves[0][step]["image"].shape == (4, 32, 32, 3)
        joined = np.concatenate([halves[0][step]["image"], halves[1][step]["image"]])
        np.testing.assert_array_equal(joined, whole["image"])


def test_tfds_missing_data_dir_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("cifar10", "train", 32, 3, data_dir=str(tmp_path / "nope"))
    _one_line_error(excinfo, "data.data_dir", "tfds build cifar10", "array_record")


def test_tfds_unprepared_dataset_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as excinfo:  # real tfds, empty directory, no download
        datasets.get_dataset("cifar10", "train", 32, 3, data_dir=str(tmp_path))
    _one_line_error(excinfo, "data.dataset", str(tmp_path), "tfds build cifar10")
    assert os.listdir(tmp_path) == []


# --- iterators on an index-labelled source --------------------------------------------------


def test_epochs_are_permutations_reshuffled_each_epoch():
    source = _id_source(12)
    labels = [b["label"] for b in _take(datasets.train_iterator(source, 4, seed=0), 9)]
    epochs = np.concatenate(labels).reshape(3, 12)
    for epoch in epochs:
        assert sorted(epoch) == list(range(12))
    assert not np.array_equal(epochs[0], epochs[1])


def test_uniform_dequantization_range():
    source = _id_source(16)
    batches = _take(
        datasets.train_iterator(source, 8, seed=1, random_flip=False, uniform_dequantization=True),
        4,
    )
    for batch in batches:
        x = batch["image"]
        assert 0.0 <= x.min() and x.max() < 1.0
        originals = np.stack([source[i][0] for i in batch["label"]])
        np.testing.assert_array_equal(np.floor(x * 256.0), originals)
        assert np.std(x * 256.0 - originals) > 0.1  # U[0, 1) noise, std ~ 0.29

    class LargestDraw:  # np.random.Generator.random at its largest float32 value
        def random(self, shape=None, dtype=np.float64):
            return np.full(shape, 1.0 - 2.0**-24, dtype)

    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    top = datasets._to_example((pixels, 0), LargestDraw(), False, True)["image"]
    assert top.max() < 1.0
    np.testing.assert_array_equal(np.floor(top * 256.0), pixels)
    plain = _take(datasets.train_iterator(source, 8, seed=1, random_flip=False), 1)[0]
    np.testing.assert_allclose(plain["image"] * 255.0, np.round(plain["image"] * 255.0), atol=1e-4)


def _flips(batches, source):
    flipped = []
    for batch in batches:
        for x, i in zip(batch["image"], batch["label"], strict=True):
            original = source[i][0] / np.float32(255.0)
            is_flipped = np.array_equal(x, original[:, ::-1])
            assert is_flipped or np.array_equal(x, original)
            flipped.append(is_flipped)
    return flipped


def test_random_flip_deterministic():
    source = _id_source(32)
    flips = lambda seed, **kw: _flips(
        _take(datasets.train_iterator(source, 16, seed, **kw), 4), source
    )
    first = flips(7)
    assert first == flips(7)
    assert 0 < sum(first) < len(first)
    assert first != flips(8)
    assert not any(flips(7, random_flip=False))


def test_eval_iterator_covers_split_once_padded_and_sharded():
    source = _id_source(21)
    batches = list(datasets.eval_iterator(source, 8))
    assert len(batches) == 3
    assert [int(b["mask"].sum()) for b in batches] == [8, 8, 5]
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(labels, np.arange(21))
    assert all(b["image"].shape == (8, 4, 4, 1) for b in batches)
    shards = [
        list(datasets.eval_iterator(source, 8, process_index=p, process_count=2)) for p in (0, 1)
    ]
    assert [len(s) for s in shards] == [3, 3]
    for b, first, second in zip(batches, *shards, strict=True):
        np.testing.assert_array_equal(np.concatenate([first["label"], second["label"]]), b["label"])


def test_batch_size_must_divide_over_processes():
    with pytest.raises(ConfigError, match="training.batch_size"):
        datasets.train_iterator(_id_source(8), 6, seed=0, process_count=4)


# --- image folders ---------------------------------------------------------------------------


def _write_folder(root):
    rng = np.random.default_rng(0)
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    half = np.zeros((32, 64, 3), np.uint8)
    half[:, 32:] = 255  # left half black, right half white
    Image.fromarray(half).save(root / "a" / "wide.png")
    grey = rng.integers(0, 256, (50, 20), dtype=np.uint8)
    Image.fromarray(grey).save(root / "a" / "b" / "tall.jpg", quality=90)
    rgba = rng.integers(0, 256, (24, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(root / "c" / "alpha.PNG")
    (root / "c" / "broken.png").write_bytes(b"this is not an image")
    (root / "notes.txt").write_text("ignored")


def test_image_folder_recursive_with_a_corrupt_file(tmp_path):
    _write_folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        source = datasets.get_dataset("image_folder", "train", 16, 3, data_dir=str(tmp_path))
    assert len(source) == 3 and source.num_skipped == 1
    for i in range(3):
        image, label = source[i]
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8 and label == -1
    wide = source[1][0]  # sorted: a/b/tall.jpg, a/wide.png, c/alpha.PNG
    assert wide[:, 0].max() < 30 and wide[:, -1].min() > 225  # centre crop keeps both halves
    with pytest.warns(UserWarning):
        grey = datasets.get_dataset("image_folder", "train", 8, 1, data_dir=str(tmp_path))
    assert grey[0][0].shape == (8, 8, 1)
    batch = next(datasets.train_iterator(source, 2, seed=0))
    assert batch["image"].shape == (2, 16, 16, 3)


def test_image_folder_split_subfolder_and_truncated_file(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / split / "ok.png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "train" / "cut.png")
    full = (tmp_path / "train" / "cut.png").read_bytes()
    (tmp_path / "train" / "cut.png").write_bytes(full[:200])  # valid header, data cut off
    source = datasets.get_dataset("image_folder", "test", 8, 1, data_dir=str(tmp_path))
    assert len(source) == 1
    source = datasets.get_dataset("image_folder", "train", 8, 1, data_dir=str(tmp_path))
    assert len(source) == 2
    with pytest.warns(UserWarning, match="cannot decode"):
        image, _ = source[0]  # cut.png sorts first and is replaced by ok.png
    assert (image == 100).all()


def test_image_folder_errors(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("image_folder", "train", 16, 3, data_dir=str(tmp_path))
    _one_line_error(excinfo, "data.data_dir", "no PNG/JPEG images")
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("image_folder", "train", 16, 3)
    _one_line_error(excinfo, "data.data_dir")
    with pytest.raises(ConfigError) as excinfo:
        datasets.get_dataset("image_folder", "train", 16, 3, data_dir=str(tmp_path / "nope"))
    _one_line_error(excinfo, "data.data_dir", "not a directory")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="none of the 1"):
        datasets.get_dataset("image_folder", "train", 16, 3, data_dir=str(tmp_path))


# --- scalers ---------------------------------------------------------------------------------


def test_data_scalers_round_trip():
    x = np.linspace(0.0, 1.0, 5, dtype=np.float32)
    scaled = datasets.get_data_scaler(True)(x)
    np.testing.assert_allclose(scaled, [-1.0, -0.5, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(datasets.get_data_inverse_scaler(True)(scaled), x)
    np.testing.assert_array_equal(datasets.get_data_scaler(False)(x), x)
    np.testing.assert_array_equal(datasets.get_data_inverse_scaler(False)(x), x)
