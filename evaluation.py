"""Sample-quality metrics: energy distance / sliced Wasserstein (low-dimensional data), and
FID (Heusel et al. 2017), KID (Binkowski et al. 2018) and IS (Salimans et al. 2016) in the
features of the FID Inception-v3 or, offline, of the project's digits classifier.
"""

from __future__ import annotations

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.special

import feature_net
import inception
from utils import ConfigError, apply_in_batches, check_unit_images

# ---------------------------------------------------------------------------------------------
# Low-dimensional sample distances (toy data, analytic oracles)
# ---------------------------------------------------------------------------------------------


def _mean_pairwise_dist(a, b):
    d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None] - 2 * a @ b.T
    return jnp.mean(jnp.sqrt(jnp.maximum(d2, 0.0)))


@jax.jit
def energy_distance(x, y):
    """Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (Szekely) between samples [n, D], [m, D].

    Zero iff the distributions agree; the V-statistic form (diagonal included), so two finite
    samples of one distribution give a small positive value of order 1/n.
    """
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    y = y.reshape(y.shape[0], -1).astype(jnp.float32)
    return (
        2 * _mean_pairwise_dist(x, y) - _mean_pairwise_dist(x, x) - _mean_pairwise_dist(y, y)
    )


def sliced_wasserstein(rng, x, y, num_projections: int = 256):
    """Monte-Carlo sliced 1-Wasserstein distance between equal-size samples [n, D]."""
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"sliced_wasserstein needs equal sample counts, got {len(x)}, {len(y)}")
    dirs = jax.random.normal(rng, (x.shape[1], num_projections))
    dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
    px = jnp.sort(x @ dirs, axis=0)
    py = jnp.sort(y @ dirs, axis=0)
    return jnp.mean(jnp.abs(px - py))


# ---------------------------------------------------------------------------------------------
# Inception metrics: FID (Heusel et al. 2017), KID (Binkowski et al. 2018), IS (Salimans et
# al. 2016), on the FID Inception-v3 of inception.py. Statistics in float64 on the host.
# ---------------------------------------------------------------------------------------------


def load_inception(path) -> inception.InceptionNet:
    """FID Inception-v3 (pytorch-fid's port of the TF 2015-12-05 graph) from .pth or .npz.

    Args:
      path: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (read with torch) or an .npz
        made from it by tools/inception_to_npz.py (no torch needed).
    Returns:
      An `inception.InceptionNet`; its `identity` goes into reference statistics.
    Raises ConfigError for a missing or mismatched file; warns (`InceptionWeightsWarning`) when
    the weights are not the published ones, since scores would not match the literature.
    """
    return inception.load(path)


def _check_images(images):
    """[B, H, W, 3] float in [0, 1], or a one-line ConfigError saying what is wrong."""
    if not hasattr(images, "dtype"):
        images = np.asarray(images)
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[-1] != 3 or min(shape) < 1:
        raise ConfigError(f"images must be [B, H, W, 3] (NHWC, RGB), got shape {shape}")
    return check_unit_images(images)


def inception_features(net: inception.InceptionNet, images, batch_size: int = 50):
    """Pool features and logits of images, in jitted batches of a fixed size.

    The literature scores 8-bit images: quantise samples (round(x * 255) / 255) before this for
    comparable numbers. The last batch is padded, so one compilation serves any image count.

    Args:
      net: from `load_inception`.
      images: [B, H, W, 3] float in [0, 1], any H, W (resized to 299 like pytorch-fid).
      batch_size: images per network call.
    Returns:
      pool [B, 2048] and logits [B, 1008], float32 numpy arrays. The logits are pool3 @ W
      without the softmax bias, as the Inception Score literature uses them (see
      `inception_score`); `inception.load(path, logits_bias=True)` gives the full logits.
    """
    images = _check_images(images)
    return apply_in_batches(lambda x: net.apply(net.variables, x), images, batch_size)


def _features(feats, name: str, min_count: int = 2) -> np.ndarray:
    feats = np.asarray(feats, np.float64)
    if feats.ndim != 2 or feats.shape[0] < min_count:
        raise ConfigError(
            f"{name} must be [N, D] features with N >= {min_count}, got shape {feats.shape}"
        )
    return feats


class FeatureStats:
    """Streaming mean and covariance of features [B, D], accumulated in float64.

    Batches merge with Chan et al.'s pairwise update, so 50k images need not be held. The
    covariance is the unbiased one (ddof=1), as np.cov and pytorch-fid compute it.
    """

    def __init__(self):
        self.n = 0
        self._mean = None
        self._m2 = None  # sum of outer products of deviations from the running mean

    def update(self, feats) -> FeatureStats:
        feats = _features(feats, "features", min_count=1)
        n_b, mean_b = feats.shape[0], feats.mean(axis=0)
        dev = feats - mean_b
        m2_b = dev.T @ dev
        if self.n == 0:
            self._mean, self._m2 = mean_b, m2_b
        else:
            if mean_b.shape != self._mean.shape:
                raise ConfigError(
                    f"features of dimension {mean_b.shape[0]} added to statistics "
                    f"of dimension {self._mean.shape[0]}"
                )
            delta = mean_b - self._mean
            total = self.n + n_b
            self._mean = self._mean + delta * (n_b / total)
            self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (self.n * n_b / total)
        self.n += n_b
        return self

    @property
    def mean(self) -> np.ndarray:
        """[D] float64."""
        if self.n < 1:
            raise ConfigError("feature statistics are empty: call update() first")
        return self._mean

    @property
    def cov(self) -> np.ndarray:
        """[D, D] float64, ddof=1."""
        if self.n < 2:
            raise ConfigError(f"a covariance needs at least 2 samples, got {self.n}")
        return self._m2 / (self.n - 1)


def _identity(feature_net) -> str:
    return getattr(feature_net, "identity", feature_net)


def save_statistics(path, mu, sigma, feature_net, num_samples: int | None = None,
                    features=None):
    """Write reference statistics: .npz with mu [D], sigma [D, D], feature_net, num_samples.

    Args:
      feature_net: the `InceptionNet` (or its `identity` string) that made the features.
      features: optionally a subset of the reference features [M, D] (for KID).
    """
    extra = {} if features is None else {"features": np.asarray(features, np.float32)}
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:  # a file object, so numpy keeps the name as given
        np.savez(
            f,
            mu=np.asarray(mu, np.float64),
            sigma=np.asarray(sigma, np.float64),
            feature_net=np.str_(_identity(feature_net)),
            num_samples=num_samples or -1,
            **extra,
        )
    os.replace(tmp, path)


def load_reference_features(path) -> np.ndarray | None:
    """The reference feature subset stored by `save_statistics`, or None if it has none."""
    with np.load(os.fspath(path), allow_pickle=False) as f:
        return f["features"] if "features" in f.files else None


def load_statistics(path, feature_net) -> tuple[np.ndarray, np.ndarray]:
    """Read (mu, sigma) written by `save_statistics`; reject another feature network's.

    Args:
      feature_net: the `InceptionNet` (or identity string) the statistics must come from;
        None skips the check (e.g. for pytorch-fid's own .npz files, which record none).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: reference statistics not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:
        raise ConfigError(f"{path}: not a readable .npz file ({type(e).__name__})") from None
    if "mu" not in data or "sigma" not in data:
        raise ConfigError(f"{path}: reference statistics need arrays 'mu' and 'sigma'")
    if feature_net is not None:
        want = _identity(feature_net)
        if "feature_net" not in data:
            raise ConfigError(
                f"{path}: records no feature network (written by another tool?); "
                "pass feature_net=None to use it anyway"
            )
        got = str(data["feature_net"])
        if got != want:
            raise ConfigError(
                f"{path}: statistics of feature network {got!r}, but the current "
                f"one is {want!r}; recompute them with this network"
            )
    return data["mu"], data["sigma"]


def _sqrtm(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # singular products are expected (N < D); handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(a)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}), the Frechet distance of two Gaussians.

    As pytorch-fid: when the square root is not finite (singular product), eps * I is added
    to both covariances; imaginary parts from round-off are dropped, large ones raise.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ConfigError(
            f"frechet_distance: shapes differ: mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}"
        )
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(d)
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise ValueError(f"frechet_distance: sqrt(S1 S2) has imaginary part {imag:.3g}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(feats_a, feats_b) -> float:
    """FID between two feature sets [N, D], [M, D] (Gaussian fits, float64)."""
    a = FeatureStats().update(_features(feats_a, "feats_a"))
    b = FeatureStats().update(_features(feats_b, "feats_b"))
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3; the cross term keeps its diagonal."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / m**2)


def kid(feats_a, feats_b, subset_size: int = 1000, num_subsets: int = 100, seed: int = 0):
    """Kernel Inception Distance: unbiased MMD^2, cubic polynomial kernel, averaged over subsets.

    Each subset draws, from `np.random.default_rng(seed)`, `subset_size` rows of feats_a and then
    of feats_b, without replacement (torch-fidelity's estimator; its random stream differs).

    Returns:
      (mean, std) over the subsets (std with ddof=0, as torch-fidelity).
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"kid: feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if not 2 <= subset_size <= min(len(a), len(b)):
        raise ConfigError(
            f"kid: subset_size={subset_size} needs 2 <= subset_size <= the sample "
            f"counts ({len(a)}, {len(b)}); pass a smaller subset_size"
        )
    rng = np.random.default_rng(seed)
    mmds = []
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), subset_size, replace=False)]
        y = b[rng.choice(len(b), subset_size, replace=False)]
        mmds.append(_mmd2_unbiased(x, y))
    return float(np.mean(mmds)), float(np.std(mmds))


def inception_score(logits, splits: int = 10):
    """Inception Score exp(E_x KL(p(y|x) || p(y))), mean and std over `splits` consecutive parts.

    Softmax over all 1008 logits, as the original TF code (OpenAI's inception_score.py, which
    multiplies pool3 by the softmax weights without the bias) and torch-fidelity's default
    ('logits_unbiased') do; `inception_features` returns exactly those logits. Parts are
    [i N / splits, (i + 1) N / splits) in the given order (no shuffle, as the TF code).

    Args:
      logits: [N, C] logits, N >= splits.
    Returns:
      (mean, std) of the per-part scores (std with ddof=0).
    """
    logits = _features(logits, "logits", min_count=max(splits, 1))
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)  # [N, C]
    n = len(log_p)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]
        p = np.exp(part)
        log_p_y = np.log(p.mean(axis=0))  # marginal class distribution of the part
        scores.append(np.exp(np.mean(np.sum(p * (part - log_p_y), axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


# ---------------------------------------------------------------------------------------------
# Either feature network: the FID Inception, or the offline digits classifier (a proxy)
# ---------------------------------------------------------------------------------------------

load_digits_classifier = feature_net.load_digits_classifier
INCEPTION_METRIC_NAMES = {"frechet_distance": "fid", "kid": "kid", "inception_score": "is"}


def network_features(net, images, batch_size: int = 50):
    """(features, logits) of either feature network for images [B, H, W, C] in [0, 1]."""
    if isinstance(net, feature_net.FeatureNet):
        return feature_net.features(net, images, batch_size)
    return inception_features(net, images, batch_size)


def metric_names(net) -> dict:
    """Names results are reported under: fid/kid/is, or fd_digits/kid_digits/cis_digits."""
    return dict(getattr(net, "metric_names", INCEPTION_METRIC_NAMES))
