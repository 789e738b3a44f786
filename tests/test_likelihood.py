"""Probability-flow likelihoods against the exact mixture density; bits/dim arithmetic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analytic
import likelihood
import sde_lib

GMM = analytic.toy_gmm()
SDES = {
    "ve": sde_lib.VESDE(0.01, 50.0),
    "vp": sde_lib.VPSDE(0.1, 20.0),
    "subvp": sde_lib.subVPSDE(0.1, 20.0),
}


@pytest.fixture(scope="module")
def data():
    return GMM.sample(jax.random.PRNGKey(0), 128)


@pytest.mark.parametrize("name", SDES)
def test_exact_trace_matches_mixture_log_density(data, name):
    sde = SDES[name]
    ll = likelihood.get_likelihood_fn(sde, hutchinson="exact", rtol=1e-5, atol=1e-5)
    logp, z, nfe = jax.jit(lambda r, x: ll(r, GMM.score_fn(sde), x))(jax.random.PRNGKey(1), data)
    err = np.abs(np.asarray(logp - GMM.log_prob(data)))
    assert err.max() < 0.01 * 2  # 0.01 nats per dimension, 2 dimensions
    assert z.shape == data.shape and int(nfe) > 10


def test_hutchinson_estimators_are_unbiased(data):
    sde = SDES["vp"]
    x = data[:16]
    true = np.asarray(GMM.log_prob(x))
    for kind in ("rademacher", "gaussian"):
        ll = likelihood.get_likelihood_fn(sde, hutchinson=kind, rtol=1e-4, atol=1e-4)
        run = jax.jit(lambda r, ll=ll: ll(r, GMM.score_fn(sde), x)[0])
        est = np.stack([np.asarray(run(jax.random.PRNGKey(k))) for k in range(24)])
        se = est.std(0) / np.sqrt(len(est))
        assert np.all(np.abs(est.mean(0) - true) < 4 * se + 0.02)


def test_a_wrong_score_gives_a_wrong_likelihood(data):
    sde = SDES["vp"]
    shifted = analytic.GaussianMixture(GMM.weights, GMM.means + 0.5, GMM.stds)
    ll = likelihood.get_likelihood_fn(sde, hutchinson="exact")
    logp = jax.jit(lambda x: ll(jax.random.PRNGKey(0), shifted.score_fn(sde), x)[0])(data)
    assert float(jnp.mean(GMM.log_prob(data) - logp)) > 0.1


def test_bits_per_dim_of_uniform_data():
    """Uniform density on [0,1]^D (logp = 0) of 8-bit data is exactly 8 bits/dim; on [-1,1]
    (density 2^-D, so logp = -D ln 2) it is 8 bits/dim as well."""
    d = (4, 4, 3)
    assert float(likelihood.bits_per_dim(jnp.zeros(1), d)[0]) == pytest.approx(8.0)
    logp = jnp.full((1,), -np.prod(d) * np.log(2.0))
    assert float(likelihood.bits_per_dim(logp, d, centered=True)[0]) == pytest.approx(8.0)
    assert float(likelihood.bits_per_dim(jnp.zeros(1), d, num_bins=None)[0]) == 0.0


def test_unknown_estimator_is_an_error():
    from utils import ConfigError

    with pytest.raises(ConfigError, match="eval.hutchinson"):
        likelihood.get_likelihood_fn(SDES["vp"], hutchinson="skilling")
