"""Closed-form oracle: a Gaussian mixture and its exact score under any linear SDE.

Under x(t) = alpha(t) x(0) + sigma(t) z, the component N(mu_k, diag(s_k^2)) becomes
N(alpha mu_k, diag(alpha^2 s_k^2 + sigma^2)), so p_t stays a mixture with a closed-form score.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from utils import bcast


class GaussianMixture:
    """Mixture of K axis-aligned Gaussians in D dimensions.

    Args:
      weights: [K] mixture weights (normalised here).
      means: [K, D] component means.
      stds: [K] isotropic or [K, D] per-axis standard deviations.
    Data passed in may have any trailing shape that flattens to D.
    """

    def __init__(self, weights, means, stds):
        means = np.asarray(means, np.float32)
        if means.ndim != 2:
            raise ValueError(f"means must be [K, D], got shape {means.shape}")
        k, d = means.shape
        weights = np.asarray(weights, np.float64).reshape(k)
        if np.any(weights <= 0):
            raise ValueError("mixture weights must be positive")
        stds = np.asarray(stds, np.float32)
        stds = np.broadcast_to(stds.reshape(k, -1), (k, d))
        if np.any(stds <= 0):
            raise ValueError("mixture stds must be positive")
        self.weights = jnp.asarray(weights / weights.sum(), jnp.float32)
        self.means = jnp.asarray(means)
        self.stds = jnp.asarray(stds)
        self.dim = d

    def sample(self, rng, n: int):
        """n samples: [n, D]."""
        k_rng, z_rng = jax.random.split(rng)
        k = jax.random.choice(k_rng, len(self.weights), (n,), p=self.weights)
        z = jax.random.normal(z_rng, (n, self.dim))
        return self.means[k] + self.stds[k] * z

    def _log_prob(self, x, alpha, sigma):
        """Log-density of the mixture perturbed to (alpha, sigma): x [B, ...] -> [B]."""
        flat = x.reshape(x.shape[0], -1)[:, None, :]  # [B, 1, D]
        a = bcast(alpha, flat)
        var = a**2 * self.stds[None] ** 2 + bcast(sigma, flat) ** 2  # [B, K, D]
        diff = flat - a * self.means[None]
        comp = -0.5 * jnp.sum(diff**2 / var + jnp.log(2 * jnp.pi * var), axis=-1)  # [B, K]
        return jax.nn.logsumexp(comp + jnp.log(self.weights)[None], axis=-1)

    def log_prob(self, x):
        """log p_0(x): [B]."""
        b = x.shape[0]
        return self._log_prob(x, jnp.ones((b,)), jnp.zeros((b,)))

    def perturbed_log_prob(self, sde, x, t):
        """log p_t(x) of the mixture diffused by `sde` up to time t [B]: [B]."""
        alpha, sigma = sde.marginal_coef(t)
        return self._log_prob(x, alpha, sigma)

    def score_fn(self, sde):
        """Exact score grad_x log p_t(x) under `sde`, as score_fn(x, t) -> [B, ...]."""

        def score(x, t):
            alpha, sigma = sde.marginal_coef(t)
            flat = x.reshape(x.shape[0], -1)[:, None, :]  # [B, 1, D]
            a = bcast(alpha, flat)
            var = a**2 * self.stds[None] ** 2 + bcast(sigma, flat) ** 2  # [B, K, D]
            diff = flat - a * self.means[None]
            comp = -0.5 * jnp.sum(diff**2 / var + jnp.log(2 * jnp.pi * var), axis=-1)
            resp = jax.nn.softmax(comp + jnp.log(self.weights)[None], axis=-1)  # [B, K]
            s = jnp.sum(resp[..., None] * (-diff / var), axis=1)  # [B, D]
            return s.reshape(x.shape)

        return score


def toy_gmm() -> GaussianMixture:
    """The embedded 2-D 'gmm' dataset: four unequal, anisotropic components."""
    return GaussianMixture(
        weights=[0.35, 0.25, 0.25, 0.15],
        means=[[-2.0, -2.0], [2.0, -1.5], [-1.0, 2.5], [2.5, 2.0]],
        stds=[[0.5, 0.3], [0.3, 0.6], [0.4, 0.4], [0.25, 0.25]],
    )
