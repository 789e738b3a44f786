"""Bits/dim of the digits test split through eval_lib.bits_per_dim (data pipeline, uniform
dequantisation, scaling, probability-flow ODE, unit conversion) against the closed form.

The "network" is a Gaussian fitted to the training split: under the VP SDE its perturbed
marginals are Gaussian, so both its score and the density the ODE integrates to are exact.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

import datasets
import eval_lib
import run_lib
from configs.digits import vp_ddpmpp

BETA_MIN, BETA_MAX = 0.1, 20.0


def vp_coef(t):
    """alpha(t), std(t) of the VP SDE, written out here (not taken from sde_lib)."""
    log_alpha = -0.25 * t**2 * (BETA_MAX - BETA_MIN) - 0.5 * t * BETA_MIN
    return jnp.exp(log_alpha), jnp.sqrt(1.0 - jnp.exp(2.0 * log_alpha))


class GaussianNoiseNet(nn.Module):
    """Predicts the noise of x_t for data ~ N(mu, diag(var)), as a DDPM++ label/output pair."""

    @nn.compact
    def __call__(self, x, labels, train=False):
        mu = self.param("mu", nn.initializers.zeros, x.shape[1:])
        var = self.param("var", nn.initializers.ones, x.shape[1:])
        alpha, std = vp_coef(labels / 999.0)
        alpha, std = alpha[:, None, None, None], std[:, None, None, None]
        score = -(x - alpha * mu) / (alpha**2 * var + std**2)
        return -score * std


def gaussian_logpdf(y, mu, var):
    return -0.5 * np.sum((y - mu) ** 2 / var + np.log(2 * np.pi * var), axis=(1, 2, 3))


def test_bits_per_dim_of_a_gaussian_matches_the_closed_form():
    config = vp_ddpmpp.get_config()
    config.model.beta_min, config.model.beta_max = BETA_MIN, BETA_MAX
    config.eval.batch_size = 128  # 297 test images: three batches, the last one padded
    config.eval.bpd_repeats = 2
    config.eval.rtol = config.eval.atol = 1e-5
    exp = run_lib.build(config)._replace(model=GaussianNoiseNet())

    train = datasets.get_dataset("digits", "train", 16, 1)
    x = np.concatenate([b["image"][b["mask"]] for b in datasets.eval_iterator(train, 500)])
    y = 2.0 * x - 1.0
    mu, var = y.mean(0), np.maximum(y.var(0), 0.05)
    params = {"mu": jnp.asarray(mu), "var": jnp.asarray(var)}

    got = eval_lib.bits_per_dim(config, exp, params, eval_lib._test_source(config))

    # Truth: the density at t = eps that the ODE integrates, N(alpha mu, alpha^2 var + std^2),
    # of the same dequantised test images, in bits per dimension of the 8-bit [0, 1] data.
    alpha, std = (float(v) for v in vp_coef(exp.sde.eps))
    test = eval_lib._test_source(config)
    nll_bits = []
    for r in range(2):
        for b in datasets.eval_iterator(test, 128, uniform_dequantization=True, seed=r):
            u = b["image"][b["mask"]].astype(np.float64)
            logp_y = gaussian_logpdf(2.0 * u - 1.0, alpha * mu, alpha**2 * var + std**2)
            d = u[0].size
            logp_u = logp_y + d * np.log(2.0)  # y = 2u - 1
            nll_bits.append(-logp_u / (d * np.log(2.0)) + 8.0)  # 256 bins of width 1/256
    want = float(np.mean(np.concatenate(nll_bits)))
    assert len(np.concatenate(nll_bits)) == 2 * 297
    print(f"bits/dim: ODE {got:.5f}, closed form {want:.5f}")
    assert abs(got - want) < 2e-3, (got, want)
    # a different density is told apart: the same data under a mean shifted by one pixel
    shifted = {"mu": jnp.roll(params["mu"], 1, axis=1), "var": params["var"]}
    worse = eval_lib.bits_per_dim(config, exp, shifted, test)
    print(f"shifted mean: {worse:.5f}")
    assert worse > want + 0.05, (worse, want)
