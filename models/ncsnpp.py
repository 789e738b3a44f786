"""NCSN++ and DDPM++, the configurable score networks of Song et al., "Score-Based Generative
Modeling through Stochastic Differential Equations" (ICLR 2021), Section 4.4 and Appendix H.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from models import layers
from models.ddpm import check_common, check_unet_shapes, class_embedding
from models.layers import act
from utils import ConfigError, choose

RESBLOCK_TYPES = ("ddpm", "biggan")
PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
PROGRESSIVE_COMBINE = ("sum", "cat")
EMBEDDING_TYPES = ("fourier", "positional")


def _merge(a: jnp.ndarray, b: jnp.ndarray, skip_rescale: bool) -> jnp.ndarray:
    """Residual merge of two equal-shape tensors, optionally rescaled by 1/sqrt(2)."""
    return (a + b) / np.sqrt(2.0) if skip_rescale else a + b


class NCSNpp(nn.Module):
    """NCSN++ (VE, defaults) / DDPM++ (VP: resblock 'biggan', fir False, progressive 'none',
    progressive_input 'none', embedding 'positional', scale_by_sigma False).

    Attributes:
      image_size: data.image_size (H = W).
      num_channels: data.num_channels.
      centered: data.centered; if False, inputs in [0, 1] are mapped to [-1, 1].
      nf: base channels.
      ch_mult: channel multiplier per resolution level.
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attn_resolutions: resolutions with self-attention.
      dropout: dropout rate inside residual blocks.
      resamp_with_conv: learned convolutions in Upsample/Downsample ('ddpm' blocks).
      conditional: embed `labels` and feed them to every residual block.
      resblock_type: 'ddpm' (separate resampling layers) or 'biggan' (resampling in blocks).
      fir: FIR up/down-sampling with `fir_kernel`.
      fir_kernel: FIR taps.
      skip_rescale: rescale every residual sum by 1/sqrt(2).
      progressive: output path 'none' | 'output_skip' | 'residual'.
      progressive_input: input path 'none' | 'input_skip' | 'residual'.
      progressive_combine: 'sum' | 'cat', how 'input_skip' merges the input pyramid.
      embedding_type: 'fourier' (of log labels; labels = sigma) or 'positional' (labels).
      fourier_scale: std of the Gaussian Fourier frequencies.
      init_scale: init scale of the last conv of each block and of attention outputs.
      scale_by_sigma: divide the output by `labels` (noise std; VE only).
      num_classes: > 0 adds a learned class embedding (num_classes + 1 rows, the last the
        null class) to the time embedding; 0 leaves the network unconditional on classes.
    """

    image_size: int = 32
    num_channels: int = 3
    centered: bool = False
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    conditional: bool = True
    resblock_type: str = "biggan"
    fir: bool = True
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    progressive: str = "none"
    progressive_input: str = "residual"
    progressive_combine: str = "sum"
    embedding_type: str = "fourier"
    fourier_scale: float = 16.0
    init_scale: float = 0.0
    scale_by_sigma: bool = True
    num_classes: int = 0

    def check(self, x_shape: tuple[int, ...]):
        """Raise ConfigError (one line naming the key) for an impossible configuration."""
        choose("model.resblock_type", self.resblock_type, RESBLOCK_TYPES)
        choose("model.progressive", self.progressive, PROGRESSIVE)
        choose("model.progressive_input", self.progressive_input, PROGRESSIVE_INPUT)
        choose("model.progressive_combine", self.progressive_combine, PROGRESSIVE_COMBINE)
        choose("model.embedding_type", self.embedding_type, EMBEDDING_TYPES)
        check_common(self.nf, self.num_res_blocks, self.dropout)
        if self.fir and (len(self.fir_kernel) < 1 or sum(self.fir_kernel) == 0):
            raise ConfigError(f"model.fir_kernel={tuple(self.fir_kernel)} must be non-empty "
                              "taps with a non-zero sum, e.g. (1, 3, 3, 1)")
        if self.embedding_type == "fourier" and not self.fourier_scale > 0:
            raise ConfigError(f"model.fourier_scale={self.fourier_scale} must be > 0")
        check_unet_shapes(self.image_size, self.num_channels, self.ch_mult,
                          self.attn_resolutions, x_shape)
        cat = self.progressive_input == "input_skip" and self.progressive_combine == "cat"
        layers.check_group_norm(
            layers.unet_norm_channels(self.nf, self.ch_mult, self.num_res_blocks, cat), self.nf)

    def _time_embedding(self, labels: jnp.ndarray) -> jnp.ndarray | None:
        """[B] labels -> [B, 4 nf] embedding (None when unconditional)."""
        if not self.conditional:
            return None
        if self.embedding_type == "fourier":
            temb = layers.GaussianFourierProjection(self.nf, self.fourier_scale)(jnp.log(labels))
        else:
            temb = layers.timestep_embedding(labels, self.nf)
        temb = nn.Dense(self.nf * 4, kernel_init=layers.default_init())(temb)
        return nn.Dense(self.nf * 4, kernel_init=layers.default_init())(act(temb))

    def _resblock(self, h, temb, train, out_ch=None, up=False, down=False):
        if self.resblock_type == "ddpm":
            block = layers.ResnetBlockDDPM(out_ch=out_ch, dropout=self.dropout,
                                           skip_rescale=self.skip_rescale,
                                           init_scale=self.init_scale)
        else:
            block = layers.ResnetBlockBigGAN(out_ch=out_ch, up=up, down=down,
                                             dropout=self.dropout, fir=self.fir,
                                             fir_kernel=self.fir_kernel,
                                             skip_rescale=self.skip_rescale,
                                             init_scale=self.init_scale)
        return block(h, temb, train)

    def _attn(self, h):
        return layers.AttnBlock(skip_rescale=self.skip_rescale, init_scale=self.init_scale)(h)

    def _resample(self, h, temb, train, up: bool):
        """One resolution change of the main path: a layer ('ddpm') or a BigGAN block."""
        if self.resblock_type == "biggan":
            return self._resblock(h, temb, train, up=up, down=not up)
        kind = layers.Upsample if up else layers.Downsample
        return kind(with_conv=self.resamp_with_conv, fir=self.fir, fir_kernel=self.fir_kernel)(h)

    def _input_pyramid(self, pyramid, h):
        """Merge the downsampled input pyramid into h after a downsampling step."""
        if self.progressive_input == "input_skip":
            pyramid = layers.Downsample(fir=self.fir, fir_kernel=self.fir_kernel)(pyramid)
            return pyramid, layers.Combine(self.progressive_combine)(pyramid, h)
        pyramid = layers.Downsample(out_ch=h.shape[-1], with_conv=True, fir=self.fir,
                                    fir_kernel=self.fir_kernel)(pyramid)
        pyramid = _merge(pyramid, h, self.skip_rescale)
        return pyramid, pyramid

    def _down(self, x, temb, train):
        """Encoder: returns the list of skip activations (the last one feeds the middle)."""
        pyramid = x if self.progressive_input != "none" else None
        hs = [layers.conv3x3(x, self.nf)]  # [B, H, W, nf]
        for level, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                h = self._resblock(hs[-1], temb, train, out_ch=self.nf * mult)
                if h.shape[1] in self.attn_resolutions:
                    h = self._attn(h)
                hs.append(h)
            if level != len(self.ch_mult) - 1:
                h = self._resample(hs[-1], temb, train, up=False)
                if pyramid is not None:
                    pyramid, h = self._input_pyramid(pyramid, h)
                hs.append(h)
        return hs

    def _output_pyramid(self, pyramid, h, top: bool, out_channels: int):
        """Update the output pyramid at one level; returns (pyramid, h)."""
        skip = out_channels if self.progressive == "output_skip" else h.shape[-1]
        init = self.init_scale if self.progressive == "output_skip" else 1.0
        branch = layers.conv3x3(act(layers.group_norm(h.shape[-1])(h)), skip, init_scale=init)
        if self.progressive == "output_skip":
            if not top:
                pyramid = layers.Upsample(fir=self.fir, fir_kernel=self.fir_kernel)(pyramid)
            return (branch if top else pyramid + branch), h
        if top:
            return branch, h
        pyramid = layers.Upsample(out_ch=h.shape[-1], with_conv=True, fir=self.fir,
                                  fir_kernel=self.fir_kernel)(pyramid)
        pyramid = _merge(pyramid, h, self.skip_rescale)
        return pyramid, pyramid

    def _up(self, h, hs, temb, train, out_channels):
        """Decoder from the middle features h; consumes the skips hs; returns the features,
        or the output pyramid for progressive='output_skip'."""
        pyramid = None
        for level, mult in reversed(list(enumerate(self.ch_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, hs.pop()], axis=-1)
                h = self._resblock(h, temb, train, out_ch=self.nf * mult)
            if h.shape[1] in self.attn_resolutions:
                h = self._attn(h)
            if self.progressive != "none":
                top = level == len(self.ch_mult) - 1
                pyramid, h = self._output_pyramid(pyramid, h, top, out_channels)
            if level != 0:
                h = self._resample(h, temb, train, up=True)
        return pyramid if self.progressive == "output_skip" else h

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray, train: bool = False,
                 class_labels: jnp.ndarray | None = None) -> jnp.ndarray:
        """Predict the noise (VP) or the scaled score (VE) of a batch.

        Args:
          x: images [B, H, W, C].
          labels: [B] noise std sigma ('fourier') or time labels ('positional').
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
        hs = self._down(h, temb, train)
        h = hs[-1]  # [B, H / 2**(L-1), W / 2**(L-1), nf * ch_mult[-1]]
        h = self._resblock(h, temb, train)
        h = self._attn(h)
        h = self._resblock(h, temb, train)
        h = self._up(h, hs, temb, train, x.shape[-1])
        if self.progressive != "output_skip":
            h = act(layers.group_norm(h.shape[-1])(h))
            h = layers.conv3x3(h, x.shape[-1], init_scale=self.init_scale)  # [B, H, W, C]
        if self.scale_by_sigma:
            h = h / labels.reshape((-1, 1, 1, 1))
        return h
