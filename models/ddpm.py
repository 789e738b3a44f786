"""The DDPM UNet of Ho et al., "Denoising Diffusion Probabilistic Models" (NeurIPS 2020),
Appendix B: a PixelCNN++-style UNet with DDPM residual blocks, self-attention at 16x16 and a
sinusoidal time embedding. The CIFAR-10 configuration has 35,746,307 parameters (35.7M).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from models import layers
from models.layers import act
from utils import ConfigError


def check_unet_shapes(image_size: int, num_channels: int, ch_mult: tuple[int, ...],
                      attn_resolutions: tuple[int, ...], x_shape: tuple[int, ...]):
    """Raise ConfigError unless the image size, levels and attention resolutions fit together.

    Args:
      image_size: data.image_size. num_channels: data.num_channels.
      ch_mult: model.ch_mult. attn_resolutions: model.attn_resolutions.
      x_shape: the static shape of the input batch.
    """
    if not ch_mult or any(m < 1 for m in ch_mult):
        raise ConfigError(f"model.ch_mult={tuple(ch_mult)} must be a non-empty tuple of "
                          "positive ints")
    factor = 2 ** (len(ch_mult) - 1)
    if image_size < 1 or image_size % factor:
        raise ConfigError(f"data.image_size={image_size} is not divisible by "
                          f"2**(len(model.ch_mult)-1)={factor}")
    resolutions = tuple(image_size // 2**i for i in range(len(ch_mult)))
    if not set(attn_resolutions) <= set(resolutions):
        raise ConfigError(f"model.attn_resolutions={tuple(attn_resolutions)} do not occur; "
                          f"resolutions are {resolutions}")
    expected = (image_size, image_size, num_channels)
    if len(x_shape) != 4 or tuple(x_shape[1:]) != expected:
        raise ConfigError(f"input of shape {tuple(x_shape)} does not match data.image_size="
                          f"{image_size}, data.num_channels={num_channels}: expected "
                          f"[B, {image_size}, {image_size}, {num_channels}]")


def class_embedding(temb: jnp.ndarray | None, class_labels, num_classes: int,
                    conditional: bool) -> jnp.ndarray | None:
    """Add a learned class embedding to the time embedding (call inside a compact method).

    Args:
      temb: [B, D] time embedding (None when the network is unconditional).
      class_labels: [B] int in [0, num_classes]; num_classes is the null class of
        classifier-free guidance.
      num_classes: model.num_classes (0: no class embedding, the parameters of an
        unconditional network).
      conditional: model.conditional (a class embedding needs the time embedding).

    Returns:
      temb + embedding(class_labels) [B, D], or temb unchanged when num_classes is 0.
    """
    if num_classes <= 0:
        return temb
    if not conditional:
        raise ConfigError(f"model.num_classes={num_classes} needs model.conditional=True "
                          "(the class embedding is added to the time embedding)")
    if class_labels is None:
        raise ConfigError(f"model.num_classes={num_classes}: the network needs class_labels "
                          "[B] (0..num_classes - 1, or num_classes for the null class)")
    embed = nn.Embed(num_classes + 1, temb.shape[-1], name="class_embedding")
    return temb + embed(jnp.asarray(class_labels, jnp.int32))  # [B, D]


def check_common(nf: int, num_res_blocks: int, dropout: float):
    """Raise ConfigError for a non-positive model.nf / model.num_res_blocks or a bad dropout."""
    if nf < 1:
        raise ConfigError(f"model.nf={nf} must be a positive int")
    if num_res_blocks < 1:
        raise ConfigError(f"model.num_res_blocks={num_res_blocks} must be >= 1")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout={dropout} must be in [0, 1)")


class DDPM(nn.Module):
    """DDPM UNet (Ho et al., 2020); attention follows every block at an attention resolution.

    Attributes:
      image_size: data.image_size (H = W).
      num_channels: data.num_channels.
      centered: data.centered; if False, inputs in [0, 1] are mapped to [-1, 1].
      nf: base channels.
      ch_mult: channel multiplier per resolution level.
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attn_resolutions: resolutions with self-attention.
      dropout: dropout rate inside residual blocks.
      resamp_with_conv: learned convolutions in up/down-sampling.
      conditional: use the sinusoidal embedding of `labels`.
      scale_by_sigma: divide the output by `labels` (noise std; VE only).
      num_classes: > 0 adds a learned class embedding (num_classes + 1 rows, the last the
        null class) to the time embedding; 0 leaves the network unconditional on classes.
    """

    image_size: int = 32
    num_channels: int = 3
    centered: bool = False
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    conditional: bool = True
    scale_by_sigma: bool = False
    num_classes: int = 0

    def check(self, x_shape: tuple[int, ...]):
        """Raise ConfigError (one line naming the key) for an impossible configuration."""
        check_common(self.nf, self.num_res_blocks, self.dropout)
        check_unet_shapes(self.image_size, self.num_channels, self.ch_mult,
                          self.attn_resolutions, x_shape)
        layers.check_group_norm(
            layers.unet_norm_channels(self.nf, self.ch_mult, self.num_res_blocks), self.nf)

    def _time_embedding(self, labels: jnp.ndarray) -> jnp.ndarray | None:
        """[B] labels -> [B, 4 nf] embedding (None when unconditional)."""
        if not self.conditional:
            return None
        temb = layers.timestep_embedding(labels, self.nf)
        temb = nn.Dense(self.nf * 4, kernel_init=layers.default_init())(temb)
        return nn.Dense(self.nf * 4, kernel_init=layers.default_init())(act(temb))

    def _block(self, h, temb, train, out_ch):
        h = layers.ResnetBlockDDPM(out_ch=out_ch, dropout=self.dropout)(h, temb, train)
        if h.shape[1] in self.attn_resolutions:
            h = layers.AttnBlock()(h)
        return h

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray, train: bool = False,
                 class_labels: jnp.ndarray | None = None) -> jnp.ndarray:
        """Predict the noise (VP) or the scaled score (VE) of a batch.

        Args:
          x: images [B, H, W, C].
          labels: [B] time / noise labels (embedded as given).
          train: enable dropout (needs the 'dropout' rng).
          class_labels: [B] int classes (num_classes = the null class); needed when
            model.num_classes > 0, ignored otherwise.

        Returns:
          [B, H, W, C].
        """
        self.check(x.shape)
        temb = self._time_embedding(labels)  # [B, 4 nf]
        temb = class_embedding(temb, class_labels, self.num_classes, self.conditional)
        h = x if self.centered else 2 * x - 1.0
        hs = [layers.conv3x3(h, self.nf)]  # [B, H, W, nf]
        for level, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                hs.append(self._block(hs[-1], temb, train, self.nf * mult))
            if level != len(self.ch_mult) - 1:
                hs.append(layers.Downsample(with_conv=self.resamp_with_conv)(hs[-1]))
        h = hs[-1]  # [B, H / 2**(L-1), W / 2**(L-1), nf * ch_mult[-1]]
        h = layers.ResnetBlockDDPM(dropout=self.dropout)(h, temb, train)
        h = layers.AttnBlock()(h)
        h = layers.ResnetBlockDDPM(dropout=self.dropout)(h, temb, train)
        for level, mult in reversed(list(enumerate(self.ch_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = self._block(jnp.concatenate([h, hs.pop()], axis=-1), temb, train,
                                self.nf * mult)
            if level != 0:
                h = layers.Upsample(with_conv=self.resamp_with_conv)(h)
        h = act(layers.group_norm(h.shape[-1])(h))
        h = layers.conv3x3(h, x.shape[-1], init_scale=0.0)  # [B, H, W, C]
        if self.scale_by_sigma:
            h = h / labels.reshape((-1, 1, 1, 1))
        return h
