"""Closed-form oracle: a Gaussian mixture and its exact score under any linear SDE, and for
Gaussian data the exact probability-flow ODE solution (Song et al. 2021, eq. 13).

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

    def _component_log_probs(self, x, alpha, sigma):
        """log w_k + log N_k(x; alpha mu_k, alpha^2 s_k^2 + sigma^2): x [B, ...] -> [B, K]."""
        flat = x.reshape(x.shape[0], -1)[:, None, :]  # [B, 1, D]
        a = bcast(alpha, flat)
        var = a**2 * self.stds[None] ** 2 + bcast(sigma, flat) ** 2  # [B, K, D]
        diff = flat - a * self.means[None]
        comp = -0.5 * jnp.sum(diff**2 / var + jnp.log(2 * jnp.pi * var), axis=-1)
        return comp + jnp.log(self.weights)[None]

    def log_class_posterior(self, sde, x, t):
        """Exact noisy-class posterior log p_t(k | x(t) = x) under `sde`: x [B, ...] -> [B, K].

        The component index k is the class; the posterior is the softmax over k of the
        perturbed component log-densities plus the log weights.
        """
        alpha, sigma = sde.marginal_coef(t)
        return jax.nn.log_softmax(self._component_log_probs(x, alpha, sigma), axis=-1)

    def class_score_fn(self, sde, k: int):
        """Exact score of component k alone under `sde` (the class-conditional score
        grad_x log p_t(x | y = k)), as score_fn(x, t) -> [B, ...]."""
        one = GaussianMixture(np.ones(1), np.asarray(self.means[k : k + 1]),
                              np.asarray(self.stds[k : k + 1]))
        return one.score_fn(sde)

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


class GaussianData:
    """Data N(m, s^2 I): exact score and exact probability-flow ODE solution under any SDE.

    With v(t) = alpha^2 s^2 + sigma^2 the marginal is N(alpha m, v I), the score is
    -(x - alpha m) / v, and the probability-flow ODE dx/dt = f x - g^2 score / 2 (with
    f = d log alpha / dt, g^2 = dv/dt - 2 f v) reduces for y = x - alpha m to
    dy/dt = (dv/dt) / (2 v) y, so y(t) = y(T) sqrt(v(t) / v(T)): the flow is affine in x(T).

    Args:
      mean: scalar or [D] mean m. std: scalar s > 0.
    """

    def __init__(self, mean, std: float):
        if not std > 0:
            raise ValueError(f"std must be positive, got {std}")
        self.mean = jnp.asarray(mean, jnp.float32)
        self.std = float(std)

    def _moments(self, sde, t):
        alpha, sigma = sde.marginal_coef(t)
        return alpha, alpha**2 * self.std**2 + sigma**2  # [B], [B]

    def sample(self, rng, shape):
        """Samples of the data distribution, of `shape` [B, ...] (the mean broadcasts)."""
        return self.mean + self.std * jax.random.normal(rng, shape)

    def score_fn(self, sde):
        """Exact score of the perturbed data under `sde`: score_fn(x, t) -> [B, ...]."""

        def score(x, t):
            alpha, var = self._moments(sde, t)
            return -(x - bcast(alpha, x) * self.mean) / bcast(var, x)

        return score

    def flow(self, sde, x_from, t_from, t_to):
        """The probability-flow ODE solution x(t_to) from x(t_from) = x_from, exactly.

        Args:
          sde: any SDE with marginal_coef. x_from: [B, ...]. t_from, t_to: [B] times.
        Returns:
          x(t_to) [B, ...].
        """
        a_from, v_from = self._moments(sde, t_from)
        a_to, v_to = self._moments(sde, t_to)
        y = x_from - bcast(a_from, x_from) * self.mean
        return bcast(a_to, x_from) * self.mean + y * bcast(jnp.sqrt(v_to / v_from), x_from)


class GaussianMixtureFull:
    """Mixture of K full-covariance Gaussians N(mu_k, C_k) in D dimensions, with exact scores
    under any SDE and exact conditionals p(x_B | x_A = a) (Schur complements).

    Under x(t) = alpha x(0) + sigma z, component k becomes N(alpha mu_k, alpha^2 C_k + sigma^2 I);
    with C_k = U_k diag(lam_k) U_k^T its precision is U_k diag(1 / (alpha^2 lam_k + sigma^2)) U_k^T.

    Args:
      weights: [K] mixture weights (normalised here).
      means: [K, D] component means.
      covs: [K, D, D] symmetric positive-definite covariances.
    Data passed in may have any trailing shape that flattens to D.
    """

    def __init__(self, weights, means, covs):
        means = np.asarray(means, np.float64)
        if means.ndim != 2:
            raise ValueError(f"means must be [K, D], got shape {means.shape}")
        k, d = means.shape
        covs = np.asarray(covs, np.float64)
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must be [K, D, D] = {(k, d, d)}, got {covs.shape}")
        covs = 0.5 * (covs + np.swapaxes(covs, 1, 2))
        lam, u = np.linalg.eigh(covs)  # [K, D], [K, D, D]
        if np.any(lam <= 0):
            raise ValueError("mixture covariances must be positive definite")
        weights = np.asarray(weights, np.float64).reshape(k)
        if np.any(weights <= 0):
            raise ValueError("mixture weights must be positive")
        self.np_weights, self.np_means, self.np_covs = weights / weights.sum(), means, covs
        self.weights = jnp.asarray(self.np_weights, jnp.float32)
        self.means = jnp.asarray(means, jnp.float32)
        self.chol = jnp.asarray(np.linalg.cholesky(covs), jnp.float32)  # [K, D, D]
        self.eigvals = jnp.asarray(lam, jnp.float32)
        self.eigvecs = jnp.asarray(u, jnp.float32)
        self.dim = d

    def sample(self, rng, n: int):
        """n samples: [n, D]."""
        k_rng, z_rng = jax.random.split(rng)
        k = jax.random.choice(k_rng, len(self.weights), (n,), p=self.weights)
        z = jax.random.normal(z_rng, (n, self.dim))
        return self.means[k] + jnp.einsum("nij,nj->ni", self.chol[k], z)

    def _parts(self, x, alpha, sigma):
        """Per-component log w_k N_k(x) [B, K] and the whitened residual terms of the score.

        Returns:
          comp [B, K]; diff [B, K, D] = x - alpha mu_k; inv_var [B, K, D] in the eigenbasis.
        """
        flat = x.reshape(x.shape[0], -1)  # [B, D]
        diff = flat[:, None, :] - alpha[:, None, None] * self.means[None]  # [B, K, D]
        var = alpha[:, None, None] ** 2 * self.eigvals[None] + sigma[:, None, None] ** 2
        proj = jnp.einsum("kdj,bkd->bkj", self.eigvecs, diff)  # U_k^T (x - alpha mu_k)
        comp = -0.5 * jnp.sum(proj**2 / var + jnp.log(2 * jnp.pi * var), axis=-1)
        return comp + jnp.log(self.weights)[None], proj, var

    def log_prob(self, x):
        """log p_0(x): x [B, ...] -> [B]."""
        b = x.shape[0]
        comp, _, _ = self._parts(x, jnp.ones((b,)), jnp.zeros((b,)))
        return jax.nn.logsumexp(comp, axis=-1)

    def perturbed_log_prob(self, sde, x, t):
        """log p_t(x) of the mixture diffused by `sde` up to time t [B]: [B]."""
        alpha, sigma = sde.marginal_coef(t)
        return jax.nn.logsumexp(self._parts(x, alpha, sigma)[0], axis=-1)

    def score_fn(self, sde):
        """Exact score grad_x log p_t(x) under `sde`, as score_fn(x, t) -> [B, ...]."""

        def score(x, t):
            alpha, sigma = sde.marginal_coef(t)
            comp, proj, var = self._parts(x, alpha, sigma)
            resp = jax.nn.softmax(comp, axis=-1)  # [B, K]
            per_k = jnp.einsum("kdj,bkj->bkd", self.eigvecs, -proj / var)  # [B, K, D]
            return jnp.sum(resp[..., None] * per_k, axis=1).reshape(x.shape)

        return score

    def marginal(self, idx):
        """The mixture of the coordinates `idx` alone (the same weights)."""
        idx = np.asarray(idx)
        return GaussianMixtureFull(self.np_weights, self.np_means[:, idx],
                                   self.np_covs[:, idx][:, :, idx])

    def conditional(self, known_idx, x_known):
        """Exact p(x_B | x_A = a) for one observation, A = known_idx, B the other coordinates.

        Component k: weight prop. to w_k N(a; mu_kA, C_kAA), mean mu_kB + C_kBA C_kAA^-1
        (a - mu_kA), covariance C_kBB - C_kBA C_kAA^-1 C_kAB (float64 numpy).

        Args:
          known_idx: [|A|] indices into the D flattened coordinates. x_known: [|A|] values a.
        Returns:
          (GaussianMixtureFull over the |B| = D - |A| unknown coordinates, unknown_idx [|B|]).
        """
        a_idx = np.asarray(known_idx, np.int64).reshape(-1)
        b_idx = np.setdiff1d(np.arange(self.dim), a_idx)
        if len(np.unique(a_idx)) != len(a_idx) or len(b_idx) == 0 or np.any(a_idx >= self.dim):
            raise ValueError(f"known_idx must be distinct indices in [0, {self.dim}) leaving "
                             f"some unknown, got {a_idx.tolist()}")
        a = np.asarray(x_known, np.float64).reshape(len(a_idx))
        def block(rows, cols):  # [K, |rows|, |cols|]
            return self.np_covs[:, rows][:, :, cols]

        c_aa, c_ba, c_bb = block(a_idx, a_idx), block(b_idx, a_idx), block(b_idx, b_idx)
        r = a[None] - self.np_means[:, a_idx]  # [K, |A|]
        gain = np.linalg.solve(c_aa, np.swapaxes(c_ba, 1, 2)).swapaxes(1, 2)  # C_BA C_AA^-1
        means = self.np_means[:, b_idx] + np.einsum("kba,ka->kb", gain, r)
        covs = c_bb - gain @ np.swapaxes(c_ba, 1, 2)
        _, logdet = np.linalg.slogdet(2 * np.pi * c_aa)
        maha = np.einsum("ka,ka->k", r, np.linalg.solve(c_aa, r[..., None])[..., 0])
        logw = np.log(self.np_weights) - 0.5 * (logdet + maha)
        w = np.exp(logw - logw.max())
        return GaussianMixtureFull(w, means, covs), b_idx


def correlated_mixture(dim: int = 2, seed: int = 0) -> GaussianMixtureFull:
    """A mixture whose components correlate every coordinate with every other, so that knowing
    some coordinates moves the others (the inpainting oracle). dim = 2: two components with
    opposite correlations +-0.83; dim > 2: three components N(mu_k, Q_k diag(l) Q_k^T), random
    rotations Q_k, eigenvalues l log-spaced in [0.05, 1], means of std 1.5 (numpy `seed`)."""
    if dim == 2:
        return GaussianMixtureFull([0.5, 0.5], [[-1.5, -1.0], [1.5, 1.0]],
                                   [[[0.6, 0.5], [0.5, 0.6]], [[0.6, -0.5], [-0.5, 0.6]]])
    rs = np.random.RandomState(seed)
    lam = np.geomspace(0.05, 1.0, dim)
    rot = [np.linalg.qr(rs.randn(dim, dim))[0] for _ in range(3)]
    covs = np.stack([q @ np.diag(lam) @ q.T for q in rot])
    return GaussianMixtureFull([0.4, 0.35, 0.25], 1.5 * rs.randn(3, dim), covs)
