"""Sample-quality metrics: energy distance and sliced Wasserstein for low-dimensional data."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# ---------------------------------------------------------------------------------------------
# Low-dimensional sample distances (toy data, analytic oracles)
# ---------------------------------------------------------------------------------------------


def _mean_pairwise_dist(a, b):
    d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None] - 2 * a @ b.T
    return jnp.mean(jnp.sqrt(jnp.maximum(d2, 0.0)))


@jax.jit
def energy_distance(x, y):
    """Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (Szekely) between samples [n, D], [m, D].

    Zero iff the distributions agree; the V-statistic form (diagonal included), so two finite
    samples of one distribution give a small positive value of order 1/n.
    """
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    y = y.reshape(y.shape[0], -1).astype(jnp.float32)
    return (
        2 * _mean_pairwise_dist(x, y) - _mean_pairwise_dist(x, x) - _mean_pairwise_dist(y, y)
    )


def sliced_wasserstein(rng, x, y, num_projections: int = 256):
    """Monte-Carlo sliced 1-Wasserstein distance between equal-size samples [n, D]."""
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"sliced_wasserstein needs equal sample counts, got {len(x)}, {len(y)}")
    dirs = jax.random.normal(rng, (x.shape[1], num_projections))
    dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
    px = jnp.sort(x @ dirs, axis=0)
    py = jnp.sort(y @ dirs, axis=0)
    return jnp.mean(jnp.abs(px - py))
