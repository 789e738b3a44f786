"""A small CNN digits classifier: the offline feature network for the embedded digits dataset.

Its features and logits stand in for the FID Inception's on 16x16 grey digits, giving
classifier-based proxies of FID / KID / IS (`fd_digits`, `kid_digits`, `cis_digits`), not FID.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from utils import ConfigError, apply_in_batches, check_unit_images

NETWORK_NAME = "digits-cnn-v1"
IMAGE_SHAPE = (16, 16, 1)  # datasets.get_dataset('digits', split, image_size=16, num_channels=1)
NUM_CLASSES = 10
FEATURE_DIM = 64
DEFAULT_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "assets", "digits_classifier.npz"
)
TRAIN_COMMAND = "python tools/train_digits_classifier.py"
METADATA_KEY = "__metadata__"  # JSON string in the .npz: training settings, test accuracy
# Generic metric -> the name its value must be reported under with this network. These are
# proxies in a digits classifier's feature space; never report them as FID / KID / IS.
METRIC_NAMES = MappingProxyType(
    {
        "frechet_distance": "fd_digits",  # Frechet distance of classifier features
        "kid": "kid_digits",  # KID's MMD estimator on classifier features
        "inception_score": "cis_digits",  # Inception-style score of the classifier's logits
    }
)


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


class DigitsCNN(nn.Module):
    """Images [B, 16, 16, 1] in [0, 1] -> (features [B, FEATURE_DIM], logits [B, NUM_CLASSES]).

    Three 3x3 conv layers (32, 64, 64 channels, ReLU; 2x2 max pooling after the first two),
    the flattened 4x4 map (spatial layout matters for digits; a global mean pool generalised
    worse to the test writers), a dense feature layer, then ReLU and the 10-way classifier.
    The features are the dense layer's pre-activation output times a fixed scalar (variable
    'constants/feature_scale', set by `calibrate_feature_scale`) that gives the training
    digits unit root-mean-square features, the scale KID's polynomial kernel is made for.
    """

    feature_dim: int = FEATURE_DIM
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, images):  # [B, 16, 16, 1] in [0, 1]
        x = 2 * images - 1
        x = nn.relu(nn.Conv(32, (3, 3), name="conv1")(x))  # [B, 16, 16, 32]
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(64, (3, 3), name="conv2")(x))  # [B, 8, 8, 64]
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(64, (3, 3), name="conv3")(x))  # [B, 4, 4, 64]
        x = x.reshape(x.shape[0], -1)  # [B, 1024]
        h = nn.Dense(self.feature_dim, name="feature")(x)  # [B, F]
        logits = nn.Dense(self.num_classes, name="classifier")(nn.relu(h))  # [B, 10]
        feature_scale = self.variable("constants", "feature_scale", jnp.ones, ())
        return h * feature_scale.value, logits


def init_variables(seed: int = 0) -> dict:
    """Fresh variables of `DigitsCNN`: {'params': ..., 'constants': {'feature_scale': 1}}."""
    dummy = jnp.zeros((1, *IMAGE_SHAPE), jnp.float32)
    return DigitsCNN().init(jax.random.PRNGKey(seed), dummy)


def calibrate_feature_scale(variables: Mapping, images) -> dict:
    """Variables with 'feature_scale' set so `images` get features of unit root-mean-square.

    Args:
      variables: trained `DigitsCNN` variables.
      images: [N, 16, 16, 1] float in [0, 1], the training digits.
    """
    constants = {"feature_scale": jnp.ones((), jnp.float32)}
    unit = dict(variables, constants=constants)
    feats, _ = features(from_variables(unit), images)
    rms = float(np.sqrt(np.mean(np.square(feats, dtype=np.float64))))
    return dict(variables, constants={"feature_scale": jnp.asarray(1.0 / rms, jnp.float32)})


# ---------------------------------------------------------------------------------------------
# Weights file: flat '/'-joined variable names -> float32 arrays, plus a JSON metadata string
# ---------------------------------------------------------------------------------------------


def flatten_variables(variables: Mapping) -> dict[str, np.ndarray]:
    """{'params/conv1/kernel': float32 array, ...} from a nested Flax variables dict."""
    flat = traverse_util.flatten_dict(jax.device_get(dict(variables)), sep="/")
    return {k: np.asarray(v, np.float32) for k, v in flat.items()}


def weights_sha256(variables: Mapping) -> str:
    """Checksum of the weights, independent of file format: names, shapes, float32 values."""
    flat = flatten_variables(variables)
    h = hashlib.sha256()
    for key in sorted(flat):
        a = np.ascontiguousarray(flat[key], dtype="<f4")
        h.update(key.encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path, variables: Mapping, metadata: Mapping | None = None):
    """Write the variables (float32) and a JSON `metadata` dict to a compressed .npz."""
    meta = dict(metadata or {}, network=NETWORK_NAME, weights_sha256=weights_sha256(variables))
    with open(path, "wb") as f:  # a file object, so numpy keeps the name as given
        np.savez_compressed(
            f, **flatten_variables(variables), **{METADATA_KEY: np.str_(json.dumps(meta))}
        )


def _check_layout(flat: Mapping[str, np.ndarray], path: str):
    abstract = traverse_util.flatten_dict(jax.eval_shape(init_variables), sep="/")
    want = {k: tuple(v.shape) for k, v in abstract.items()}
    problems = [f"missing array {k!r}" for k in want if k not in flat]
    problems += [f"unexpected array {k!r}" for k in flat if k not in want]
    problems += [
        f"array {k!r} has shape {flat[k].shape}, expected {want[k]}"
        for k in want
        if k in flat and flat[k].shape != want[k]
    ]
    if problems:
        raise ConfigError(f"{path}: not {NETWORK_NAME} weights: {problems[0]}")


# ---------------------------------------------------------------------------------------------
# Loading and features
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureNet:
    """A loaded digits classifier: `apply(variables, images) -> (feats, logits)` is jitted.

    Shaped like `inception.InceptionNet` so evaluation code can treat both alike. `identity`
    ('digits-cnn-v1:<sha8>') names the network and its weights; reference statistics record it.
    `metric_names` maps generic metrics to the proxy names results must be reported under.
    """

    variables: dict
    apply: Callable
    identity: str
    source: str
    metadata: dict
    feature_dim: int = FEATURE_DIM
    num_classes: int = NUM_CLASSES
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    metric_names: Mapping[str, str] = dataclasses.field(default_factory=lambda: METRIC_NAMES)


def from_variables(variables: Mapping, source: str = "<memory>", metadata=None) -> FeatureNet:
    """Wrap Flax variables of `DigitsCNN` as a FeatureNet (identity from their checksum)."""
    variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
    identity = f"{NETWORK_NAME}:{weights_sha256(variables)[:8]}"
    return FeatureNet(variables, jax.jit(DigitsCNN().apply), identity, source, dict(metadata or {}))


def load_digits_classifier(path=None) -> FeatureNet:
    """Load the stored digits classifier (default: assets/digits_classifier.npz).

    Raises ConfigError (one line naming the path) for a missing, unreadable or mismatched file;
    a missing file's message gives the command that creates it.
    """
    path = os.fspath(path or DEFAULT_PATH)
    if not os.path.isfile(path):
        raise ConfigError(
            f"{path}: digits classifier weights not found; create them with `{TRAIN_COMMAND}`"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            flat = {k: f[k] for k in f.files}
    except Exception as e:
        raise ConfigError(f"{path}: not a readable .npz file ({type(e).__name__})") from None
    metadata = json.loads(str(flat.pop(METADATA_KEY, "{}")))
    _check_layout(flat, path)
    variables = traverse_util.unflatten_dict(flat, sep="/")
    return from_variables(variables, source=path, metadata=metadata)


def check_images(images, image_shape=IMAGE_SHAPE):
    """[B, 16, 16, 1] float in [0, 1], or a one-line ConfigError saying what is wrong."""
    if not hasattr(images, "dtype"):
        images = np.asarray(images)
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[1:] != tuple(image_shape) or shape[0] < 1:
        raise ConfigError(
            f"images must be [B, {', '.join(map(str, image_shape))}] (NHWC, grey digits "
            f"at image_size=16), got shape {shape}"
        )
    return check_unit_images(images)


def features(net: FeatureNet, images, batch_size: int = 500):
    """Classifier features and logits of images, in jitted batches of a fixed size.

    Args:
      net: from `load_digits_classifier`.
      images: [B, 16, 16, 1] float in [0, 1].
      batch_size: images per network call; the last batch is padded (one compilation).
    Returns:
      feats [B, feature_dim] and logits [B, num_classes], float32 numpy arrays.
    """
    images = check_images(images, net.image_shape)
    return apply_in_batches(lambda x: net.apply(net.variables, x), images, batch_size)
