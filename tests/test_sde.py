"""SDEs against closed forms: marginals vs simulation, prior density vs scipy, discretisations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import sde_lib
from utils import ConfigError

SDES = {
    "ve": lambda: sde_lib.VESDE(sigma_min=0.05, sigma_max=5.0, N=1000),
    "vp": lambda: sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=1000),
    "subvp": lambda: sde_lib.subVPSDE(beta_min=0.1, beta_max=20.0, N=1000),
}


@pytest.mark.parametrize("name", SDES)
def test_marginals_match_euler_maruyama_simulation(name):
    """Simulate dx = f dt + g dw from x(0) = x0 and compare mean/std at t = 0.5 and 1."""
    sde = SDES[name]()
    n, steps = 20000, 2000
    x0 = 1.5
    x = jnp.full((n, 1), x0)
    # VE: the kernel's std is sigma(t), i.e. x(0) already carries sigma_min noise.
    if name == "ve":
        x = x + sde.sigma_min * jax.random.normal(jax.random.PRNGKey(9), x.shape)
    dt = 1.0 / steps
    key = jax.random.PRNGKey(0)

    def step(x, i):
        t = jnp.full((n,), i * dt)
        drift, g = sde.sde(x, t)
        z = jax.random.normal(jax.random.fold_in(key, i), x.shape)
        return x + drift * dt + g[:, None] * np.sqrt(dt) * z, None

    for t_end in (0.5, 1.0):
        xt, _ = jax.lax.scan(step, x, jnp.arange(int(t_end * steps)))
        mean, std = sde.marginal_prob(jnp.full((1, 1), x0), jnp.array([t_end]))
        emp_mean, emp_std = float(jnp.mean(xt)), float(jnp.std(xt))
        se = float(std[0]) / np.sqrt(n)
        assert abs(emp_mean - float(mean[0, 0])) < 5 * se + 0.01 * float(std[0])
        assert abs(emp_std / float(std[0]) - 1) < 0.03


@pytest.mark.parametrize("name", SDES)
def test_prior_logp_matches_scipy(name):
    sde = SDES[name]()
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 3, 4)) * 2.0)
    expected = scipy.stats.norm(0, sde.prior_std()).logpdf(z).reshape(5, -1).sum(1)
    np.testing.assert_allclose(sde.prior_logp(jnp.asarray(z)), expected, rtol=1e-5)
    samples = sde.prior_sampling(jax.random.PRNGKey(2), (20000, 1))
    assert abs(float(jnp.std(samples)) / sde.prior_std() - 1) < 0.03


def test_vp_discretize_is_the_ddpm_update():
    sde = sde_lib.VPSDE(0.1, 20.0, N=1000)
    betas = np.linspace(0.1 / 1000, 20.0 / 1000, 1000)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    for i in (0, 17, 500, 999):
        t = jnp.full((4,), i / 999)
        f, g = sde.discretize(x, t)
        # x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z
        np.testing.assert_allclose(x + f, np.sqrt(1 - betas[i]) * np.asarray(x), rtol=1e-5)
        np.testing.assert_allclose(g, np.sqrt(betas[i]) * np.ones(4), rtol=1e-5)


def test_ve_discretize_is_the_smld_update():
    sde = sde_lib.VESDE(0.01, 50.0, N=10)
    sigmas = np.exp(np.linspace(np.log(0.01), np.log(50.0), 10))
    x = jnp.ones((2, 3))
    for i in range(10):
        f, g = sde.discretize(x, jnp.full((2,), i / 9))
        prev = sigmas[i - 1] if i > 0 else 0.0
        np.testing.assert_allclose(f, 0.0)
        np.testing.assert_allclose(g, np.sqrt(sigmas[i] ** 2 - prev**2) * np.ones(2), rtol=1e-5)


def test_subvp_discretize_is_euler_maruyama():
    sde = sde_lib.subVPSDE(0.1, 20.0, N=100)
    x = jnp.ones((2, 3))
    t = jnp.full((2,), 0.3)
    f, g = sde.discretize(x, t)
    drift, diff = sde.sde(x, t)
    np.testing.assert_allclose(f, drift / 100, rtol=1e-6)
    np.testing.assert_allclose(g, diff * 0.1, rtol=1e-6)


@pytest.mark.parametrize("name", SDES)
def test_reverse_drift_and_probability_flow(name):
    sde = SDES[name]()
    score = lambda x, t: -x
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 2))
    t = jnp.array([0.1, 0.5, 0.9])
    f, g = sde.sde(x, t)
    drift, diff = sde.reverse(score).sde(x, t)
    np.testing.assert_allclose(drift, f + g[:, None] ** 2 * x, rtol=1e-5)
    np.testing.assert_allclose(diff, g)
    drift, diff = sde.reverse(score, probability_flow=True).sde(x, t)
    np.testing.assert_allclose(drift, f + 0.5 * g[:, None] ** 2 * x, rtol=1e-5)
    np.testing.assert_allclose(diff, 0.0)


def test_impossible_values_raise():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        sde_lib.VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="beta_min"):
        sde_lib.VPSDE(beta_min=-1.0)
    with pytest.raises(ValueError, match="N must be"):
        sde_lib.VPSDE(N=0)


def test_ddpm_grid_too_coarse_is_a_named_error():
    sde = sde_lib.VPSDE(0.1, 20.0, N=10)  # beta_max / N = 2: 1 - beta_i < 0
    mean, std = sde.marginal_prob(jnp.ones((2, 3)), jnp.full((2,), 0.5))  # continuous: fine
    assert np.all(np.isfinite(np.asarray(std)))
    with pytest.raises(ConfigError, match="model.num_scales: .* needs beta_max / N < 1"):
        sde.discretize(jnp.ones((2, 3)), jnp.full((2,), 0.5))
    with pytest.raises(ConfigError, match="N > 20"):
        _ = sde_lib.subVPSDE(0.1, 20.0, N=20).alphas
    assert sde_lib.VPSDE(0.1, 20.0, N=21).alphas.min() > 0
