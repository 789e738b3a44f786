"""Controllable generation against exact conditionals: the full-covariance mixture's closed-form
conditional, inpainting by replacement / RePaint / fast samplers, colourisation and SDEdit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import analytic
import controllable
import evaluation
import fast_sampling
import sampling
import sde_lib
from utils import ConfigError

VP = sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=200)
VE = sde_lib.VESDE(sigma_min=0.01, sigma_max=20.0, N=200)
N = 500


def test_full_mixture_score_is_the_gradient_of_its_log_density():
    gmm = analytic.correlated_mixture(4)
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 4)) * 2
    for sde in (VP, VE):
        t = jnp.linspace(0.02, 0.9, 16)
        grad = jax.grad(lambda y, sde=sde, t=t: gmm.perturbed_log_prob(sde, y, t).sum())(x)
        np.testing.assert_allclose(gmm.score_fn(sde)(x, t), grad, rtol=2e-3, atol=2e-3)
    ref = [scipy.stats.multivariate_normal(m, c).logpdf(np.asarray(x))
           for m, c in zip(gmm.np_means, gmm.np_covs, strict=True)]
    want = np.log(np.sum(gmm.np_weights[:, None] * np.exp(np.stack(ref)), axis=0))
    np.testing.assert_allclose(gmm.log_prob(x), want, rtol=1e-4, atol=1e-4)


def test_conditional_against_the_joint_precision_and_bayes_rule():
    """Conditional moments from the joint precision (not the Schur complement the code uses),
    weights from scipy's marginal densities of the known block."""
    gmm = analytic.correlated_mixture(5, seed=3)
    a_idx, a = np.array([0, 3]), np.array([0.4, -1.1])
    cond, b_idx = gmm.conditional(a_idx, a)
    np.testing.assert_array_equal(b_idx, [1, 2, 4])
    logw = []
    for k in range(3):
        mu, c = gmm.np_means[k], gmm.np_covs[k]
        prec = np.linalg.inv(c)
        p_bb, p_ba = prec[np.ix_(b_idx, b_idx)], prec[np.ix_(b_idx, a_idx)]
        np.testing.assert_allclose(cond.np_covs[k], np.linalg.inv(p_bb), rtol=1e-8, atol=1e-10)
        mean = mu[b_idx] - np.linalg.solve(p_bb, p_ba @ (a - mu[a_idx]))
        np.testing.assert_allclose(cond.np_means[k], mean, rtol=1e-8, atol=1e-10)
        marg = scipy.stats.multivariate_normal(mu[a_idx], c[np.ix_(a_idx, a_idx)])
        logw.append(np.log(gmm.np_weights[k]) + marg.logpdf(a))
    w = np.exp(np.array(logw) - max(logw))
    np.testing.assert_allclose(cond.np_weights, w / w.sum(), rtol=1e-8)


def _inpaint_case(dim):
    gmm = analytic.correlated_mixture(dim)
    a_idx = np.arange(dim // 2)
    a = np.asarray(gmm.sample(jax.random.PRNGKey(5), 1))[0, a_idx]
    cond, b_idx = gmm.conditional(a_idx, a)
    truth = cond.sample(jax.random.PRNGKey(1), N)
    unconditional = gmm.marginal(b_idx).sample(jax.random.PRNGKey(2), N)
    y = jnp.zeros((N, dim)).at[:, a_idx].set(jnp.asarray(a, jnp.float32))
    mask = np.zeros(dim, np.float32)
    mask[a_idx] = 1.0
    return gmm, a, a_idx, b_idx, truth, float(evaluation.energy_distance(unconditional, truth)), \
        y, mask


INPAINT_METHODS = {  # name -> (method, kwargs)
    "replacement RD": ("pc", dict(predictor="reverse_diffusion", corrector="none")),
    "replacement RD + Langevin": ("pc", dict(predictor="reverse_diffusion", corrector="langevin")),
    "replacement ancestral": ("pc", dict(predictor="ancestral_sampling", corrector="none")),
    "RePaint r=5": ("pc", dict(predictor="reverse_diffusion", corrector="none", jump_length=10,
                               resample_times=5)),
    "DPM-Solver++(2M) 20": ("dpm_solver++", dict(steps=20)),
    "DDIM eta=1, 50": ("ddim", dict(steps=50, eta=1.0)),
}


@pytest.mark.parametrize("dim", [2, 16])
def test_every_inpainting_method_beats_unconditional_samples(dim):
    """On a mixture whose components correlate the known and unknown coordinates, each method's
    samples of x_B are closer to the exact p(x_B | x_A) than unconditional ones, the known
    coordinates are exact, and RePaint's resampling removes most of plain replacement's bias."""
    gmm, a, a_idx, b_idx, truth, uncond, y, mask = _inpaint_case(dim)
    dist = {}
    for name, (method, kw) in INPAINT_METHODS.items():
        sampler = controllable.get_inpaint_sampler(VP, y, mask, method, **kw)
        x, _ = jax.jit(lambda r, s=sampler: s(r, gmm.score_fn(VP)))(jax.random.PRNGKey(3))
        x = np.asarray(x)
        np.testing.assert_array_equal(x[:, a_idx], np.broadcast_to(y[:, a_idx], x[:, a_idx].shape))
        dist[name] = float(evaluation.energy_distance(x[:, b_idx], truth))
    far = {k: v for k, v in dist.items() if not v < 0.5 * uncond}
    assert not far, f"not closer than unconditional ({uncond:.3f}): {far}"
    assert dist["RePaint r=5"] < 0.5 * dist["replacement RD"], dist


def test_repaint_schedule_and_its_nfe():
    """Jumps of L steps at the levels 0, L, 2L, ... below N - L, r - 1 times each, so the walk
    has N + (r - 1) L ceil((N - L) / L) reverse steps."""
    ops = controllable.repaint_schedule(30, 10, 3)
    steps, jumps = ops[ops[:, 1] > ops[:, 0]], ops[ops[:, 1] < ops[:, 0]]
    assert ops[0, 0] == 0 and ops[-1, 1] == 30
    np.testing.assert_array_equal(ops[1:, 0], ops[:-1, 1])  # a connected path
    assert np.all(jumps[:, 0] - jumps[:, 1] == 10) and len(jumps) == 2 * 2
    assert len(steps) == 30 + 2 * 10 * 2
    y, mask = jnp.zeros((4, 2)), np.array([1.0, 0.0], np.float32)
    s = controllable.get_inpaint_sampler(VP, y, mask, "pc", predictor="reverse_diffusion",
                                         corrector="langevin", jump_length=10, resample_times=3)
    _, nfe = s(jax.random.PRNGKey(0), analytic.toy_gmm().score_fn(VP))
    assert nfe == 2 * (200 + 2 * 10 * 19)  # predictor + corrector per reverse step


def test_hooks_off_leave_the_samplers_bit_identical():
    score = analytic.toy_gmm().score_fn(VP)
    rng = jax.random.PRNGKey(4)
    a = sampling.get_pc_sampler(VP, (64, 2))(rng, score)[0]
    b = sampling.get_pc_sampler(VP, (64, 2), project=None, t_start=None)(rng, score)[0]
    np.testing.assert_array_equal(a, b)
    for method in ("dpm_solver++", "unipc", "edm_heun"):
        a = fast_sampling.get_fast_sampler(VP, (64, 2), method, 10)(rng, score)[0]
        b = fast_sampling.get_fast_sampler(VP, (64, 2), method, 10, project=None)(rng, score)[0]
        np.testing.assert_array_equal(a, b)


def test_colourisation_keeps_the_grey_image():
    m = controllable.COLOR_MATRIX
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-6)
    x = jax.random.uniform(jax.random.PRNGKey(0), (3, 4, 4, 3))
    c = controllable.decouple(x)
    np.testing.assert_allclose(c[..., 0], controllable.GREY_SCALE * x.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(controllable.couple(c), x, atol=1e-6)
    # a 12-D diagonal mixture stands for 2x2 RGB images; its exact score drives the sampler
    gmm = analytic.GaussianMixture([0.5, 0.5], np.stack([np.full(12, -0.5), np.full(12, 0.5)]),
                                   [0.3, 0.3])
    score = lambda v, t: gmm.score_fn(VP)(v.reshape(v.shape[0], -1), t).reshape(v.shape)
    grey = jax.random.uniform(jax.random.PRNGKey(1), (8, 2, 2), minval=-0.5, maxval=0.5)
    for method, kw in (("pc", {}), ("dpm_solver++", {"steps": 10})):
        s = controllable.get_colorize_sampler(VP, grey, (8, 2, 2, 3), method, **kw)
        out, _ = jax.jit(lambda r, s=s: s(r, score))(jax.random.PRNGKey(2))
        np.testing.assert_allclose(out.mean(-1), grey, atol=1e-5)
        assert float(jnp.std(out - out.mean(-1, keepdims=True))) > 1e-3  # colour was generated


def test_sdedit_strength_zero_and_one():
    gmm = analytic.toy_gmm()
    guide = jnp.tile(jnp.array([[3.0, -3.0]]), (N, 1))
    score = gmm.score_fn(VP)
    for method, kw in (("pc", {}), ("dpm_solver++", {"steps": 10}), ("ode", {})):
        x, nfe = controllable.get_sdedit_sampler(VP, guide, 0.0, method, **kw)(
            jax.random.PRNGKey(0), score)
        np.testing.assert_array_equal(x, guide)
        assert nfe == 0
    truth = gmm.sample(jax.random.PRNGKey(1), N)
    spread = max(float(evaluation.energy_distance(gmm.sample(jax.random.PRNGKey(20 + i), N),
                                                  truth)) for i in range(6))
    s = controllable.get_sdedit_sampler(VP, guide, 1.0, "pc", corrector="none")
    x, _ = jax.jit(lambda r: s(r, score))(jax.random.PRNGKey(2))
    assert float(evaluation.energy_distance(x, truth)) <= 1.5 * spread
    # half strength stays nearer the guide than unconditional samples are
    s = controllable.get_sdedit_sampler(VP, guide, 0.3, "dpm_solver++", steps=10)
    x_half, _ = jax.jit(lambda r: s(r, score))(jax.random.PRNGKey(3))
    assert float(jnp.mean(jnp.linalg.norm(x_half - guide, axis=-1))) < \
        float(jnp.mean(jnp.linalg.norm(x - guide, axis=-1)))


@pytest.mark.parametrize("call, key", [
    (lambda: controllable.get_mask("top_half", (8, 8, 1)), "sampling.mask"),
    (lambda: controllable.get_mask(np.ones((4, 4)), (8, 8, 1)), "sampling.mask"),
    (lambda: controllable.get_sdedit_sampler(VP, jnp.zeros((2, 2)), 1.5), "sampling.strength"),
    (lambda: controllable.get_inpaint_sampler(VP, jnp.zeros((2, 2)), np.ones(2), "pc",
                                              jump_length=0, resample_times=2),
     "sampling.jump_length"),
    (lambda: controllable.get_inpaint_sampler(VP, jnp.zeros((2, 2)), np.ones(2), "pc",
                                              resample_times=0), "sampling.resample_times"),
    (lambda: controllable.get_inpaint_sampler(VP, jnp.zeros((2, 2)), np.ones(2), "ddim",
                                              steps=10, resample_times=3),
     "sampling.resample_times"),
    (lambda: controllable.get_colorize_sampler(VP, jnp.zeros((2, 4, 4)), (2, 4, 4, 1)),
     "data.num_channels"),
    (lambda: controllable.get_inpaint_sampler(VP, jnp.zeros((2, 2)), np.ones(2), "euler"),
     "sampling.method"),
])
def test_bad_input_is_one_line(call, key):
    with pytest.raises(ConfigError) as err:
        call()
    assert key in str(err.value) and "\n" not in str(err.value)
