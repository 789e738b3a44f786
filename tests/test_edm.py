"""EDM (Karras et al. 2022) against closed forms: the EDM SDE's marginals, the preconditioning of
Table 1, the EDM loss minimised by the exact score, training that learns a mixture's score, and
PC / ODE sampling and exact likelihoods of the exact score on the EDM SDE.
"""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

import analytic
import evaluation
import likelihood
import losses
import sampling
import sde_lib
from models import mlp
from models import utils as mutils
from utils import ConfigError, bcast

GMM = analytic.toy_gmm()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def table1(sigma, sigma_data):
    """Karras et al. (2022), Table 1, in float64: c_skip, c_out, c_in, c_noise."""
    sigma = np.asarray(sigma, np.float64)
    total = sigma**2 + sigma_data**2
    return (sigma_data**2 / total, sigma * sigma_data / np.sqrt(total), 1 / np.sqrt(total),
            np.log(sigma) / 4)


# ---------------------------------------------------------------------------------------------
# The EDM SDE
# ---------------------------------------------------------------------------------------------


def test_edm_sde_coefficients_prior_and_grid():
    sde = sde_lib.EDMSDE(N=200)
    assert (sde.T, sde.eps) == (80.0, 0.002)
    t = jnp.array([0.002, 0.3, 5.0, 80.0])
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    drift, g = sde.sde(x, t)
    assert float(jnp.abs(drift).max()) == 0.0
    np.testing.assert_allclose(g, np.sqrt(2 * np.asarray(t)), rtol=1e-6)
    # d sigma(t)^2 / dt = g(t)^2 (a VE SDE): central differences of the marginal variance
    h = 1e-2
    tt = jnp.array([0.5, 3.0, 40.0])
    dvar = (sde.marginal_coef(tt + h)[1] ** 2 - sde.marginal_coef(tt - h)[1] ** 2) / (2 * h)
    np.testing.assert_allclose(dvar, sde.sde(jnp.zeros((3, 1)), tt)[1] ** 2, rtol=1e-3)
    mean, std = sde.marginal_prob(x, t)
    np.testing.assert_allclose(mean, x)
    np.testing.assert_allclose(std, t)
    z = 80.0 * jax.random.normal(jax.random.PRNGKey(1), (6, 3))
    expected = stats.norm(0.0, 80.0).logpdf(np.asarray(z, np.float64)).sum(axis=1)
    np.testing.assert_allclose(sde.prior_logp(z), expected, rtol=1e-5)
    prior = sde.prior_sampling(jax.random.PRNGKey(2), (20000, 2))
    assert abs(float(prior.std()) / 80.0 - 1) < 0.02
    # the discretisation's increments telescope: the noise added up to level i is sigma_i^2
    grid = jnp.linspace(sde.eps, sde.T, sde.N)
    G = sde.discretize(jnp.zeros((sde.N, 1)), grid)[1]
    np.testing.assert_allclose(np.cumsum(np.asarray(G, np.float64) ** 2), np.asarray(grid) ** 2,
                               rtol=1e-4)


def test_marginals_match_a_simulation_of_the_sde():
    """Simulate dx = sqrt(2 t) dw from t = 0 to 1.5 (midpoint rule, exact for this variance)."""
    sde = sde_lib.EDMSDE()
    x0 = GMM.sample(jax.random.PRNGKey(3), 20000)
    n, t1 = 300, 1.5
    dt = t1 / n

    def step(x, k):
        t_mid = jnp.full((x.shape[0],), (k + 0.5) * dt)
        g = sde.sde(x, t_mid)[1]
        z = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(4), k), x.shape)
        return x + bcast(g, x) * np.sqrt(dt) * z, None

    x1 = jax.lax.scan(step, x0, jnp.arange(n))[0]
    mean, std = sde.marginal_prob(x0, jnp.full((x0.shape[0],), t1))
    r = np.asarray((x1 - mean) / bcast(std, x1))  # should be N(0, I)
    se = 1 / np.sqrt(len(r))
    assert np.all(np.abs(r.mean(0)) < 4 * se)
    assert np.all(np.abs(r.std(0) - 1) < 6 * se)
    # and the simulated data fit the perturbed mixture better than a wrong noise level
    right = GMM.perturbed_log_prob(sde, x1, jnp.full((len(x1),), t1)).mean()
    wrong = GMM.perturbed_log_prob(sde, x1, jnp.full((len(x1),), 1.3 * t1)).mean()
    assert float(right) > float(wrong)


# ---------------------------------------------------------------------------------------------
# Preconditioning (models/utils.py)
# ---------------------------------------------------------------------------------------------


def test_preconditioning_matches_table_1_and_its_derivation():
    sd = 0.5
    sigma = np.array([0.002, 0.1, 0.5, 2.0, 80.0])
    got = [np.asarray(c, np.float64)
           for c in mutils.edm_preconditioning(jnp.asarray(sigma, jnp.float32), sd)]
    for a, b in zip(got, table1(sigma, sd), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    c_skip, c_out, c_in, c_noise = got
    # at sigma = sigma_data by hand: 1/2, sigma_data / sqrt 2, 1 / (sigma_data sqrt 2), ln(.5) / 4
    np.testing.assert_allclose([c_skip[2], c_out[2], c_in[2], c_noise[2]],
                               [0.5, sd / np.sqrt(2), 1 / (sd * np.sqrt(2)), np.log(0.5) / 4],
                               rtol=1e-6)
    # Appendix B.6: unit-variance network input and training target, and unit effective weight
    # lambda c_out^2 = 1 with lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2
    np.testing.assert_allclose(c_in**2 * (sigma**2 + sd**2), 1.0, rtol=1e-5)
    target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2) / c_out**2
    np.testing.assert_allclose(target_var, 1.0, rtol=1e-4)
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    np.testing.assert_allclose(weight * c_out**2, 1.0, rtol=1e-4)
    # limits: D(x) -> x as sigma -> 0; D(x) -> sigma_data F as sigma -> infinity
    assert c_skip[0] > 0.9999 and c_out[0] < 0.0021 and c_skip[-1] < 1e-4
    assert abs(c_out[-1] - sd) < 1e-4


class Probe(nn.Module):
    """No parameters: F(x_in, labels) = 2 x_in + labels (+ class_labels when given)."""

    @nn.compact
    def __call__(self, x, labels, train=False, class_labels=None):
        out = 2.0 * x + labels[:, None]
        if class_labels is not None:
            out = out + class_labels[:, None].astype(x.dtype)
        return out


def _probe_score(x, sigma, sd, y=0.0):
    """(D - x) / sigma^2 with D = c_skip x + c_out F(c_in x, c_noise), in float64."""
    c_skip, c_out, c_in, c_noise = (c[:, None] for c in table1(sigma, sd))
    f = 2.0 * c_in * x + c_noise + np.asarray(y, np.float64).reshape(-1, 1)
    return (c_skip * x + c_out * f - x) / sigma[:, None] ** 2


def test_score_fn_applies_the_preconditioning_plain_and_guided():
    sd = 0.7
    sde = sde_lib.EDMSDE(N=10, sigma_data=sd)
    sigma = np.array([0.01, 0.3, 1.0, 6.0, 70.0])
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (5, 3)), np.float64)
    x = x * np.sqrt(sigma**2 + sd**2)[:, None]
    y = np.array([1.0, 2.0, 0.0, 3.0, 1.0])
    xj, tj = jnp.asarray(x, jnp.float32), jnp.asarray(sigma, jnp.float32)
    plain = mutils.get_score_fn(sde, Probe(), {})(xj, tj)
    np.testing.assert_allclose(plain, _probe_score(x, sigma, sd), rtol=2e-4, atol=1e-6)
    cond = mutils.get_score_fn(sde, Probe(), {}, class_labels=jnp.asarray(y))(xj, tj)
    np.testing.assert_allclose(cond, _probe_score(x, sigma, sd, y), rtol=2e-4, atol=1e-6)
    w = 3.0
    guided = mutils.get_score_fn(sde, Probe(), {}, class_labels=jnp.asarray(y), guidance_scale=w,
                                 null_class_labels=0.0)(xj, tj)
    s_u, s_c = _probe_score(x, sigma, sd), _probe_score(x, sigma, sd, y)
    np.testing.assert_allclose(guided, s_u + w * (s_c - s_u), rtol=2e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The EDM loss (losses.py)
# ---------------------------------------------------------------------------------------------


def _component_score(x, sigma, k):
    """Exact score of mixture component k perturbed to noise level sigma: [B, D]."""
    var = GMM.stds[k] ** 2 + bcast(sigma, x) ** 2
    return -(x - GMM.means[k]) / var


class ScaledTrueScore(nn.Module):
    """A network F whose preconditioned score is c * (exact score); c = 1 is the optimum.

    It undoes the preconditioning: sigma = exp(4 c_noise), x = x_in / c_in, and returns
    F = (D - c_skip x) / c_out for D = x + sigma^2 c s(x). With class_labels k the exact score
    is that of component k alone.
    """

    sde: object

    @nn.compact
    def __call__(self, x_in, labels, train=False, class_labels=None):
        c = self.param("c", nn.initializers.ones, ())
        sd = self.sde.sigma_data
        sigma = jnp.exp(4.0 * labels)
        total = sigma**2 + sd**2
        x = x_in * bcast(jnp.sqrt(total), x_in)
        if class_labels is None:
            score = GMM.score_fn(self.sde)(x, sigma)
        else:
            score = _component_score(x, sigma, class_labels)
        denoised = x + bcast(sigma**2, x) * c * score
        c_skip, c_out = sd**2 / total, sigma * sd / jnp.sqrt(total)
        return (denoised - bcast(c_skip, x) * x) / bcast(c_out, x)


def _minimiser(loss_fn, batch):
    """The mean loss at c = 0.8, 1, 1.25 and the minimiser of the parabola through them (the
    loss is quadratic in c: D, hence the residual D - x, is affine in c)."""
    cs = np.array([0.8, 1.0, 1.25])
    mean_loss = jax.jit(jax.vmap(
        lambda c: jnp.mean(loss_fn(jax.random.PRNGKey(1), {"c": c}, batch))))
    values = np.asarray(mean_loss(jnp.asarray(cs)), np.float64)
    a, b, _ = np.polyfit(cs, values, 2)
    return values, a, -b / (2 * a)


def test_exact_score_minimises_the_edm_loss():
    sde = sde_lib.EDMSDE(sigma_data=0.5)
    loss_fn = losses.get_loss_fn(sde, ScaledTrueScore(sde), train=False, method="edm")
    batch = GMM.sample(jax.random.PRNGKey(0), 20000)
    (lo, at1, hi), curv, c_min = _minimiser(loss_fn, batch)
    assert curv > 0 and abs(c_min - 1) < 0.05  # the sample minimiser is within 5% of c = 1
    assert at1 < min(lo, hi)
    # a dict batch gives the same terms as the bare array
    a = loss_fn(jax.random.PRNGKey(2), {"c": jnp.array(0.9)}, batch[:64])
    b = loss_fn(jax.random.PRNGKey(2), {"c": jnp.array(0.9)}, {"x": batch[:64]})
    np.testing.assert_allclose(a, b)


def test_edm_loss_passes_the_condition_to_the_network():
    """With class labels the optimum is the score of each example's own component."""
    sde = sde_lib.EDMSDE(sigma_data=0.5)
    loss_fn = losses.get_loss_fn(sde, ScaledTrueScore(sde), train=False, method="edm")
    n = 20000
    k = jax.random.choice(jax.random.PRNGKey(6), 4, (n,), p=GMM.weights)
    x = GMM.means[k] + GMM.stds[k] * jax.random.normal(jax.random.PRNGKey(7), (n, 2))
    (lo, at1, hi), curv, c_min = _minimiser(loss_fn, {"x": x, "class_labels": k})
    assert curv > 0 and abs(c_min - 1) < 0.05 and at1 < min(lo, hi)


def test_edm_loss_weight_and_reduction():
    """Per example: lambda(sigma) mean_d (D - x)^2, with the sigma the loss drew."""
    sde = sde_lib.EDMSDE(sigma_data=0.5)
    batch = GMM.sample(jax.random.PRNGKey(0), 8)
    rng = jax.random.PRNGKey(9)
    s_rng, n_rng, _ = jax.random.split(rng, 3)
    sigma = np.exp(-1.2 + 1.2 * np.asarray(jax.random.normal(s_rng, (8,)), np.float64))
    noise = np.asarray(jax.random.normal(n_rng, batch.shape), np.float64)
    x0 = np.asarray(batch, np.float64)
    # the zero network F = 0 has D = c_skip (x + sigma n)
    c_skip = table1(sigma, 0.5)[0][:, None]
    d = c_skip * (x0 + sigma[:, None] * noise)
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    expected = weight * np.mean((d - x0) ** 2, axis=1)

    class Zero(nn.Module):
        @nn.compact
        def __call__(self, x, labels, train=False):
            return jnp.zeros_like(x)

    got = losses.get_loss_fn(sde, Zero(), False, method="edm")(rng, {}, batch)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    summed = losses.get_loss_fn(sde, Zero(), False, method="edm", reduce_mean=False)
    np.testing.assert_allclose(summed(rng, {}, batch), 2 * expected, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Training learns the score
# ---------------------------------------------------------------------------------------------


SIGMAS = (0.1, 0.3, 1.0)


def _score_errors(score_fn, n=4000):
    """E sigma^2 |s(x_t) - s*(x_t)|^2 over x_t ~ p_sigma (the denoiser error / sigma^2), for
    each sigma in SIGMAS, in one jitted call: [len(SIGMAS)]."""
    exact = GMM.score_fn(sde_lib.EDMSDE())
    x0 = jnp.tile(GMM.sample(jax.random.PRNGKey(11), n), (len(SIGMAS), 1))
    t = jnp.repeat(jnp.asarray(SIGMAS), n)
    x = x0 + bcast(t, x0) * jax.random.normal(jax.random.PRNGKey(12), x0.shape)

    @jax.jit
    def errors(x, t):
        sq = jnp.sum((score_fn(x, t) - exact(x, t)) ** 2, axis=1) * t**2
        return jnp.mean(sq.reshape(len(SIGMAS), n), axis=1)

    return np.asarray(errors(x, t))


def test_edm_training_learns_the_mixture_score():
    """600 steps of the EDM loss on a small MLP: the loss nears that of the exact score and the
    learnt score is far closer to the exact one than the best Gaussian fit's is."""
    sde = sde_lib.EDMSDE(sigma_data=2.0)  # about the data's std
    model = mlp.ScoreMLP(nf=64, num_res_blocks=2, embedding_type="positional")
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros((1,)))["params"]
    opt = losses.get_optimizer(lr=3e-3, warmup=0, grad_clip=1.0, schedule="cosine",
                               total_steps=600)
    loss_fn = losses.get_loss_fn(sde, model, True, method="edm")
    step = jax.jit(losses.get_multi_step_fn(losses.get_step_fn(loss_fn, opt, 0.99),
                                            jax.random.PRNGKey(1)))
    held_out = GMM.sample(jax.random.PRNGKey(50), 20000)
    mean_loss = jax.jit(lambda p: jnp.mean(loss_fn(jax.random.PRNGKey(3), p, held_out)))
    state = losses.init_train_state(params, opt)
    initial = float(mean_loss(state.params))
    for k in range(6):
        batches = GMM.sample(jax.random.PRNGKey(100 + k), 100 * 256).reshape(100, 256, 2)
        state = step(state, batches)[0]
    # the same draws of sigma and noise under the exact score: the loss's minimum
    exact = losses.get_loss_fn(sde, ScaledTrueScore(sde), False, method="edm")
    floor = float(jax.jit(lambda b: jnp.mean(exact(jax.random.PRNGKey(3), {"c": 1.0}, b)))(
        held_out))
    final = float(mean_loss(state.params))
    assert floor < final < floor + 0.1 * (initial - floor), (initial, final, floor)
    trained = mutils.get_score_fn(sde, model, {"params": state.params})
    # baseline: the exact score of the best axis-aligned Gaussian fit of the data
    data = GMM.sample(jax.random.PRNGKey(13), 100000)
    gauss = analytic.GaussianMixture([1.0], data.mean(0, keepdims=True), data.std(0)[None])
    err, base = _score_errors(trained), _score_errors(gauss.score_fn(sde))
    assert np.all(err < 0.25 * base), (err, base)


# ---------------------------------------------------------------------------------------------
# Sampling and likelihood of the exact score on the EDM SDE
# ---------------------------------------------------------------------------------------------

N_SAMPLES = 2000


@pytest.fixture(scope="module")
def truth():
    ref = GMM.sample(jax.random.PRNGKey(1000), N_SAMPLES)
    spread = [float(evaluation.energy_distance(GMM.sample(jax.random.PRNGKey(2000 + i),
                                                          N_SAMPLES), ref)) for i in range(8)]
    return ref, max(spread)


@pytest.mark.parametrize("predictor,corrector", [("reverse_diffusion", "langevin"),
                                                 ("euler_maruyama", "none")])
def test_pc_sampler_reproduces_the_mixture(truth, predictor, corrector):
    ref, spread = truth
    sde = sde_lib.EDMSDE(N=500)
    sampler = sampling.get_pc_sampler(sde, (N_SAMPLES, 2), predictor, corrector, snr=0.16)
    x, nfe = jax.jit(lambda r: sampler(r, GMM.score_fn(sde)))(jax.random.PRNGKey(7))
    assert nfe == 500 * ((predictor != "none") + (corrector != "none"))
    assert float(evaluation.energy_distance(x, ref)) <= spread


def test_probability_flow_ode_reproduces_the_mixture(truth):
    ref, spread = truth
    sde = sde_lib.EDMSDE()
    sampler = sampling.get_ode_sampler(sde, (N_SAMPLES, 2), rtol=1e-5, atol=1e-5)
    x, nfe = jax.jit(lambda r: sampler(r, GMM.score_fn(sde)))(jax.random.PRNGKey(7))
    assert 20 < int(nfe) < 1000
    assert float(evaluation.energy_distance(x, ref)) <= spread


def test_exact_likelihood_matches_the_mixture_density():
    sde = sde_lib.EDMSDE()
    data = GMM.sample(jax.random.PRNGKey(0), 64)
    ll = likelihood.get_likelihood_fn(sde, hutchinson="exact", rtol=1e-5, atol=1e-5)
    logp, z, nfe = jax.jit(lambda r, x: ll(r, GMM.score_fn(sde), x))(jax.random.PRNGKey(1), data)
    err = np.abs(np.asarray(logp - GMM.log_prob(data)))
    assert err.max() < 0.01 * 2  # 0.01 nats per dimension
    # z = x(T) is (nearly) a draw from the N(0, 80^2 I) prior
    assert abs(float(jnp.std(z)) / 80.0 - 1) < 0.25 and int(nfe) > 10


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def _config(**model):
    c = ml_collections.ConfigDict()
    c.training = dict(sde="edmsde")
    c.model = dict(dict(num_scales=100, sigma_min=0.002, sigma_max=80.0, sigma_data=0.5,
                        beta_min=0.1, beta_max=20.0, embedding_type="positional"), **model)
    return c


def test_config_builds_the_edm_sde_and_rejects_bad_fields():
    sde = sde_lib.get_sde(_config(sigma_data=0.6, sigma_max=20.0))
    assert isinstance(sde, sde_lib.EDMSDE)
    assert (sde.T, sde.eps, sde.sigma_data, sde.N) == (20.0, 0.002, 0.6, 100)
    for bad, match in [(dict(sigma_data=0.0), "model.sigma_data"),
                       (dict(sigma_min=90.0), "model.sigma_min"),
                       (dict(embedding_type="fourier"), "model.embedding_type")]:
        with pytest.raises(ConfigError, match=match):
            sde_lib.get_sde(_config(**bad))
    with pytest.raises(ValueError):
        sde_lib.EDMSDE(sigma_min=0.0)


def test_edm_loss_needs_the_edm_sde_and_valid_fields():
    with pytest.raises(ConfigError, match="training.method='edm' needs training.sde='edmsde'"):
        losses.get_loss_fn(sde_lib.VPSDE(), None, False, method="edm")
    edm = sde_lib.EDMSDE()
    with pytest.raises(ConfigError, match="training.P_std must be > 0"):
        losses.get_loss_fn(edm, None, False, method="edm", P_std=0.0)
    with pytest.raises(ConfigError, match="training.continuous"):
        losses.get_loss_fn(edm, None, False, method="edm", continuous=False)
    with pytest.raises(ConfigError, match="training.continuous=False is not defined"):
        mutils.get_parameterization(edm, continuous=False)


def test_cli_reports_a_wrong_sde_in_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "main.py", "--config", "configs/toy/vp_gmm.py",
         "--config.training.method=edm", "--workdir", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "training.method='edm' needs training.sde='edmsde'" in out.stderr
    assert "Traceback" not in out.stderr
