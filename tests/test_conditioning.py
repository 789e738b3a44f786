"""Classifier-free guidance in models/utils.py against its formula, and conditional scores
through every sampler: with the exact score of one component of a Gaussian mixture as the
'conditional network' (context = the component), samples land on that component."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analytic
import evaluation
import sampling
import sde_lib
from models import utils as mutils
from utils import ConfigError

N = 1500
GMM = analytic.toy_gmm()
K = len(GMM.weights)


class ComponentNet:
    """A stand-in network: context [B, 1, K] one-hot picks a mixture component, whose exact
    score it returns in the network convention of the SDE (VE: the score; VP: -std * score).
    An all-zero context means 'no condition': the whole mixture's score. Counts its calls."""

    def __init__(self, sde):
        self.sde, self.calls, self.batches = sde, 0, []
        self.parts = [analytic.GaussianMixture(jnp.ones((1,)), GMM.means[k:k + 1],
                                               GMM.stds[k:k + 1]).score_fn(sde)
                      for k in range(K)]
        self.whole = GMM.score_fn(sde)

    def time(self, labels):
        if isinstance(self.sde, sde_lib.VESDE):  # labels are sigma(t) = smin (smax/smin)^t
            s = self.sde
            return jnp.log(labels / s.sigma_min) / jnp.log(s.sigma_max / s.sigma_min)
        return labels / 999.0

    def apply(self, variables, x, labels, train=False, rngs=None, context=None,
              context_mask=None):
        self.calls += 1
        self.batches.append(x.shape[0])
        t = self.time(labels)
        onehot = context[:, 0, :]  # [B, K]
        scores = jnp.stack([f(x, t) for f in self.parts], axis=1)  # [B, K, D]
        cond = jnp.einsum("bk,bkd->bd", onehot, scores)
        none = (jnp.sum(onehot, axis=1, keepdims=True) == 0).astype(x.dtype)
        score = cond + none * self.whole(x, t)
        if isinstance(self.sde, sde_lib.VESDE):
            return score
        std = self.sde.marginal_prob(x, t)[1]
        return -std[:, None] * score


def onehot(k, n):
    return jnp.broadcast_to(jax.nn.one_hot(k, K)[None, None], (n, 1, K))


NULL = jnp.zeros((1, K))


@pytest.mark.parametrize("w", [0.0, 1.0, 2.5, 7.5])
def test_guidance_is_the_formula_in_one_batched_call(w):
    sde = sde_lib.VPSDE(0.1, 20.0, N=100)
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 2)) * 2
    t = jnp.linspace(0.05, 0.9, 6)
    net = ComponentNet(sde)
    ctx = jnp.concatenate([onehot(0, 3), onehot(2, 3)])
    cond = mutils.get_score_fn(sde, net, {}, context=ctx)(x, t)
    uncond = mutils.get_score_fn(sde, net, {}, context=jnp.zeros_like(ctx))(x, t)
    net.calls, net.batches = 0, []
    guided = mutils.get_score_fn(sde, net, {}, context=ctx, guidance_scale=w,
                                 null_context=NULL)(x, t)
    assert net.calls == 1 and net.batches == [12]
    np.testing.assert_allclose(guided, uncond + w * (cond - uncond), rtol=1e-5, atol=1e-5)
    if w == 1.0:
        np.testing.assert_allclose(guided, cond, rtol=1e-5, atol=1e-6)
    if w == 0.0:
        np.testing.assert_allclose(guided, uncond, rtol=1e-5, atol=1e-6)
    # the conditional and unconditional halves really differ here (the test can fail)
    assert float(jnp.max(jnp.abs(cond - uncond))) > 0.1


def test_traced_guidance_scale_and_bad_inputs():
    sde = sde_lib.VPSDE(0.1, 20.0, N=100)
    net = ComponentNet(sde)
    x, t = jnp.ones((2, 2)), jnp.full((2,), 0.5)
    ctx = onehot(1, 2)
    f = jax.jit(lambda w: mutils.get_score_fn(sde, net, {}, context=ctx, guidance_scale=w,
                                              null_context=NULL)(x, t))
    ref = mutils.get_score_fn(sde, net, {}, context=ctx, guidance_scale=3.0,
                              null_context=NULL)(x, t)
    np.testing.assert_allclose(f(3.0), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="guidance_scale"):
        mutils.get_score_fn(sde, net, {}, context=ctx, guidance_scale=-1.0, null_context=NULL)
    with pytest.raises(ConfigError, match="null_context"):
        mutils.get_score_fn(sde, net, {}, context=ctx, guidance_scale=2.0)(x, t)


@pytest.fixture(scope="module")
def truth():
    """Per component: reference samples and the largest true-vs-true energy distance."""
    out = []
    for k in range(K):
        part = analytic.GaussianMixture(jnp.ones((1,)), GMM.means[k:k + 1], GMM.stds[k:k + 1])
        ref = part.sample(jax.random.PRNGKey(100 + k), N)
        spread = max(float(evaluation.energy_distance(part.sample(jax.random.PRNGKey(200 + 10 * k
                                                                                     + i), N),
                                                      ref)) for i in range(4))
        out.append((ref, spread))
    return out


SAMPLERS = {
    "vp": {
        "pc": lambda sde: sampling.get_pc_sampler(sde, (N, 2), "reverse_diffusion", "langevin"),
        "em": lambda sde: sampling.get_pc_sampler(sde, (N, 2), "euler_maruyama", "none"),
        "ode": lambda sde: sampling.get_ode_sampler(sde, (N, 2), rtol=1e-5, atol=1e-5),
    },
    "ve": {
        "pc": lambda sde: sampling.get_pc_sampler(sde, (N, 2), "reverse_diffusion", "langevin"),
        "ald": lambda sde: sampling.get_ald_sampler(sde, (N, 2), step_lr=2e-5, n_steps_each=3),
    },
}
CASES = [(s, m) for s, ms in SAMPLERS.items() for m in ms]


@pytest.mark.parametrize("sde_name,method", CASES)
def test_conditional_score_drives_samplers_to_the_component(truth, sde_name, method):
    sde = (sde_lib.VPSDE(0.1, 20.0, N=300) if sde_name == "vp"
           else sde_lib.VESDE(0.01, 50.0, N=300))
    net = ComponentNet(sde)
    k = 1
    # guided at w = 1 (the conditional score, through the batched guidance path)
    score_fn = mutils.get_score_fn(sde, net, {}, context=onehot(k, N), guidance_scale=1.0,
                                   null_context=NULL)
    sampler = SAMPLERS[sde_name][method](sde)
    x, _ = jax.jit(lambda r: sampler(r, score_fn))(jax.random.PRNGKey(3))
    ref, spread = truth[k]
    assert float(evaluation.energy_distance(x, ref)) <= spread
    # negative control: another component's samples are far from this one's
    other_ref, _ = truth[(k + 1) % K]
    assert float(evaluation.energy_distance(x, other_ref)) > 5 * spread
