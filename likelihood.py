"""Exact log-likelihoods through the probability-flow ODE (Song et al. 2021, Sec. 4.3, app. D.2):
log p_eps(x) = log p_T(x(T)) + int_eps^T div f~(x(t), t) dt, with the divergence taken exactly
or estimated with the Hutchinson-Skilling trace estimator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sampling import ODE_SOLVERS, solve_ode
from utils import batch_sum, choose

HUTCHINSON = ("rademacher", "gaussian", "exact")


def _divergence_fn(drift_fn, hutchinson: str):
    """div(x, t, v) -> [B]: exact Jacobian trace, or v^T (d drift / dx) v."""
    if hutchinson == "exact":

        def div(x, t, v):
            d = x[0].size
            flat_eye = jnp.eye(d, dtype=x.dtype)

            def diag(k):
                e = jnp.broadcast_to(flat_eye[k], (x.shape[0], d)).reshape(x.shape)
                jv = jax.jvp(lambda y: drift_fn(y, t), (x,), (e,))[1]
                return jv.reshape(x.shape[0], d)[:, k]

            return jnp.sum(jax.lax.map(diag, jnp.arange(d)), axis=0)

        return div

    def div(x, t, v):
        jv = jax.jvp(lambda y: drift_fn(y, t), (x,), (v,))[1]
        return batch_sum(v * jv)

    return div


def get_likelihood_fn(sde, hutchinson="rademacher", rtol=1e-5, atol=1e-5, eps=None,
                      method="dopri5", max_steps=4096):
    """Log-density of data under the probability-flow ODE of `sde` and a score function.

    Args:
      sde: forward SDE.
      hutchinson: 'rademacher' | 'gaussian' (unbiased trace estimates) | 'exact' (full Jacobian
        trace, one JVP per dimension: low-dimensional data).
      rtol, atol, method: adaptive solver settings. eps: start time (sde.eps by default).
    Returns:
      ll(rng, score_fn, x [B, ...]) -> (logp [B] nats, z = x(T) [B, ...], nfe).
    """
    choose("eval.hutchinson", hutchinson, HUTCHINSON)
    choose("eval.ode_method", method, ODE_SOLVERS)
    eps = sde.eps if eps is None else eps

    def ll(rng, score_fn, x):
        rsde = sde.reverse(score_fn, probability_flow=True)
        drift_fn = lambda y, t: rsde.sde(y, t)[0]
        div_fn = _divergence_fn(drift_fn, hutchinson)
        if hutchinson == "gaussian":
            v = jax.random.normal(rng, x.shape, x.dtype)
        else:
            v = jax.random.rademacher(rng, x.shape, dtype=x.dtype)

        def vector_field(t, state):
            y, _ = state
            tb = jnp.full((x.shape[0],), t)
            return drift_fn(y, tb), div_fn(y, tb, v)

        state0 = (x, jnp.zeros((x.shape[0],), x.dtype))
        (z, delta_logp), nfe = solve_ode(vector_field, state0, eps, sde.T, rtol, atol, method,
                                         max_steps)
        return sde.prior_logp(z) + delta_logp, z, nfe

    return ll


def bits_per_dim(logp, data_shape, centered: bool = False, num_bins: int | None = 256):
    """Bits per dimension of 8-bit data from a continuous log-density in the model's space.

    Args:
      logp: [B] log-density in nats of (dequantised) data as the model sees it.
      data_shape: shape of one example, e.g. (32, 32, 3).
      centered: data were scaled to [-1, 1] (x = 2 u - 1, u in [0, 1]) instead of [0, 1].
      num_bins: quantisation levels of the raw data (256 for 8 bits); None for continuous data.
    Returns:
      [B] bits/dim: -logp / (D ln 2) + log2(num_bins) - (1 if centered else 0).
    """
    d = int(np.prod(data_shape))
    bpd = -logp / (d * np.log(2.0))
    if num_bins is None:
        return bpd
    return bpd + np.log2(num_bins) - (1.0 if centered else 0.0)
