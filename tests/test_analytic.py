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


def test_class_posterior_is_bayes_rule_and_its_gradient_closes_the_score_gap():
    """log p_t(k | x) equals Bayes' rule on the perturbed densities, and
    grad_x log p_t(k | x) = score_k(x) - score(x) (the identity classifier guidance uses)."""
    gmm = analytic.toy_gmm()
    sde = sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=1000)
    x = jax.random.normal(jax.random.PRNGKey(3), (64, 2)) * 2.0
    t = jnp.linspace(0.05, 0.9, 64)
    post = gmm.log_class_posterior(sde, x, t)
    np.testing.assert_allclose(np.exp(post).sum(-1), 1.0, atol=1e-5)
    for k in range(len(gmm.weights)):
        comp = analytic.GaussianMixture([1.0], gmm.means[k : k + 1], gmm.stds[k : k + 1])
        bayes = (jnp.log(gmm.weights[k]) + comp.perturbed_log_prob(sde, x, t)
                 - gmm.perturbed_log_prob(sde, x, t))
        np.testing.assert_allclose(post[:, k], bayes, atol=1e-4)
        grad = jax.grad(lambda y, k=k: gmm.log_class_posterior(sde, y, t)[:, k].sum())(x)
        gap = gmm.class_score_fn(sde, k)(x, t) - gmm.score_fn(sde)(x, t)
        np.testing.assert_allclose(grad, gap, rtol=1e-4, atol=1e-4)
