"""Datasets: embedded 2-D toy sets (generated from a seed, no download) and data scalers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import analytic
from utils import choose

# ---------------------------------------------------------------------------------------------
# Embedded 2-D toy data
# ---------------------------------------------------------------------------------------------


def _checkerboard(rng, n):
    k1, k2, k3 = jax.random.split(rng, 3)
    x1 = jax.random.uniform(k1, (n,)) * 4 - 2
    x2 = jax.random.uniform(k2, (n,)) - 2.0 * jax.random.randint(k3, (n,), 0, 2)
    x2 = x2 + jnp.floor(x1) % 2
    return jnp.stack([x1, x2], axis=1) * 2


def _swissroll(rng, n):
    k1, k2 = jax.random.split(rng)
    t = 1.5 * jnp.pi * (1 + 2 * jax.random.uniform(k1, (n,)))
    x = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1) / 5.0
    return x + 0.1 * jax.random.normal(k2, (n, 2))


def _moons(rng, n):
    k1, k2, k3 = jax.random.split(rng, 3)
    theta = jnp.pi * jax.random.uniform(k1, (n,))
    upper = jax.random.bernoulli(k2, 0.5, (n,))
    x = jnp.where(upper, jnp.cos(theta), 1 - jnp.cos(theta))
    y = jnp.where(upper, jnp.sin(theta), 0.5 - jnp.sin(theta))
    pts = jnp.stack([x - 0.5, y - 0.25], axis=1) * 2.0
    return pts + 0.1 * jax.random.normal(k3, (n, 2))


def eight_gaussians() -> analytic.GaussianMixture:
    """Eight equal Gaussians on a circle of radius 2 (std 0.25): an exact mixture."""
    angles = np.arange(8) * np.pi / 4
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return analytic.GaussianMixture(np.ones(8), means, 0.25 * np.ones(8))


TOY = {
    "checkerboard": _checkerboard,
    "swissroll": _swissroll,
    "moons": _moons,
    "eight_gaussians": lambda rng, n: eight_gaussians().sample(rng, n),
    "gmm": lambda rng, n: analytic.toy_gmm().sample(rng, n),
}


def toy_mixture(name: str) -> analytic.GaussianMixture | None:
    """The exact mixture behind a toy set, where there is one ('gmm', 'eight_gaussians')."""
    return {"gmm": analytic.toy_gmm, "eight_gaussians": eight_gaussians}.get(name, lambda: None)()


def sample_toy(name: str, rng, n: int) -> jnp.ndarray:
    """n points of the embedded 2-D dataset `name`: [n, 2] float32.

    Deterministic given `rng`; traceable under jit for a static `n`.
    """
    choose("data.dataset", name, TOY)
    return TOY[name](rng, n).astype(jnp.float32)
