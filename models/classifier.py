"""A noise-conditional classifier p_t(y | x(t)) for classifier guidance (Song et al. 2021,
Sec. 5 and App. I; Dhariwal & Nichol 2021, Sec. 4): a small CNN of DDPM residual blocks whose
time embedding is that of the half log-SNR lambda(t) = log(alpha / sigma), so one network
reads every SDE's noise levels the same way.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import sde_lib
from models import layers
from models.ddpm import check_common, check_unet_shapes
from models.layers import act
from utils import ConfigError, bcast

SIGMA_DATA = 0.5  # assumed data std of the input scaling 1 / sqrt(alpha^2 sigma_data^2 + sigma^2)


class NoiseClassifier(nn.Module):
    """Logits of the class of a noisy image.

    Attributes:
      image_size: data.image_size (H = W).
      num_channels: data.num_channels.
      num_classes: K, the number of classes (logits [B, K]).
      nf: base channels.
      ch_mult: channel multiplier per resolution level (each level after the first halves the
        resolution).
      num_res_blocks: residual blocks per level.
      dropout: dropout rate inside residual blocks.
    """

    image_size: int = 16
    num_channels: int = 1
    num_classes: int = 10
    nf: int = 16
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    dropout: float = 0.0

    def check(self, x_shape: tuple[int, ...]):
        """Raise ConfigError (one line naming the key) for an impossible configuration."""
        if self.num_classes < 2:
            raise ConfigError(f"classifier.num_classes={self.num_classes} must be >= 2")
        check_common(self.nf, self.num_res_blocks, self.dropout)
        check_unet_shapes(self.image_size, self.num_channels, self.ch_mult, (), x_shape)
        layers.check_group_norm(
            layers.unet_norm_channels(self.nf, self.ch_mult, self.num_res_blocks), self.nf)

    def _embedding(self, log_snr: jnp.ndarray) -> jnp.ndarray:
        """[B] lambda(t) -> [B, 4 nf]."""
        emb = layers.timestep_embedding(log_snr, self.nf)
        emb = nn.Dense(self.nf * 4, kernel_init=layers.default_init())(emb)
        return nn.Dense(self.nf * 4, kernel_init=layers.default_init())(act(emb))

    @nn.compact
    def __call__(self, x: jnp.ndarray, log_snr: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """Class logits of noisy images.

        Args:
          x: [B, H, W, C] noisy images, scaled to about unit variance by the caller.
          log_snr: [B] lambda(t) = log(alpha(t) / sigma(t)) of their noise level.
          train: enable dropout (needs the 'dropout' rng).

        Returns:
          [B, num_classes] logits (unnormalised log p_t(y | x)).
        """
        self.check(x.shape)
        temb = self._embedding(log_snr)  # [B, 4 nf]
        h = layers.conv3x3(x, self.nf)  # [B, H, W, nf]
        for level, mult in enumerate(self.ch_mult):
            if level:
                h = layers.Downsample(with_conv=True)(h)
            for _ in range(self.num_res_blocks):
                h = layers.ResnetBlockDDPM(out_ch=self.nf * mult, dropout=self.dropout)(
                    h, temb, train)
        h = act(layers.group_norm(h.shape[-1])(h))
        h = jnp.mean(h, axis=(1, 2))  # [B, nf * ch_mult[-1]]
        return nn.Dense(self.num_classes, kernel_init=layers.default_init())(h)  # [B, K]


def noisy_logits(net: NoiseClassifier, variables, sde, x, t, train: bool = False, rng=None):
    """Logits [B, K] of x(t) [B, H, W, C] at times t [B] under `sde`: the network reads
    x(t) / sqrt(alpha^2 SIGMA_DATA^2 + sigma^2) (about unit variance at every t) and lambda(t).

    Args:
      net: the classifier. variables: {'params': ...}. sde: the SDE x(t) was perturbed by.
      x: noisy images [B, H, W, C]. t: [B] times. train: dropout on (needs `rng`).
    """
    alpha, sigma = sde.marginal_coef(t)
    c_in = 1.0 / jnp.sqrt(alpha**2 * SIGMA_DATA**2 + sigma**2)  # [B]
    rngs = {"dropout": rng} if (train and rng is not None) else None
    return net.apply(variables, bcast(c_in, x) * x, sde_lib.log_snr(sde, t), train=train,
                     rngs=rngs)


def get_log_prob_fn(net: NoiseClassifier, variables, sde):
    """log_prob_fn(x [B, ...], t [B]) -> [B, K] log p_t(k | x), for classifier guidance."""
    return lambda x, t: jax.nn.log_softmax(noisy_logits(net, variables, sde, x, t), axis=-1)
