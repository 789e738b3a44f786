"""Noise-conditional residual MLP score network for low-dimensional data.

VE: Gaussian Fourier features of log sigma (Tancik et al. 2020, as NCSN++); VP / sub-VP:
sinusoidal embedding of the time label (Vaswani et al. 2017, as DDPM). Optionally the input x
is encoded by octaves sin(2^k pi x), cos(2^k pi x) (the positional encoding of NeRF, Mildenhall
et al. 2020), which lets a small MLP draw sharp edges.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from utils import ConfigError, bcast


def sinusoidal_embedding(labels, dim: int, max_positions: int = 10000):
    """Sinusoidal embedding of scalar labels: [B] -> [B, dim]."""
    half = dim // 2
    freqs = jnp.exp(-np.log(max_positions) * jnp.arange(half) / max(half - 1, 1))
    args = labels.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class FourierFeatures(nn.Module):
    """Fixed random Fourier features of a scalar: [B] -> [B, 2 * num_features]."""

    num_features: int = 64
    scale: float = 16.0

    @nn.compact
    def __call__(self, v):
        w = self.param(
            "W", lambda rng, s: jax.random.normal(rng, s) * self.scale, (self.num_features,)
        )
        w = jax.lax.stop_gradient(w)
        proj = v[:, None] * w[None] * 2 * jnp.pi
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


def octave_encoding(x, octaves: int):
    """x [B, D] -> [B, D * (1 + 2 * K)]: x beside sin(2^k pi x), cos(2^k pi x), k < K = octaves."""
    freqs = np.pi * 2.0 ** np.arange(octaves)  # [K]
    args = (x[:, :, None] * freqs).reshape(x.shape[0], -1)  # [B, D * K]
    return jnp.concatenate([x, jnp.sin(args), jnp.cos(args)], axis=-1)


class ScoreMLP(nn.Module):
    """Residual MLP s(x, label) for x of shape [B, D].

    Attributes:
      nf: hidden width.
      num_res_blocks: number of residual blocks.
      embedding_type: 'fourier' (embeds log(labels); VE labels are sigma) or 'positional'
        (embeds labels as given; VP labels are t * 999 or the time index).
      fourier_scale: std of the random Fourier frequencies.
      scale_by_sigma: divide the output by labels (VE: the output is then a score).
      ve_sigma_data: if > 0 (VE only), feed x / sqrt(ve_sigma_data^2 + sigma^2) so the input
        has unit scale at every noise level (Karras et al. 2022, eq. 7); sigma = labels. Leave
        it 0 with training.sde='edmsde', whose preconditioning (models/utils.py) scales x.
      input_octaves: if > 0, the network reads `octave_encoding(x, input_octaves)`.
    """

    nf: int = 128
    num_res_blocks: int = 3
    embedding_type: str = "fourier"
    fourier_scale: float = 16.0
    scale_by_sigma: bool = False
    ve_sigma_data: float = 0.0
    input_octaves: int = 0

    @nn.compact
    def __call__(self, x, labels, train: bool = False):
        if self.embedding_type not in ("fourier", "positional"):
            raise ConfigError(
                f"model.embedding_type={self.embedding_type!r} is not valid; "
                "choose one of: fourier, positional"
            )
        # x: [B, D], labels: [B]
        if self.embedding_type == "fourier":
            temb = FourierFeatures(self.nf // 2, self.fourier_scale)(jnp.log(labels))
        else:
            temb = sinusoidal_embedding(labels, self.nf)
        temb = nn.Dense(self.nf)(nn.silu(nn.Dense(self.nf)(temb)))  # [B, nf]
        if self.ve_sigma_data > 0:
            x = x / bcast(jnp.sqrt(self.ve_sigma_data**2 + labels**2), x)
        if self.input_octaves < 0:
            raise ConfigError(f"model.input_octaves: must be >= 0, got {self.input_octaves}")
        h = nn.Dense(self.nf)(octave_encoding(x, self.input_octaves) if self.input_octaves else x)
        for _ in range(self.num_res_blocks):
            r = nn.Dense(self.nf)(nn.silu(nn.LayerNorm()(h)))
            r = r + nn.Dense(self.nf)(nn.silu(temb))
            r = nn.Dense(self.nf, kernel_init=nn.initializers.zeros)(nn.silu(r))
            h = h + r
        out = nn.Dense(x.shape[-1])(nn.silu(nn.LayerNorm()(h)))  # [B, D]
        if self.scale_by_sigma:
            out = out / bcast(labels, out)
        return out
