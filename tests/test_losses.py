"""Objectives against closed forms: each is minimised by the exact score of the data."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analytic
import losses
import sde_lib
from utils import ConfigError, bcast

GMM = analytic.toy_gmm()


class ScaledTrueScore(nn.Module):
    """A 'network' whose score is c * (exact mixture score); c = 1 is the optimum."""

    sde: object
    continuous: bool = True

    @nn.compact
    def __call__(self, x, labels, train=False):
        c = self.param("c", nn.initializers.ones, ())
        sde = self.sde
        if isinstance(sde, sde_lib.VESDE):
            t = jnp.log(labels / sde.sigma_min) / np.log(sde.sigma_max / sde.sigma_min)
            return c * GMM.score_fn(sde)(x, t)
        if self.continuous:
            t = labels / 999.0
            std = sde.marginal_coef(t)[1]
        else:
            t = labels / (sde.N - 1)
            std = sde.sqrt_1m_alphas_cumprod[labels.astype(jnp.int32)]
        # Noise-prediction output: eps = -std * score.
        return -bcast(std, x) * c * GMM.score_fn(sde)(x, t)


CASES = [
    ("ve", "dsm", True), ("vp", "dsm", True), ("subvp", "dsm", True),
    ("ve", "dsm", False), ("vp", "dsm", False),
    ("vp", "exact", True), ("ve", "sliced", True),
]


def make_sde(name):
    return {"ve": lambda: sde_lib.VESDE(0.01, 20.0, N=100), "vp": lambda: sde_lib.VPSDE(N=100),
            "subvp": lambda: sde_lib.subVPSDE(N=100)}[name]()


@pytest.mark.parametrize("sde_name,method,continuous", CASES)
def test_exact_score_minimises_the_objective(sde_name, method, continuous):
    sde = make_sde(sde_name)
    model = ScaledTrueScore(sde, continuous)
    loss_fn = losses.get_loss_fn(sde, model, train=False, method=method, continuous=continuous)
    batch = GMM.sample(jax.random.PRNGKey(0), 20000)

    def mean_loss(c):
        return jnp.mean(loss_fn(jax.random.PRNGKey(1), {"c": c}, batch))

    grad = float(jax.grad(mean_loss)(1.0))
    curv = float(jax.grad(jax.grad(mean_loss))(1.0))
    assert curv > 0
    # Newton step from c = 1 to the sample minimiser: within a few percent of 1.
    assert abs(grad / curv) < 0.05
    assert float(mean_loss(1.0)) < min(float(mean_loss(0.8)), float(mean_loss(1.25)))


def test_likelihood_weighting_is_g_squared_over_std_squared():
    sde = make_sde("vp")
    model = ScaledTrueScore(sde)
    batch = GMM.sample(jax.random.PRNGKey(0), 8)
    plain = losses.get_sde_loss_fn(sde, model, False, reduce_mean=True)
    weighted = losses.get_sde_loss_fn(sde, model, False, reduce_mean=True,
                                      likelihood_weighting=True)
    params = {"c": jnp.array(0.5)}
    rng = jax.random.PRNGKey(3)
    t = jax.random.uniform(jax.random.split(rng, 3)[0], (8,), minval=sde.eps, maxval=1.0)
    g2 = sde.sde(batch, t)[1] ** 2
    std = sde.marginal_coef(t)[1]
    expected = plain(rng, params, batch) * g2 / std**2
    np.testing.assert_allclose(weighted(rng, params, batch), expected, rtol=1e-4)


def test_sliced_and_exact_agree_in_expectation():
    sde = make_sde("vp")
    model = ScaledTrueScore(sde)
    batch = GMM.sample(jax.random.PRNGKey(0), 20000)
    exact = losses.get_loss_fn(sde, model, False, method="exact")
    sliced = losses.get_loss_fn(sde, model, False, method="sliced")
    params = {"c": jnp.array(0.7)}
    a = np.asarray(exact(jax.random.PRNGKey(5), params, batch))
    b = np.asarray(sliced(jax.random.PRNGKey(5), params, batch))
    assert abs(a.mean() - b.mean()) < 4 * (a - b).std() / np.sqrt(len(a))


def test_discrete_losses_need_their_sde():
    with pytest.raises(ConfigError, match="training.continuous=False"):
        losses.get_loss_fn(make_sde("subvp"), None, False, continuous=False)
    with pytest.raises(ConfigError, match="training.method='ism' is not valid"):
        losses.get_loss_fn(make_sde("vp"), None, False, method="ism")


def test_train_step_updates_params_and_ema():
    sde = make_sde("vp")
    model = ScaledTrueScore(sde)
    loss_fn = losses.get_loss_fn(sde, model, True)
    opt = losses.get_optimizer(lr=0.1, warmup=0, grad_clip=1.0)
    state = losses.init_train_state({"c": jnp.array(0.5)}, opt)
    step = jax.jit(losses.get_multi_step_fn(losses.get_step_fn(loss_fn, opt, 0.9),
                                            jax.random.PRNGKey(0)))
    batches = GMM.sample(jax.random.PRNGKey(1), 5 * 256).reshape(5, 256, 2)
    new, step_losses = step(state, batches)
    assert int(new.step) == 5 and step_losses.shape == (5,)
    c, ema = float(new.params["c"]), float(new.ema_params["c"])
    assert 0.5 < ema < c  # EMA lags the parameter as it moves towards 1


def test_ema_warmup_follows_the_num_updates_rule():
    """EMA after each step vs a direct recurrence on the recorded parameter trajectory."""
    sde = make_sde("vp")
    model = ScaledTrueScore(sde)
    loss_fn = losses.get_loss_fn(sde, model, True)
    opt = losses.get_optimizer(lr=0.1, warmup=0, grad_clip=1.0)
    batches = GMM.sample(jax.random.PRNGKey(1), 30 * 64).reshape(30, 64, 2)
    for warmup in (False, True):
        step = jax.jit(losses.get_step_fn(loss_fn, opt, 0.95, ema_warmup=warmup))
        state = losses.init_train_state({"c": jnp.array(0.5)}, opt)
        ema = 0.5
        for n in range(30):
            state, _ = step(state, batches[n], jax.random.PRNGKey(n))
            d = min(0.95, (1 + n) / (10 + n)) if warmup else 0.95
            ema = d * ema + (1 - d) * float(state.params["c"])
            assert abs(float(state.ema_params["c"]) - ema) < 1e-6, (warmup, n)
    # with warm-up the first update keeps only 10% of the initial value
    step = jax.jit(losses.get_step_fn(loss_fn, opt, 0.999, ema_warmup=True))
    state, _ = step(losses.init_train_state({"c": jnp.array(0.5)}, opt), batches[0],
                    jax.random.PRNGKey(0))
    c = float(state.params["c"])
    assert abs(float(state.ema_params["c"]) - (0.1 * 0.5 + 0.9 * c)) < 1e-6
