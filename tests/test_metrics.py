"""FID / KID / IS and feature statistics (evaluation.py) against closed forms and direct numpy."""

import numpy as np
import pytest

import evaluation
from utils import ConfigError


def _spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _trace_sqrt_product(s1, s2):
    """tr((S1 S2)^{1/2}) = sum of sqrt(eig(S1^{1/2} S2 S1^{1/2})), via symmetric eigh only."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(w)) @ v.T
    return np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)))


# --- FID -------------------------------------------------------------------------------------


def test_frechet_distance_of_a_gaussian_with_itself_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(16), _spd(rng, 16)
    assert abs(evaluation.frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8) + 2.0  # shifted
    v1, v2 = rng.uniform(0.5, 2, 8), 3.0 * rng.uniform(0.5, 2, 8)  # scaled
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = evaluation.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_frechet_distance_full_covariances():
    rng = np.random.default_rng(2)
    mu1, mu2, s1, s2 = (
        rng.standard_normal(32),
        rng.standard_normal(32),
        _spd(rng, 32),
        _spd(rng, 32),
    )
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * _trace_sqrt_product(s1, s2)
    np.testing.assert_allclose(evaluation.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-9)


def test_fid_of_features_uses_mean_and_unbiased_covariance():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((500, 6))
    b = 1.5 * rng.standard_normal((400, 6)) + 0.5
    expected = evaluation.frechet_distance(
        a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    )
    np.testing.assert_allclose(evaluation.fid(a, b), expected, rtol=1e-12)
    # large samples approach the population value of N(0, I) vs N(0.5, 1.5^2 I)
    population = 6 * 0.5**2 + 6 * (1 + 1.5**2 - 2 * 1.5)
    assert abs(evaluation.fid(a, b) - population) < 0.3


def test_fid_with_singular_covariances_is_finite():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((5, 12))  # 5 samples in 12 dimensions: rank-4 covariance
    value = evaluation.fid(a, a)
    assert np.isfinite(value) and abs(value) < 1e-3


def test_frechet_distance_shape_mismatch():
    with pytest.raises(ConfigError, match="shapes differ"):
        evaluation.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --- streaming statistics --------------------------------------------------------------------


def test_streaming_statistics_match_numpy():
    rng = np.random.default_rng(5)
    feats = 1e3 + rng.standard_normal((211, 9)).astype(np.float32)  # far-from-zero mean
    stats = evaluation.FeatureStats()
    for lo, hi in ((0, 1), (1, 8), (8, 108), (108, 111), (111, 211)):
        stats.update(feats[lo:hi])
    assert stats.n == 211
    ref = feats.astype(np.float64)
    np.testing.assert_allclose(stats.mean, ref.mean(0), rtol=1e-13)
    np.testing.assert_allclose(stats.cov, np.cov(ref, rowvar=False), rtol=1e-9, atol=1e-12)
    assert stats.mean.dtype == stats.cov.dtype == np.float64
    with pytest.raises(ConfigError, match="dimension 4"):
        stats.update(np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="at least 2 samples"):
        _ = evaluation.FeatureStats().update(np.zeros((1, 3))).cov


def test_reference_statistics_round_trip_and_identity_check(tmp_path):
    path = str(tmp_path / "ref_stats.npz")
    mu, sigma = np.arange(3.0), np.eye(3)
    evaluation.save_statistics(path, mu, sigma, feature_net="net-A", num_samples=10)
    got_mu, got_sigma = evaluation.load_statistics(path, feature_net="net-A")
    np.testing.assert_array_equal(got_mu, mu)
    np.testing.assert_array_equal(got_sigma, sigma)
    with pytest.raises(ConfigError, match="'net-A', but the current one is 'net-B'"):
        evaluation.load_statistics(path, feature_net="net-B")
    foreign = str(tmp_path / "pytorch_fid_stats.npz")
    np.savez(foreign, mu=mu, sigma=sigma)  # written by another tool: no identity
    with pytest.raises(ConfigError, match="records no feature network"):
        evaluation.load_statistics(foreign, feature_net="net-A")
    assert evaluation.load_statistics(foreign, feature_net=None)[0].shape == (3,)
    with pytest.raises(ConfigError, match="absent.npz: reference statistics not found"):
        evaluation.load_statistics(str(tmp_path / "absent.npz"), feature_net="net-A")


# --- KID -------------------------------------------------------------------------------------


def _mmd2_direct(x, y):
    """Unbiased MMD^2 with k(u, v) = (u.v / d + 1)^3, summed pair by pair."""
    m, d = x.shape
    k = lambda u, v: (np.dot(u, v) / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / m**2


def test_kid_with_whole_sets_equals_direct_mmd():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((20, 5)), rng.standard_normal((20, 5)) + 0.3
    mean, std = evaluation.kid(a, b, subset_size=20, num_subsets=3)  # subsets are permutations
    np.testing.assert_allclose(mean, _mmd2_direct(a, b), rtol=1e-10)
    assert std < 1e-12


def test_kid_subsets_follow_the_documented_sampling():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((30, 4)), 1.2 * rng.standard_normal((25, 4))
    draw = np.random.default_rng(11)
    mmds = []
    for _ in range(4):
        x = a[draw.choice(30, 12, replace=False)]
        y = b[draw.choice(25, 12, replace=False)]
        mmds.append(_mmd2_direct(x, y))
    mean, std = evaluation.kid(a, b, subset_size=12, num_subsets=4, seed=11)
    np.testing.assert_allclose([mean, std], [np.mean(mmds), np.std(mmds)], rtol=1e-10)


def test_kid_is_unbiased_near_zero_for_one_distribution():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    same, same_std = evaluation.kid(a, b, subset_size=200, num_subsets=20)
    shifted, _ = evaluation.kid(a, b + 1.0, subset_size=200, num_subsets=20)
    assert abs(same) < 3 * same_std + 1e-3 and shifted > 10 * abs(same)


def test_kid_needs_enough_samples():
    with pytest.raises(ConfigError, match="subset_size=1000"):
        evaluation.kid(np.zeros((500, 4)), np.zeros((2000, 4)))
    with pytest.raises(ConfigError, match="dimensions differ"):
        evaluation.kid(np.zeros((50, 4)), np.zeros((50, 5)), subset_size=10)


# --- IS --------------------------------------------------------------------------------------


def _inception_score_direct(logits, splits):
    scores = []
    n = len(logits)
    for i in range(splits):
        part = logits[i * n // splits : (i + 1) * n // splits]
        p = np.exp(part - part.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p_y = p.mean(0)
        kl = [sum(px[c] * np.log(px[c] / p_y[c]) for c in range(len(p_y))) for px in p]
        scores.append(np.exp(np.mean(kl)))
    return np.mean(scores), np.std(scores)


def test_inception_score_equals_direct_numpy():
    logits = 3 * np.random.default_rng(9).standard_normal((53, 12))
    got = evaluation.inception_score(logits, splits=4)
    np.testing.assert_allclose(got, _inception_score_direct(logits, 4), rtol=1e-10)


def test_inception_score_closed_forms():
    assert evaluation.inception_score(np.zeros((20, 1008)), splits=2) == pytest.approx((1.0, 0.0))
    confident = 50.0 * np.tile(np.eye(10), (3, 1))  # each part: 10 classes, 3 images each
    mean, std = evaluation.inception_score(confident, splits=3)
    assert mean == pytest.approx(10.0, rel=1e-6) and std < 1e-6


def test_inception_score_needs_enough_samples():
    with pytest.raises(ConfigError, match="N >= 10"):
        evaluation.inception_score(np.zeros((5, 1008)))
