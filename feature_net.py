"""Small offline CNN classifiers: the feature networks of the embedded digits and shapes sets.

Their features and logits stand in for the FID Inception's, giving classifier-based proxies of
FID / KID / IS (`fd_digits`, ... / `fd_shapes`, ...), not FID; the shapes classifier also reads
each image's colour, shape, size and position, to score how well samples follow their prompts.
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

import shapes
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


def calibrate_feature_scale(variables: Mapping, images, wrap: Callable | None = None) -> dict:
    """Variables with 'feature_scale' set so `images` get features of unit root-mean-square.

    Args:
      variables: trained `DigitsCNN` (or, with `wrap=shapes_from_variables`, `ShapesCNN`)
        variables.
      images: [N, H, W, C] float in [0, 1], the network's training images.
      wrap: variables -> FeatureNet (default `from_variables`, the digits network).
    """
    constants = {"feature_scale": jnp.ones((), jnp.float32)}
    unit = dict(variables, constants=constants)
    feats, _ = features((wrap or from_variables)(unit), images)
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


def save(path, variables: Mapping, metadata: Mapping | None = None, network: str = NETWORK_NAME):
    """Write the variables (float32) and a JSON `metadata` dict to a compressed .npz."""
    meta = dict(metadata or {}, network=network, weights_sha256=weights_sha256(variables))
    with open(path, "wb") as f:  # a file object, so numpy keeps the name as given
        np.savez_compressed(
            f, **flatten_variables(variables), **{METADATA_KEY: np.str_(json.dumps(meta))}
        )


def _check_layout(flat: Mapping[str, np.ndarray], path: str, init=None, network=NETWORK_NAME):
    abstract = traverse_util.flatten_dict(jax.eval_shape(init or init_variables), sep="/")
    want = {k: tuple(v.shape) for k, v in abstract.items()}
    problems = [f"missing array {k!r}" for k in want if k not in flat]
    problems += [f"unexpected array {k!r}" for k in flat if k not in want]
    problems += [
        f"array {k!r} has shape {flat[k].shape}, expected {want[k]}"
        for k in want
        if k in flat and flat[k].shape != want[k]
    ]
    if problems:
        raise ConfigError(f"{path}: not {network} weights: {problems[0]}")


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
    image_hint: str = "grey digits at image_size=16"
    attribute_apply: Callable | None = None  # shapes: (variables, images) -> {name: logits}


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
    variables, metadata = _read_weights(path, "digits", TRAIN_COMMAND, init_variables, NETWORK_NAME)
    return from_variables(variables, source=path, metadata=metadata)


def _read_weights(path: str, what: str, command: str, init: Callable, network: str):
    """(variables, metadata) of a weights file, or a one-line ConfigError naming the path."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: {what} classifier weights not found; create them with "
                          f"`{command}`")
    try:
        with np.load(path, allow_pickle=False) as f:
            flat = {k: f[k] for k in f.files}
    except Exception as e:
        raise ConfigError(f"{path}: not a readable .npz file ({type(e).__name__})") from None
    metadata = json.loads(str(flat.pop(METADATA_KEY, "{}")))
    _check_layout(flat, path, init, network)
    return traverse_util.unflatten_dict(flat, sep="/"), metadata


def check_images(images, image_shape=IMAGE_SHAPE, hint: str = "grey digits at image_size=16"):
    """[B, *image_shape] float in [0, 1], or a one-line ConfigError saying what is wrong."""
    if not hasattr(images, "dtype"):
        images = np.asarray(images)
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[1:] != tuple(image_shape) or shape[0] < 1:
        raise ConfigError(
            f"images must be [B, {', '.join(map(str, image_shape))}] (NHWC, {hint}), "
            f"got shape {shape}"
        )
    return check_unit_images(images)


def features(net: FeatureNet, images, batch_size: int = 500):
    """Classifier features and logits of images, in jitted batches of a fixed size.

    Args:
      net: from `load_digits_classifier` or `load_shapes_classifier`.
      images: [B, 16, 16, 1] (digits) or [B, 32, 32, 3] (shapes) float in [0, 1].
      batch_size: images per network call; the last batch is padded (one compilation).
    Returns:
      feats [B, feature_dim] and logits [B, num_classes], float32 numpy arrays (shapes: the
      log-probabilities of the 210 joint classes colour x shape x size x position).
    """
    images = check_images(images, net.image_shape, net.image_hint)
    return apply_in_batches(lambda x: net.apply(net.variables, x), images, batch_size)


# ---------------------------------------------------------------------------------------------
# The shapes attribute classifier (32x32 RGB, one object): colour, shape, size, position heads
# ---------------------------------------------------------------------------------------------

SHAPES_NETWORK_NAME = "shapes-cnn-v1"
SHAPES_IMAGE_SHAPE = (32, 32, 3)  # datasets.get_dataset('shapes', split, 32, 3)
SHAPES_HEADS = {name: len(vocab) for name, vocab in shapes.SHAPES_ATTRIBUTES.items()}
SHAPES_NUM_JOINT = int(np.prod(list(SHAPES_HEADS.values())))  # 7 * 3 * 2 * 5 = 210
SHAPES_FEATURE_DIM = 64
SHAPES_DEFAULT_PATH = os.path.join(os.path.dirname(DEFAULT_PATH), "shapes_classifier.npz")
SHAPES_TRAIN_COMMAND = "python tools/train_shapes_classifier.py"
SHAPES_METRIC_NAMES = MappingProxyType(
    {
        "frechet_distance": "fd_shapes",  # Frechet distance of the classifier's features
        "kid": "kid_shapes",
        "inception_score": "cis_shapes",  # over the 210 joint attribute classes
    }
)


class ShapesCNN(nn.Module):
    """Images [B, 32, 32, 3] in [0, 1] -> (features [B, F], {attribute: logits [B, k]}).

    Three 3x3 conv layers of 32 channels (ReLU, 2x2 max pooling after each), the flattened
    4x4 map (position needs the layout), a dense feature layer (scaled to unit RMS on the
    training images, as `DigitsCNN`), then ReLU and one linear head per attribute:
    colour (7), shape (3), size (2), position (5). Trained on single-object images.
    """

    feature_dim: int = SHAPES_FEATURE_DIM

    @nn.compact
    def __call__(self, images):  # [B, 32, 32, 3] in [0, 1]
        x = 2 * images - 1
        for k in range(3):
            x = nn.relu(nn.Conv(32, (3, 3), name=f"conv{k + 1}")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))  # 16, 8, 4
        x = x.reshape(x.shape[0], -1)  # [B, 512]
        h = nn.Dense(self.feature_dim, name="feature")(x)  # [B, F]
        logits = {name: nn.Dense(k, name=name)(nn.relu(h)) for name, k in SHAPES_HEADS.items()}
        feature_scale = self.variable("constants", "feature_scale", jnp.ones, ())
        return h * feature_scale.value, logits


def init_shapes_variables(seed: int = 0) -> dict:
    """Fresh variables of `ShapesCNN`: {'params': ..., 'constants': {'feature_scale': 1}}."""
    dummy = jnp.zeros((1, *SHAPES_IMAGE_SHAPE), jnp.float32)
    return ShapesCNN().init(jax.random.PRNGKey(seed), dummy)


def joint_log_probs(logits: Mapping[str, jax.Array]) -> jax.Array:
    """[B, 210] log p(colour, shape, size, position) = the sum of the heads' log-softmaxes."""
    out = None
    for name in SHAPES_HEADS:
        lp = jax.nn.log_softmax(logits[name], axis=-1)  # [B, k]
        out = lp if out is None else (out[:, :, None] + lp[:, None, :]).reshape(lp.shape[0], -1)
    return out


def shapes_from_variables(variables: Mapping, source: str = "<memory>", metadata=None):
    """Wrap Flax variables of `ShapesCNN` as a FeatureNet: `apply` gives (features, joint
    log-probabilities [B, 210]), `attribute_apply` the per-attribute logits."""
    variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
    identity = f"{SHAPES_NETWORK_NAME}:{weights_sha256(variables)[:8]}"

    def apply(v, images):
        feats, logits = ShapesCNN().apply(v, images)
        return feats, joint_log_probs(logits)

    return FeatureNet(
        variables, jax.jit(apply), identity, source, dict(metadata or {}),
        feature_dim=SHAPES_FEATURE_DIM, num_classes=SHAPES_NUM_JOINT,
        image_shape=SHAPES_IMAGE_SHAPE, metric_names=SHAPES_METRIC_NAMES,
        image_hint="RGB shapes at image_size=32",
        attribute_apply=jax.jit(lambda v, images: ShapesCNN().apply(v, images)[1]),
    )


def load_shapes_classifier(path=None) -> FeatureNet:
    """Load the stored shapes attribute classifier (default: assets/shapes_classifier.npz).

    Raises ConfigError (one line naming the path) for a missing, unreadable or mismatched file;
    a missing file's message gives the command that creates it.
    """
    path = os.fspath(path or SHAPES_DEFAULT_PATH)
    variables, metadata = _read_weights(path, "shapes", SHAPES_TRAIN_COMMAND,
                                        init_shapes_variables, SHAPES_NETWORK_NAME)
    return shapes_from_variables(variables, source=path, metadata=metadata)


def shapes_logits(net: FeatureNet, images, batch_size: int = 500) -> dict[str, np.ndarray]:
    """Per-attribute logits of single-object shapes images.

    Args:
      net: from `load_shapes_classifier`.
      images: [B, 32, 32, 3] float in [0, 1].
      batch_size: images per network call (the last batch padded).

    Returns:
      {'colour': [B, 7], 'shape': [B, 3], 'size': [B, 2], 'position': [B, 5]} float32 numpy.
    """
    if net.attribute_apply is None:
        raise ConfigError(f"{net.identity} has no attribute heads; use load_shapes_classifier()")
    images = check_images(images, net.image_shape, net.image_hint)
    names = tuple(SHAPES_HEADS)
    fn = lambda x: tuple(net.attribute_apply(net.variables, x)[k] for k in names)
    return dict(zip(names, apply_in_batches(fn, images, batch_size), strict=True))


def shapes_attributes(net: FeatureNet, images, batch_size: int = 500) -> dict[str, np.ndarray]:
    """What the classifier reads in each image: {attribute: int32 [B] label id}.

    Ids index `shapes.SHAPES_COLOURS`, `SHAPES_SHAPES`, `SHAPES_SIZES`, `SHAPES_POSITIONS`
    (also `datasets.SHAPES_*`). Args as `shapes_logits`.
    """
    return {k: np.argmax(v, axis=1).astype(np.int32)
            for k, v in shapes_logits(net, images, batch_size).items()}
