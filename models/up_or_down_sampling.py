"""FIR up/down-sampling in the style of StyleGAN2 (Karras et al., 2020), NHWC, as used by
NCSN++/DDPM++ (Song et al., ICLR 2021): `upfirdn2d` = zero-insert, pad, filter, subsample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def setup_kernel(k: Sequence[float] | np.ndarray) -> np.ndarray:
    """A 2-D FIR kernel normalised to sum 1.

    Args:
      k: 1-D taps (made separable by an outer product) or a 2-D kernel.

    Returns:
      float32 array [kh, kw] whose entries sum to 1.
    """
    k = np.asarray(k, dtype=np.float32)
    if k.ndim == 1:
        k = np.outer(k, k)
    return k / np.sum(k)


def upfirdn2d(x: jnp.ndarray, k: np.ndarray, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> jnp.ndarray:
    """Upsample by zero insertion, pad (negative crops), convolve with `k`, keep every down-th.

    Args:
      x: images [B, H, W, C].
      k: 2-D FIR kernel [kh, kw] (applied as a true convolution, i.e. flipped).
      up: upsampling factor (up - 1 zeros after every sample).
      down: downsampling factor.
      pad: (before, after) padding of both spatial axes, applied after zero insertion.

    Returns:
      [B, (H*up + sum(pad) - kh) // down + 1, (W*up + sum(pad) - kw) // down + 1, C].
    """
    k = np.asarray(k, dtype=np.float32)
    channels = x.shape[-1]
    p0, p1 = pad
    spatial = (p0, p1 + up - 1, up - 1)
    x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), spatial, spatial, (0, 0, 0)])
    w = jnp.asarray(k[::-1, ::-1].copy(), dtype=x.dtype)[:, :, None, None]
    w = jnp.tile(w, (1, 1, 1, channels))  # [kh, kw, 1, C], one filter per channel
    return lax.conv_general_dilated(x, w, (down, down), "VALID", dimension_numbers=_DN,
                                    feature_group_count=channels)


def upsample_2d(x: jnp.ndarray, k: Sequence[float] | None = None, factor: int = 2,
                gain: float = 1.0) -> jnp.ndarray:
    """Upsample by `factor` with FIR filter `k` (default: nearest neighbour).

    Args:
      x: images [B, H, W, C].
      k: FIR taps; None means [1] * factor.
      factor: integer upsampling factor.
      gain: signal gain.

    Returns:
      [B, H * factor, W * factor, C].
    """
    k = setup_kernel([1] * factor if k is None else k) * (gain * factor**2)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: jnp.ndarray, k: Sequence[float] | None = None, factor: int = 2,
                  gain: float = 1.0) -> jnp.ndarray:
    """Downsample by `factor` with FIR filter `k` (default: average pooling).

    Args:
      x: images [B, H, W, C] with H, W divisible by `factor`.
      k: FIR taps; None means [1] * factor.
      factor: integer downsampling factor.
      gain: signal gain.

    Returns:
      [B, H // factor, W // factor, C].
    """
    k = setup_kernel([1] * factor if k is None else k) * gain
    p = k.shape[0] - factor
    return upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x: jnp.ndarray, w: jnp.ndarray, k: Sequence[float] | None = None,
                     factor: int = 2, gain: float = 1.0) -> jnp.ndarray:
    """Fused transposed convolution (stride `factor`) followed by FIR filtering.

    Args:
      x: images [B, H, W, Cin].
      w: convolution weight [kh, kw, Cin, Cout], kh == kw odd.
      k: FIR taps; None means [1] * factor.
      factor: integer upsampling factor.
      gain: signal gain.

    Returns:
      [B, H * factor, W * factor, Cout].
    """
    kw = w.shape[1]
    k = setup_kernel([1] * factor if k is None else k) * (gain * factor**2)
    # Stride-`factor` transposed convolution: zero-insert, then a full correlation with w.
    x = lax.conv_general_dilated(x, w, (1, 1), [(kw - 1, kw - 1)] * 2,
                                 lhs_dilation=(factor, factor), dimension_numbers=_DN)
    p = (k.shape[0] - factor) - (kw - 1)
    return upfirdn2d(x, k, pad=((p + 1) // 2 + factor - 1, p // 2 + factor - 1))


def conv_downsample_2d(x: jnp.ndarray, w: jnp.ndarray, k: Sequence[float] | None = None,
                       factor: int = 2, gain: float = 1.0) -> jnp.ndarray:
    """FIR filtering followed by a fused strided convolution.

    Args:
      x: images [B, H, W, Cin] with H, W divisible by `factor`.
      w: convolution weight [kh, kw, Cin, Cout], kh == kw odd.
      k: FIR taps; None means [1] * factor.
      factor: integer downsampling factor.
      gain: signal gain.

    Returns:
      [B, H // factor, W // factor, Cout].
    """
    kw = w.shape[1]
    k = setup_kernel([1] * factor if k is None else k) * gain
    p = (k.shape[0] - factor) + (kw - 1)
    x = upfirdn2d(x, k, pad=((p + 1) // 2, p // 2))
    return lax.conv_general_dilated(x, w, (factor, factor), "VALID", dimension_numbers=_DN)


def naive_upsample_2d(x: jnp.ndarray, factor: int = 2) -> jnp.ndarray:
    """Nearest-neighbour upsampling.

    Args:
      x: [B, H, W, C]. factor: integer factor.

    Returns:
      [B, H * factor, W * factor, C].
    """
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def naive_downsample_2d(x: jnp.ndarray, factor: int = 2) -> jnp.ndarray:
    """Average pooling over factor x factor blocks.

    Args:
      x: [B, H, W, C] with H, W divisible by `factor`. factor: integer factor.

    Returns:
      [B, H // factor, W // factor, C].
    """
    b, h, w, c = x.shape
    x = x.reshape(b, h // factor, factor, w // factor, factor, c)
    return jnp.mean(x, axis=(2, 4))


class Conv2d(nn.Module):
    """Convolution with optional fused FIR up- or down-sampling by 2 (StyleGAN2's modconv
    without modulation).

    Attributes:
      features: output channels.
      kernel: odd spatial kernel size.
      up: upsample by 2 (transposed conv + FIR).
      down: downsample by 2 (FIR + strided conv).
      fir_kernel: 1-D FIR taps for resampling.
      use_bias: add a learned bias.
      kernel_init: initialiser of the [k, k, Cin, Cout] weight.
    """

    features: int
    kernel: int = 3
    up: bool = False
    down: bool = False
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Args: x [B, H, W, Cin]. Returns: [B, H', W', features] (H' = 2H, H/2 or H)."""
        if self.up and self.down:
            raise ValueError("Conv2d: up and down are exclusive")
        if self.kernel < 1 or self.kernel % 2 != 1:
            raise ValueError(f"Conv2d: kernel={self.kernel} must be odd and positive")
        shape = (self.kernel, self.kernel, x.shape[-1], self.features)
        w = self.param("kernel", self.kernel_init, shape).astype(x.dtype)
        if self.up:
            h = upsample_conv_2d(x, w, k=self.fir_kernel)
        elif self.down:
            h = conv_downsample_2d(x, w, k=self.fir_kernel)
        else:
            h = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DN)
        if self.use_bias:
            h = h + self.param("bias", jax.nn.initializers.zeros, (self.features,)).astype(h.dtype)
        return h
