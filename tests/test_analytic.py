"""The mixture oracle itself: log-density vs scipy, score vs autodiff of the perturbed density."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import analytic
import datasets
import sde_lib


def test_log_prob_matches_scipy():
    gmm = analytic.toy_gmm()
    x = np.asarray(gmm.sample(jax.random.PRNGKey(0), 50))
    w, mu, sd = (np.asarray(a) for a in (gmm.weights, gmm.means, gmm.stds))
    dens = sum(
        w[k] * scipy.stats.multivariate_normal(mu[k], np.diag(sd[k] ** 2)).pdf(x)
        for k in range(len(w))
    )
    np.testing.assert_allclose(gmm.log_prob(jnp.asarray(x)), np.log(dens), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sde", [sde_lib.VESDE(0.01, 20.0), sde_lib.VPSDE(), sde_lib.subVPSDE()],
                         ids=["ve", "vp", "subvp"])
def test_score_is_gradient_of_perturbed_log_density(sde):
    gmm = datasets.eight_gaussians()
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 2)) * 3
    t = jax.random.uniform(jax.random.PRNGKey(2), (16,), minval=sde.eps, maxval=1.0)
    auto = jax.grad(lambda v: jnp.sum(gmm.perturbed_log_prob(sde, v, t)))(x)
    np.testing.assert_allclose(gmm.score_fn(sde)(x, t), auto, rtol=1e-4, atol=1e-4)


def test_sampling_moments():
    gmm = analytic.GaussianMixture([0.3, 0.7], [[-1.0], [2.0]], [0.5, 1.0])
    x = np.asarray(gmm.sample(jax.random.PRNGKey(3), 200000))
    assert abs(x.mean() - (0.3 * -1 + 0.7 * 2)) < 0.01
    var = 0.3 * (0.25 + 1) + 0.7 * (1 + 4) - (0.3 * -1 + 0.7 * 2) ** 2
    assert abs(x.var() / var - 1) < 0.01
