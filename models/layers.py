"""Building blocks of the DDPM UNet (Ho et al., 2020) and of NCSN++/DDPM++ (Song et al.,
"Score-Based Generative Modeling through SDEs", ICLR 2021): initialisers, embeddings,
self-attention, resampling and the DDPM / BigGAN residual blocks. All tensors are NHWC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from models import up_or_down_sampling as updown
from models.conv import Conv
from utils import ConfigError

act = nn.swish


def default_init(scale: float = 1.0) -> Callable:
    """DDPM initialiser: variance scaling, fan_avg, uniform; scale 0 means (almost) zero.

    Args:
      scale: variance scale; 0 is replaced by 1e-10 so layers start near the identity.

    Returns:
      a Flax initialiser.
    """
    return nn.initializers.variance_scaling(scale if scale != 0 else 1e-10, "fan_avg", "uniform")


def num_groups(channels: int) -> int:
    """GroupNorm group count used by score_sde.

    Args:
      channels: number of channels C.

    Returns:
      min(C // 4, 32).
    """
    return min(channels // 4, 32)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with `num_groups(channels)` groups (validated by `check_group_norm`).

    Args:
      channels: number of channels it will normalise.

    Returns:
      an unbound nn.GroupNorm (epsilon 1e-6).
    """
    return nn.GroupNorm(num_groups=num_groups(channels), epsilon=1e-6)


def check_group_norm(channels: Iterable[int], nf: int):
    """Raise ConfigError unless every normalised channel count C is divisible by its groups.

    Args:
      channels: every channel count a network feeds to `group_norm`.
      nf: the model.nf that produced them (named in the message).
    """
    for c in sorted(set(channels)):
        g = num_groups(c)
        if g < 1 or c % g:
            raise ConfigError(f"model.nf={nf} gives {c} channels, incompatible with GroupNorm({g}) "
                              "(needs C >= 4 and C divisible by min(C // 4, 32))")


def unet_norm_channels(nf: int, ch_mult: tuple[int, ...], num_res_blocks: int,
                       double_downsampled: bool = False) -> set[int]:
    """Channel counts normalised inside a DDPM-style UNet with skip concatenation.

    Args:
      nf: base channels. ch_mult: per-resolution multipliers. num_res_blocks: blocks per level.
      double_downsampled: the downsampled features are concatenated with an equal-width
        input-pyramid branch (NCSN++ progressive_input='input_skip', combine 'cat').

    Returns:
      the set of channel counts seen by GroupNorm.
    """
    c, skips, seen = nf, [nf], set()
    for level, mult in enumerate(ch_mult):
        for _ in range(num_res_blocks):
            seen |= {c, nf * mult}
            c = nf * mult
            skips.append(c)
        if level != len(ch_mult) - 1:
            seen.add(c)
            c = 2 * c if double_downsampled else c
            skips.append(c)
    seen.add(c)
    for mult in reversed(ch_mult):
        for _ in range(num_res_blocks + 1):
            seen |= {c + skips.pop(), nf * mult}
            c = nf * mult
    return seen


def conv3x3(x: jnp.ndarray, features: int, stride: int = 1, init_scale: float = 1.0,
            padding: str | tuple = "SAME") -> jnp.ndarray:
    """3x3 convolution with DDPM init and zero bias.

    Args:
      x: [B, H, W, C]. features: output channels. stride: spatial stride.
      init_scale: DDPM init scale. padding: Flax padding spec.

    Returns:
      [B, H', W', features].
    """
    return Conv(features, (3, 3), strides=(stride, stride), padding=padding,
                   kernel_init=default_init(init_scale))(x)


def conv1x1(x: jnp.ndarray, features: int, init_scale: float = 1.0) -> jnp.ndarray:
    """1x1 convolution with DDPM init and zero bias.

    Args:
      x: [B, H, W, C]. features: output channels. init_scale: DDPM init scale.

    Returns:
      [B, H, W, features].
    """
    return Conv(features, (1, 1), kernel_init=default_init(init_scale))(x)


class NIN(nn.Module):
    """Network-in-network: a dense layer over channels at every pixel.

    Attributes:
      features: output channels.
      init_scale: DDPM init scale of the weight.
    """

    features: int
    init_scale: float = 0.1

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Args: x [B, H, W, C]. Returns: [B, H, W, features]."""
        w = self.param("W", default_init(self.init_scale), (x.shape[-1], self.features))
        b = self.param("b", nn.initializers.zeros, (self.features,))
        return jnp.einsum("bhwc,cd->bhwd", x, w) + b


def timestep_embedding(timesteps: jnp.ndarray, dim: int, max_positions: int = 10000):
    """Sinusoidal embedding of (possibly fractional) time labels (Transformer / DDPM).

    Args:
      timesteps: [B] labels, embedded as given.
      dim: embedding width.
      max_positions: longest period scale.

    Returns:
      [B, dim]: sin features then cos features (zero-padded if dim is odd).
    """
    half = dim // 2
    freqs = np.exp(-math.log(max_positions) / max(half - 1, 1) * np.arange(half))
    args = timesteps.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar (Tancik et al., 2020) with fixed frequencies.

    The frequencies W ~ N(0, scale^2) are drawn from numpy with `seed`, so they are constants,
    not parameters: no optimiser (or weight decay) can change them.

    Attributes:
      embedding_size: number of frequencies; the output has twice as many features.
      scale: standard deviation of the frequencies (model.fourier_scale).
      seed: seed of the frequencies.
    """

    embedding_size: int = 256
    scale: float = 1.0
    seed: int = 0

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Args: x [B] (e.g. log sigma). Returns: [B, 2 * embedding_size] = [sin, cos]."""
        freqs = np.random.default_rng(self.seed).standard_normal(self.embedding_size) * self.scale
        proj = x[:, None] * freqs[None, :].astype(np.float32) * (2 * np.pi)
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


class Combine(nn.Module):
    """Merge an input-pyramid branch into the features: 1x1 conv then sum or concatenation.

    Attributes:
      method: 'sum' or 'cat'.
    """

    method: str = "cat"

    @nn.compact
    def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        """Args: x [B, H, W, Cx] pyramid, y [B, H, W, C]. Returns: [B, H, W, C] or 2C for cat."""
        h = conv1x1(x, y.shape[-1])
        if self.method == "cat":
            return jnp.concatenate([h, y], axis=-1)
        if self.method == "sum":
            return h + y
        raise ConfigError(f"model.progressive_combine={self.method!r} is not valid; "
                          "choose one of: sum, cat")


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels with a residual connection.

    Attributes:
      skip_rescale: return (x + h) / sqrt(2) instead of x + h.
      init_scale: init scale of the output projection (0 starts the block as identity).
    """

    skip_rescale: bool = False
    init_scale: float = 0.0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Args: x [B, H, W, C]. Returns: [B, H, W, C]."""
        b, height, width, c = x.shape
        h = group_norm(c)(x)
        q, k, v = NIN(c)(h), NIN(c)(h), NIN(c)(h)
        w = jnp.einsum("bhwc,bHWc->bhwHW", q, k) * (c**-0.5)
        w = nn.softmax(w.reshape(b, height, width, height * width), axis=-1)
        w = w.reshape(b, height, width, height, width)
        h = jnp.einsum("bhwHW,bHWc->bhwc", w, v)
        h = NIN(c, init_scale=self.init_scale)(h)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


class Upsample(nn.Module):
    """Upsample by 2: nearest (+ 3x3 conv), or FIR (+ fused transposed conv).

    Attributes:
      out_ch: output channels when with_conv (default: input channels).
      with_conv: apply a learned convolution.
      fir: use the FIR kernel instead of nearest-neighbour.
      fir_kernel: FIR taps.
    """

    out_ch: int | None = None
    with_conv: bool = False
    fir: bool = False
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Args: x [B, H, W, C]. Returns: [B, 2H, 2W, out_ch or C]."""
        out_ch = self.out_ch or x.shape[-1]
        if self.fir:
            if not self.with_conv:
                return updown.upsample_2d(x, self.fir_kernel, factor=2)
            return updown.Conv2d(out_ch, kernel=3, up=True, fir_kernel=self.fir_kernel,
                                 kernel_init=default_init())(x)
        h = updown.naive_upsample_2d(x, factor=2)
        return conv3x3(h, out_ch) if self.with_conv else h


class Downsample(nn.Module):
    """Downsample by 2: average pool or stride-2 3x3 conv, or FIR (+ fused strided conv).

    Attributes:
      out_ch: output channels when with_conv (default: input channels).
      with_conv: apply a learned convolution.
      fir: use the FIR kernel instead of box filtering.
      fir_kernel: FIR taps.
    """

    out_ch: int | None = None
    with_conv: bool = False
    fir: bool = False
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Args: x [B, H, W, C], H and W even. Returns: [B, H/2, W/2, out_ch or C]."""
        out_ch = self.out_ch or x.shape[-1]
        if self.fir:
            if not self.with_conv:
                return updown.downsample_2d(x, self.fir_kernel, factor=2)
            return updown.Conv2d(out_ch, kernel=3, down=True, fir_kernel=self.fir_kernel,
                                 kernel_init=default_init())(x)
        if self.with_conv:
            return conv3x3(x, out_ch, stride=2, padding=((0, 1), (0, 1)))
        return updown.naive_downsample_2d(x, factor=2)


def add_time(h: jnp.ndarray, temb: jnp.ndarray | None) -> jnp.ndarray:
    """Add a learned per-example projection of act(temb) to every pixel.

    Args:
      h: features [B, H, W, C]. temb: time embedding [B, T], or None (returns h).

    Returns:
      [B, H, W, C].
    """
    if temb is None:
        return h
    return h + nn.Dense(h.shape[-1], kernel_init=default_init())(act(temb))[:, None, None, :]


class ResnetBlockDDPM(nn.Module):
    """The DDPM residual block: GN-act-conv, + time, GN-act-dropout-conv, skip.

    Attributes:
      out_ch: output channels (default: input channels).
      conv_shortcut: 3x3 conv on the skip when channels change (else NIN).
      dropout: dropout rate.
      skip_rescale: return (x + h) / sqrt(2).
      init_scale: init scale of the last conv (0 starts the block as identity).
    """

    out_ch: int | None = None
    conv_shortcut: bool = False
    dropout: float = 0.1
    skip_rescale: bool = False
    init_scale: float = 0.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, temb: jnp.ndarray | None = None,
                 train: bool = False) -> jnp.ndarray:
        """Args: x [B, H, W, C]; temb [B, T] or None; train enables dropout ('dropout' rng).

        Returns: [B, H, W, out_ch].
        """
        c = x.shape[-1]
        out_ch = self.out_ch or c
        h = conv3x3(act(group_norm(c)(x)), out_ch)
        h = add_time(h, temb)
        h = act(group_norm(out_ch)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv3x3(h, out_ch, init_scale=self.init_scale)
        if c != out_ch:
            x = conv3x3(x, out_ch) if self.conv_shortcut else NIN(out_ch)(x)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


class ResnetBlockBigGAN(nn.Module):
    """BigGAN-style residual block with optional up/down-sampling inside (NCSN++).

    Attributes:
      out_ch: output channels (default: input channels).
      up: upsample by 2 after the first activation (and on the skip path).
      down: downsample by 2 likewise.
      dropout: dropout rate.
      fir: FIR resampling instead of nearest / average pooling.
      fir_kernel: FIR taps.
      skip_rescale: return (x + h) / sqrt(2).
      init_scale: init scale of the last conv.
    """

    out_ch: int | None = None
    up: bool = False
    down: bool = False
    dropout: float = 0.1
    fir: bool = False
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    init_scale: float = 0.0

    def _resample(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.up:
            if self.fir:
                return updown.upsample_2d(x, self.fir_kernel, factor=2)
            return updown.naive_upsample_2d(x, factor=2)
        if self.down:
            if self.fir:
                return updown.downsample_2d(x, self.fir_kernel, factor=2)
            return updown.naive_downsample_2d(x, factor=2)
        return x

    @nn.compact
    def __call__(self, x: jnp.ndarray, temb: jnp.ndarray | None = None,
                 train: bool = False) -> jnp.ndarray:
        """Args: x [B, H, W, C]; temb [B, T] or None; train enables dropout ('dropout' rng).

        Returns: [B, H', W', out_ch] with H' = 2H (up), H/2 (down) or H.
        """
        c = x.shape[-1]
        out_ch = self.out_ch or c
        h = self._resample(act(group_norm(c)(x)))
        x = self._resample(x)
        h = add_time(conv3x3(h, out_ch), temb)
        h = act(group_norm(out_ch)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv3x3(h, out_ch, init_scale=self.init_scale)
        if c != out_ch or self.up or self.down:
            x = conv1x1(x, out_ch)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h
