"""Instance-norm variants of the NCSN RefineNets (Song & Ermon 2019, appendix A: instance
norm++ and its noise-conditional form; Song & Ermon 2020 use the unconditional one).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from utils import choose

EPS = 1e-5


def _near_one(key, shape, dtype=jnp.float32):
    """N(1, 0.02^2) initializer for multiplicative norm parameters (NCSN's choice)."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def instance_moments(x):
    """Per-example, per-channel spatial mean and (biased) variance.

    Args:
      x: feature maps [B, H, W, C].

    Returns:
      mu, var: each [B, 1, 1, C].
    """
    mu = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.var(x, axis=(1, 2), keepdims=True)
    return mu, var


def instance_norm_plus_core(x):
    """The parameter-free part of instance norm++.

    Args:
      x: feature maps [B, H, W, C].

    Returns:
      x_hat: (x_k - mu_k) / s_k, [B, H, W, C].
      mu_hat: (mu_k - m) / v, [B, 1, 1, C], where m and v are the mean and (population)
        standard deviation of the channel means mu_k of each example.
    """
    mu, var = instance_moments(x)
    m = jnp.mean(mu, axis=-1, keepdims=True)
    v2 = jnp.var(mu, axis=-1, keepdims=True)
    x_hat = (x - mu) / jnp.sqrt(var + EPS)
    mu_hat = (mu - m) / jnp.sqrt(v2 + EPS)
    return x_hat, mu_hat


class InstanceNorm(nn.Module):
    """Instance normalization with a per-channel scale and bias.

    `y` is accepted and ignored so that blocks can call every norm the same way.
    """

    @nn.compact
    def __call__(self, x, y=None):
        """Args: x [B, H, W, C]. Returns: [B, H, W, C]."""
        c = x.shape[-1]
        mu, var = instance_moments(x)
        h = (x - mu) / jnp.sqrt(var + EPS)
        return h * self.param("scale", nn.initializers.ones, (c,)) + self.param(
            "bias", nn.initializers.zeros, (c,)
        )


class VarianceNorm(nn.Module):
    """Divide by the per-channel spatial std (no centring) and scale (NCSNv2 ablation)."""

    @nn.compact
    def __call__(self, x, y=None):
        """Args: x [B, H, W, C]. Returns: [B, H, W, C]."""
        _, var = instance_moments(x)
        return x / jnp.sqrt(var + EPS) * self.param("scale", _near_one, (x.shape[-1],))


class InstanceNormPlus(nn.Module):
    """Instance norm++: z_k = gamma_k (x_hat_k + alpha_k mu_hat_k) + beta_k.

    The paper (NCSN, app. A) writes the mean term as alpha_k mu_hat_k outside gamma_k; this is
    the same family with alpha rescaled, in the form the authors' released code computes.
    Instance norm alone removes the channel means mu_k, which shifts colours; the alpha term
    puts back their normalized spread. `y` is accepted and ignored.
    """

    @nn.compact
    def __call__(self, x, y=None):
        """Args: x [B, H, W, C]. Returns: [B, H, W, C]."""
        c = x.shape[-1]
        x_hat, mu_hat = instance_norm_plus_core(x)
        gamma = self.param("gamma", _near_one, (c,))
        alpha = self.param("alpha", _near_one, (c,))
        beta = self.param("beta", nn.initializers.zeros, (c,))
        return gamma * (x_hat + alpha * mu_hat) + beta


def _gamma_alpha_beta_init(key, shape, dtype=jnp.float32):
    """Embedding table [num_classes, 3C]: gamma and alpha ~ N(1, 0.02^2), beta = 0."""
    n, c3 = shape
    c = c3 // 3
    near_one = _near_one(key, (n, 2 * c), dtype)
    return jnp.concatenate([near_one, jnp.zeros((n, c), dtype)], axis=-1)


class ConditionalInstanceNormPlus(nn.Module):
    """Conditional instance norm++: instance norm++ with gamma, alpha, beta looked up per
    noise level i, z_k = gamma[i, k] (x_hat_k + alpha[i, k] mu_hat_k) + beta[i, k].

    Attributes:
      num_classes: number of noise levels L (rows of the embedding table).
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, y):
        """Args: x [B, H, W, C]; y int [B] noise-level index. Returns: [B, H, W, C]."""
        c = x.shape[-1]
        x_hat, mu_hat = instance_norm_plus_core(x)
        table = nn.Embed(self.num_classes, 3 * c, embedding_init=_gamma_alpha_beta_init)
        gamma, alpha, beta = jnp.split(table(y)[:, None, None, :], 3, axis=-1)  # [B, 1, 1, C]
        return gamma * (x_hat + alpha * mu_hat) + beta


NORMS = {
    "InstanceNorm": InstanceNorm,
    "InstanceNorm++": InstanceNormPlus,
    "VarianceNorm": VarianceNorm,
}
CONDITIONAL_NORMS = {"InstanceNorm++": ConditionalInstanceNormPlus}


def get_norm(name: str, num_classes: int | None = None):
    """The norm module class named `name` (config key model.normalization).

    Args:
      name: 'InstanceNorm++', 'InstanceNorm' or 'VarianceNorm'.
      num_classes: if given, the noise-conditional variant with that many noise levels.

    Returns:
      A zero-argument factory of a module called as `norm(x, y)`.
    """
    if num_classes is None:
        return NORMS[choose("model.normalization", name, NORMS)]
    cls = CONDITIONAL_NORMS[choose("model.normalization", name, CONDITIONAL_NORMS)]
    return lambda: cls(num_classes=num_classes)
