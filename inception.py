"""Inception-v3 as used by FID/KID/IS: the TF "2015-12-05" graph in pytorch-fid's port.

Flax Linen (NHWC) re-implementation of pytorch-fid's `fid_inception_v3` (FIDInceptionA/C/E_1/E_2
blocks, 1008 classes, BatchNorm eps 1e-3), and the loader for its published weights.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import warnings
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from utils import ConfigError

NETWORK_NAME = "fid-inception-v3-2015-12-05"
PUBLISHED_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid release asset
PUBLISHED_HASH_PREFIX = "6726825d"  # sha256 prefix, checked the way torch.hub checks it
INPUT_SIZE = 299
NUM_CLASSES = 1008
POOL_DIM = 2048
BN_EPS = 1e-3
HIGHEST = jax.lax.Precision.HIGHEST  # float32 features on every backend (no TF32/bf16 passes)
SOURCE_KEY, CONTENT_KEY = "__source_sha256__", "__content_sha256__"  # .npz metadata entries


class InceptionWeightsWarning(UserWarning):
    """Weights differ from pytorch-fid's published file: scores are not comparable."""


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of torch's bilinear resize with align_corners=False (no antialias).

    Mirrors torch's float32 source-index arithmetic: src = max((dst + 0.5) * n_in / n_out - 0.5, 0).
    """
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + 0.5) * scale - 0.5, 0).astype(np.float32)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0.astype(np.float32)
    rows = np.arange(n_out)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (rows, i0), 1 - w1)
    np.add.at(m, (rows, i1), w1)
    return m


def bilinear_resize(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """Resize [B, H, W, C] to [B, *size, C] as torch's F.interpolate(mode='bilinear')."""
    h, w = x.shape[1:3]
    if (h, w) == tuple(size):
        return x
    r_h = jnp.asarray(_resize_matrix(h, size[0]))
    r_w = jnp.asarray(_resize_matrix(w, size[1]))
    x = jnp.einsum("oh,bhwc->bowc", r_h, x, precision=HIGHEST)
    return jnp.einsum("pw,bowc->bopc", r_w, x, precision=HIGHEST)


class BasicConv(nn.Module):
    """Conv (no bias) -> BatchNorm (eval mode, eps 1e-3) -> ReLU; torchvision's BasicConv2d."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(
            self.features,
            self.kernel,
            strides=self.strides,
            use_bias=False,
            padding=((ph, ph), (pw, pw)),
            precision=HIGHEST,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x):
    """3x3/1 average pool that leaves the zero padding out of the mean (TF 'SAME')."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x):
    return nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))


def _max_pool_reduce(x):
    return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b-d); pytorch-fid's FIDInceptionA."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, name="branch1x1")(x)
        b5 = BasicConv(48, name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction (Mixed_6a)."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = BasicConv(64, name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_reduce(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b-e); pytorch-fid's FIDInceptionC."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = BasicConv(192, name="branch1x1")(x)
        b7 = BasicConv(c7, name="branch7x7_1")(x)
        b7 = BasicConv(c7, **row, name="branch7x7_2")(b7)
        b7 = BasicConv(192, **col, name="branch7x7_3")(b7)
        bd = BasicConv(c7, name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, **col, name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, **row, name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, **col, name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, **row, name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction (Mixed_7a)."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_reduce(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with expanded filter banks (Mixed_7b: FIDInceptionE_1, Mixed_7c: E_2).

    `pool` is 'avg' (padding excluded) in Mixed_7b and 'max' in Mixed_7c, as in the TF graph.
    """

    pool: str

    @nn.compact
    def __call__(self, x):
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        b1 = BasicConv(320, name="branch1x1")(x)
        b3 = BasicConv(384, name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                BasicConv(384, **row, name="branch3x3_2a")(b3),
                BasicConv(384, **col, name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = BasicConv(448, name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                BasicConv(384, **row, name="branch3x3dbl_3a")(bd),
                BasicConv(384, **col, name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        pooled = _avg_pool_3x3(x) if self.pool == "avg" else _max_pool_3x3(x)
        bp = BasicConv(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class Classifier(nn.Module):
    """The 2048 -> 1008 softmax layer; the bias is optional (see FIDInceptionV3)."""

    features: int
    use_bias: bool

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = jnp.dot(x, kernel, precision=HIGHEST)
        return y + bias if self.use_bias else y


class FIDInceptionV3(nn.Module):
    """FID Inception-v3. Maps images [B, H, W, 3] in [0, 1] to (pool [B, 2048], logits [B, 1008]).

    Images are resized to 299x299 like torch's bilinear F.interpolate (align_corners=False)
    and scaled to [-1, 1], as pytorch-fid does. With `logits_bias=False` (default) the logits
    are pool3 @ W without the softmax bias: the logits of OpenAI's Inception Score code and
    torch-fidelity's 'logits_unbiased'; True gives the classifier's full logits.
    """

    logits_bias: bool = False

    @nn.compact
    def __call__(self, images):  # [B, H, W, 3] in [0, 1]
        x = 2 * bilinear_resize(images, (INPUT_SIZE, INPUT_SIZE)) - 1  # [B, 299, 299, 3]
        x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_reduce(x)
        x = BasicConv(80, name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_reduce(x)  # [B, 35, 35, 192]
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, name=name)(x)
        x = InceptionB(name="Mixed_6a")(x)  # [B, 17, 17, 768]
        for name, c7 in (
            ("Mixed_6b", 128),
            ("Mixed_6c", 160),
            ("Mixed_6d", 160),
            ("Mixed_6e", 192),
        ):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)  # [B, 8, 8, 1280]
        x = InceptionE("avg", name="Mixed_7b")(x)
        x = InceptionE("max", name="Mixed_7c")(x)  # [B, 8, 8, 2048]
        pool = jnp.mean(x, axis=(1, 2))  # [B, 2048]
        logits = Classifier(NUM_CLASSES, self.logits_bias, name="fc")(pool)  # [B, 1008]
        return pool, logits


# ---------------------------------------------------------------------------------------------
# Weights: torch state-dict layout <-> Flax variables
# ---------------------------------------------------------------------------------------------

_TORCH_LEAF = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


@functools.cache
def _variable_layout() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """torch key -> (Flax variable path, torch shape), in jax's (sorted) tree order."""
    abstract = jax.eval_shape(
        FIDInceptionV3().init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32),
    )
    layout = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
        names = tuple(p.key for p in path)
        key = ".".join(names[1:-1] + (_TORCH_LEAF[(names[0], names[-1])],))
        shape = leaf.shape
        if len(shape) == 4:  # Flax [kh, kw, in, out] -> torch [out, in, kh, kw]
            shape = (shape[3], shape[2], shape[0], shape[1])
        elif len(shape) == 2:  # Flax [in, out] -> torch [out, in]
            shape = shape[::-1]
        layout[key] = (names, shape)
    return layout


def state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """Torch state-dict keys and shapes of the FID Inception (num_batches_tracked left out)."""
    return {key: shape for key, (_, shape) in _variable_layout().items()}


def content_sha256(state: Mapping[str, np.ndarray]) -> str:
    """Checksum of the weights themselves, independent of file format and key order.

    sha256 over the keys in sorted order (num_batches_tracked counters left out), each hashed
    as its name, its shape and its values as little-endian float32 bytes.
    """
    h = hashlib.sha256()
    for key in sorted(k for k in state if not k.endswith("num_batches_tracked")):
        a = np.ascontiguousarray(state[key], dtype="<f4")
        h.update(key.encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def check_state_dict(state: Mapping[str, np.ndarray], source: str):
    """Raise a one-line ConfigError naming `source` and the first bad key of `state`."""
    shapes = state_dict_shapes()
    found = {k: (tuple(np.shape(v)), np.asarray(v).dtype) for k, v in state.items()}
    problems = [
        (f"missing key {k!r}" for k in shapes if k not in found),
        (
            f"unexpected key {k!r}"
            for k in found
            if k not in shapes and not k.endswith("num_batches_tracked")
        ),
        (
            f"key {k!r} has shape {found[k][0]}, expected {shapes[k]}"
            for k in shapes
            if k in found and found[k][0] != shapes[k]
        ),
        (
            f"key {k!r} has dtype {found[k][1]}, expected floating point"
            for k in shapes
            if k in found and not np.issubdtype(found[k][1], np.floating)
        ),
    ]
    for kind in problems:
        bad = list(kind)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise ConfigError(f"{source}: not pytorch-fid FID Inception weights: {bad[0]}{more}")


def variables_from_state_dict(state: Mapping[str, np.ndarray], source: str = "weights") -> dict:
    """Flax variables {'params', 'batch_stats'} from a pytorch-fid state dict (torch layout)."""
    check_state_dict(state, source)
    variables: dict = {}
    for key, (names, _) in _variable_layout().items():
        a = np.asarray(state[key], dtype=np.float32)
        if a.ndim == 4:
            a = a.transpose(2, 3, 1, 0)
        elif a.ndim == 2:
            a = a.T
        node = variables
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = jnp.asarray(a)
    return variables


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic synthetic weights in pytorch-fid's layout (tests, benchmarks, references).

    Every tensor is drawn from one `np.random.default_rng(seed)` in sorted key order: conv
    weights He-normal, BN scale U(0.8, 1.2), BN bias and running mean N(0, 0.1^2), running var
    U(0.5, 1.5), fc weight N(0, 1/2048), fc bias N(0, 1), so activations stay O(1).
    """
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in sorted(state_dict_shapes().items()):
        if key.endswith("conv.weight"):
            a = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif key.endswith("bn.weight"):
            a = rng.uniform(0.8, 1.2, shape)
        elif key.endswith("running_var"):
            a = rng.uniform(0.5, 1.5, shape)
        elif key.endswith(("bn.bias", "running_mean")):
            a = 0.1 * rng.standard_normal(shape)
        elif key == "fc.weight":
            a = rng.standard_normal(shape) / np.sqrt(shape[1])
        else:  # fc.bias
            a = rng.standard_normal(shape)
        state[key] = a.astype(np.float32)
    return state


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InceptionNet:
    """A loaded feature network: `apply(variables, images) -> (pool, logits)` is jitted.

    `identity` names the network and weights; reference statistics record it (evaluation.py).
    `published` is True only for pytorch-fid's published weights (checksum verified).
    """

    variables: dict
    apply: Callable
    identity: str
    published: bool
    source: str


def from_state_dict(
    state: Mapping[str, np.ndarray], source: str, published: bool, logits_bias: bool = False
) -> InceptionNet:
    """Build an InceptionNet from a torch-layout state dict (checked; ConfigError on mismatch)."""
    variables = variables_from_state_dict(state, source)
    identity = f"{NETWORK_NAME}/pool3"
    if not published:
        identity += f"/weights-sha256:{content_sha256(state)[:16]}"
    module = FIDInceptionV3(logits_bias=logits_bias)
    return InceptionNet(variables, jax.jit(module.apply), identity, published, source)


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_pth(path: str) -> tuple[dict[str, np.ndarray], str]:
    """Arrays of a torch state-dict file and the file's sha256 (torch imported lazily)."""
    try:
        import torch
    except ImportError:
        raise ConfigError(
            f"{path}: reading a .pth file needs torch; convert it to .npz with "
            "tools/inception_to_npz.py where torch is installed"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{path}: not a readable torch state dict ({type(e).__name__})") from None
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path}: expected a state dict, found {type(state).__name__}")
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items() if torch.is_tensor(v)}
    return arrays, _file_sha256(path)


def _read_npz(path: str) -> tuple[dict[str, np.ndarray], str, str]:
    """Arrays of an .npz plus its recorded source and content checksums ('' when absent)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise ConfigError(f"{path}: not a readable .npz file ({type(e).__name__})") from None
    return arrays, str(arrays.pop(SOURCE_KEY, "")), str(arrays.pop(CONTENT_KEY, ""))


def load(path: str, logits_bias: bool = False) -> InceptionNet:
    """Load the FID Inception from pytorch-fid's .pth (needs torch) or a converted .npz.

    A .pth is the published file when its sha256 starts with 6726825d (torch.hub's rule). An
    .npz is when tools/inception_to_npz.py recorded such a source hash in it and the recorded
    checksum of its arrays (`content_sha256`) still matches them.

    Raises ConfigError (one line naming the path) for a missing, unreadable or mismatched file;
    warns (InceptionWeightsWarning) when the weights are not the published ones.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(
            f"{path}: Inception weights not found (pytorch-fid's {PUBLISHED_FILE}, "
            "or an .npz made from it by tools/inception_to_npz.py)"
        )
    if path.endswith((".pth", ".pt")):
        state, sha256 = read_pth(path)
        check_state_dict(state, path)
        published = sha256.startswith(PUBLISHED_HASH_PREFIX)
    else:  # converted file: trust its recorded source hash while its content is unchanged
        state, source, content = _read_npz(path)
        check_state_dict(state, path)
        published = source.startswith(PUBLISHED_HASH_PREFIX) and content == content_sha256(state)
    net = from_state_dict(state, path, published, logits_bias)
    if not published:
        warnings.warn(
            f"{path}: weights are not pytorch-fid's published {PUBLISHED_FILE} "
            "(checksum differs or unrecorded); FID/KID/IS computed with them are not "
            "comparable with the literature",
            InceptionWeightsWarning,
            stacklevel=2,
        )
    return net
