"""The digits feature network (feature_net.py): stored classifier accuracy, features, identity,
input checks, and sanity of the classifier-based proxies (fd_digits, kid_digits, cis_digits)
computed with evaluation.py's FID / KID / IS estimators.
"""

import os
import re

import numpy as np
import pytest
from flax import traverse_util

import datasets
import evaluation
import feature_net
from utils import ConfigError


def _digits(split):
    source = datasets.get_dataset("digits", split, image_size=16, num_channels=1)
    images, labels = zip(*(source[i] for i in range(len(source))), strict=True)
    return np.stack(images).astype(np.float32) / 255.0, np.asarray(labels)


@pytest.fixture(scope="module")
def net():
    return feature_net.load_digits_classifier()


@pytest.fixture(scope="module")
def test_set(net):
    images, labels = _digits("test")
    return images, labels, *feature_net.features(net, images)


@pytest.fixture(scope="module")
def train_set(net):
    images, labels = _digits("train")
    return images, labels, *feature_net.features(net, images)


# --- the stored classifier -------------------------------------------------------------------


def test_stored_classifier_accuracy_on_held_out_digits(test_set):
    _, labels, _, logits = test_set
    assert len(labels) == 297
    acc = float(np.mean(np.argmax(logits, axis=1) == labels))
    print(f"digits classifier test accuracy: {acc:.4f}")
    assert acc >= 0.95


def test_stored_file_is_small_and_records_its_training(net):
    assert os.path.getsize(feature_net.DEFAULT_PATH) < 1 << 20
    assert net.metadata["command"] == feature_net.TRAIN_COMMAND
    assert net.metadata["test_accuracy"] >= 0.95
    assert net.metadata["weights_sha256"].startswith(net.identity.split(":")[1])


def test_feature_shapes_and_batching(net, test_set):
    images, _, feats, logits = test_set
    assert feats.shape == (297, net.feature_dim) and logits.shape == (297, net.num_classes)
    assert feats.dtype == logits.dtype == np.float32
    assert (net.feature_dim, net.num_classes) == (64, 10)
    small_feats, small_logits = feature_net.features(net, images[:7], batch_size=4)  # padded
    np.testing.assert_allclose(small_feats, feats[:7], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(small_logits, logits[:7], rtol=1e-4, atol=1e-4)


def test_training_digits_have_unit_rms_features(train_set):
    feats = train_set[2]
    assert np.sqrt(np.mean(np.square(feats, dtype=np.float64))) == pytest.approx(1.0, rel=1e-3)


# --- identity and the weights file ------------------------------------------------------------


def test_identity_names_network_and_weights(net, tmp_path):
    assert re.fullmatch(r"digits-cnn-v1:[0-9a-f]{8}", net.identity)
    same = tmp_path / "same.npz"
    feature_net.save(same, net.variables, net.metadata)
    assert feature_net.load_digits_classifier(same).identity == net.identity

    flat = feature_net.flatten_variables(net.variables)
    flat["params/classifier/bias"] = flat["params/classifier/bias"] + 1e-3
    changed = tmp_path / "changed.npz"
    feature_net.save(changed, traverse_util.unflatten_dict(flat, sep="/"))
    assert feature_net.load_digits_classifier(changed).identity != net.identity


def test_missing_weights_name_the_path_and_the_command(tmp_path):
    path = tmp_path / "nowhere.npz"
    with pytest.raises(ConfigError, match=re.escape(str(path))) as err:
        feature_net.load_digits_classifier(path)
    assert feature_net.TRAIN_COMMAND in str(err.value)
    assert "\n" not in str(err.value)


def test_wrong_weights_file_is_rejected(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, **{"params/conv1/kernel": np.zeros((3, 3, 3, 32), np.float32)})
    with pytest.raises(ConfigError, match="not digits-cnn-v1 weights"):
        feature_net.load_digits_classifier(path)


def test_statistics_of_another_network_are_rejected(net, test_set, tmp_path):
    stats = evaluation.FeatureStats().update(test_set[2])
    path = tmp_path / "digits_test_stats.npz"
    evaluation.save_statistics(path, stats.mean, stats.cov, net)
    mu, _ = evaluation.load_statistics(path, net)
    np.testing.assert_allclose(mu, stats.mean)
    with pytest.raises(ConfigError, match="recompute them"):
        evaluation.load_statistics(path, "fid-inception-v3-2015-12-05/pool3")


# --- input checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 16, 16, 3), np.float32), r"must be \[B, 16, 16, 1\]"),
        (np.zeros((2, 32, 32, 1), np.float32), r"must be \[B, 16, 16, 1\]"),
        (np.zeros((16, 16, 1), np.float32), r"must be \[B, 16, 16, 1\]"),
        (np.zeros((2, 16, 16, 1), np.uint8), "divide by 255"),
        (np.full((2, 16, 16, 1), -1.0, np.float32), r"must lie in \[0, 1\]"),
        (np.full((2, 16, 16, 1), np.nan, np.float32), r"must lie in \[0, 1\]"),
    ],
)
def test_bad_images_raise_one_line_config_errors(net, images, message):
    with pytest.raises(ConfigError, match=message) as err:
        feature_net.features(net, images)
    assert "\n" not in str(err.value)


# --- the proxies behave like FID / KID / IS on digits ----------------------------------------


def test_metric_names_mark_the_proxies(net):
    names = dict(net.metric_names)
    assert names == {
        "frechet_distance": "fd_digits",
        "kid": "kid_digits",
        "inception_score": "cis_digits",
    }
    assert not {"fid", "kid", "is", "inception_score"} & set(names.values())


def test_frechet_distance_separates_real_digits_from_noise_and_collapse(net, test_set, train_set):
    test_feats = test_set[2]
    train_images, train_labels, train_feats, _ = train_set
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 1, (297, 16, 16, 1)).astype(np.float32)
    one_class = train_images[train_labels == 3]  # a mode-collapsed generator
    repeated = np.repeat(train_images[:1], 297, axis=0)  # one image, repeated
    fd_real = evaluation.fid(test_feats, train_feats)
    fd_bad = {
        name: evaluation.fid(test_feats, feature_net.features(net, images)[0])
        for name, images in (("noise", noise), ("one_class", one_class), ("repeat", repeated))
    }
    print(f"fd_digits(test, train) = {fd_real:.3f}; against bad samples: {fd_bad}")
    assert fd_real < 0.1 * min(fd_bad.values())


def test_kid_separates_real_digits_from_noise(net, test_set, train_set):
    noise = np.random.default_rng(1).uniform(0, 1, (297, 16, 16, 1)).astype(np.float32)
    noise_feats, _ = feature_net.features(net, noise)
    kid_real, _ = evaluation.kid(test_set[2], train_set[2], subset_size=200, num_subsets=20)
    kid_noise, _ = evaluation.kid(test_set[2], noise_feats, subset_size=200, num_subsets=20)
    assert kid_real < 0.1 * kid_noise


def test_classifier_score_near_ten_for_real_digits_and_one_for_a_single_class(test_set):
    _, labels, _, logits = test_set
    score_real, _ = evaluation.inception_score(logits, splits=1)
    score_single, _ = evaluation.inception_score(logits[labels == 5], splits=1)
    print(f"cis_digits: real test digits {score_real:.3f}, one class {score_single:.4f}")
    assert 9.0 < score_real < 10.0
    assert 1.0 <= score_single < 1.1
