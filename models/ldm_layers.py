"""Building blocks shared by the latent-diffusion networks (Rombach et al., "High-Resolution
Image Synthesis with Latent Diffusion Models", CVPR 2022): GroupNorm-SiLU ResNet blocks,
resampling and multi-head attention. NHWC; submodule names mirror diffusers' (see pretrained).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.conv import Conv
from utils import ConfigError


def group_norm(groups: int, eps: float, name: str | None = None) -> nn.GroupNorm:
    """GroupNorm over contiguous channel groups (as torch), variance computed two-pass.

    Args:
      groups: number of groups. eps: epsilon. name: submodule name.

    Returns:
      an unbound nn.GroupNorm.
    """
    return nn.GroupNorm(num_groups=groups, epsilon=eps, use_fast_variance=False, name=name)


def check_groups(key: str, groups: int, channels, owner: str):
    """Raise ConfigError unless `groups` divides every channel count in `channels`.

    Args:
      key: the field name shown to the user (e.g. 'norm_num_groups').
      groups: the group count. channels: the widths normalised. owner: the widths' field text.
    """
    bad = sorted({c for c in channels if groups < 1 or c % groups})
    if bad:
        raise ConfigError(f"{key}={groups} must divide every normalised width; {owner} "
                          f"gives {bad}")


def attention(q, k, v, heads: int, mask=None):
    """Scaled dot-product attention through `jax.nn.dot_product_attention`.

    Args:
      q: [B, T, N*H] queries. k, v: [B, S, N*H] keys and values. heads: N.
      mask: optional boolean mask broadcastable to [B, N, T, S]; False keys get no weight.

    Returns:
      [B, T, N*H].
    """
    b, t, inner = q.shape
    if inner % heads:
        raise ConfigError(f"attention width {inner} is not divisible by {heads} heads")
    split = lambda a: a.reshape(a.shape[0], a.shape[1], heads, inner // heads)
    dtype = q.dtype
    if dtype == jnp.float16 and jax.default_backend() == "cpu":
        # XLA:CPU has no float16 x float16 -> float32 dot, which the attention asks for
        q, k, v = (a.astype(jnp.float32) for a in (q, k, v))
    out = jax.nn.dot_product_attention(split(q), split(k), split(v), mask=mask)
    return out.reshape(b, t, inner).astype(dtype)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block, optionally adding a projected time embedding.

    Attributes:
      out_channels: output width (a 1x1 `conv_shortcut` when it differs from the input's).
      groups: GroupNorm groups. eps: GroupNorm epsilon. dropout: rate before conv2.
      scale_shift: the time embedding gives a scale and a shift of norm2's output,
        h (1 + scale) + shift (diffusers' resnet_time_scale_shift='scale_shift'; AdaGN of
        Dhariwal & Nichol 2021), instead of a bias added before norm2.
    """

    out_channels: int
    groups: int = 32
    eps: float = 1e-6
    dropout: float = 0.0
    scale_shift: bool = False

    @nn.compact
    def __call__(self, x, temb=None, train: bool = False):
        """x: [B, H, W, C_in]; temb: [B, D] or None. Returns [B, H, W, out_channels]."""
        h = nn.silu(group_norm(self.groups, self.eps, "norm1")(x))
        h = Conv(self.out_channels, (3, 3), padding=((1, 1), (1, 1)), name="conv1")(h)
        if temb is None:
            h = group_norm(self.groups, self.eps, "norm2")(h)
        elif self.scale_shift:
            t = nn.Dense(2 * self.out_channels, name="time_emb_proj")(nn.silu(temb))
            scale, shift = jnp.split(t[:, None, None, :], 2, axis=-1)
            h = group_norm(self.groups, self.eps, "norm2")(h) * (1.0 + scale) + shift
        else:
            t = nn.Dense(self.out_channels, name="time_emb_proj")(nn.silu(temb))  # [B, C]
            h = group_norm(self.groups, self.eps, "norm2")(h + t[:, None, None, :])
        h = nn.silu(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = Conv(self.out_channels, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(h)
        if x.shape[-1] != self.out_channels:
            x = Conv(self.out_channels, (1, 1), name="conv_shortcut")(x)
        return x + h


class Downsample(nn.Module):
    """Stride-2 3x3 conv named `conv`; `asymmetric` pads (0, 1) as diffusers' autoencoder.

    Attributes:
      channels: output width. asymmetric: pad right/bottom only (else 1 on every side).
    """

    channels: int
    asymmetric: bool = False

    @nn.compact
    def __call__(self, x):
        """x: [B, H, W, C] -> [B, H/2, W/2, channels]."""
        pad = ((0, 1), (0, 1)) if self.asymmetric else ((1, 1), (1, 1))
        return Conv(self.channels, (3, 3), strides=(2, 2), padding=pad, name="conv")(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 conv named `conv`.

    Attributes:
      channels: output width.
    """

    channels: int

    @nn.compact
    def __call__(self, x):
        """x: [B, H, W, C] -> [B, 2H, 2W, channels]."""
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return Conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), name="conv")(x)


class SpatialSelfAttention(nn.Module):
    """The autoencoder's residual self-attention over H*W positions (group_norm, to_q, to_k,
    to_v with bias, to_out_0), one head by default as in diffusers' AutoencoderKL.

    Attributes:
      groups: GroupNorm groups. eps: GroupNorm epsilon. heads: attention heads.
    """

    groups: int = 32
    eps: float = 1e-6
    heads: int = 1

    @nn.compact
    def __call__(self, x):
        """x: [B, H, W, C] -> [B, H, W, C]."""
        b, hh, ww, c = x.shape
        h = group_norm(self.groups, self.eps, "group_norm")(x).reshape(b, hh * ww, c)
        q, k, v = (nn.Dense(c, name=n)(h) for n in ("to_q", "to_k", "to_v"))
        h = nn.Dense(c, name="to_out_0")(attention(q, k, v, self.heads))
        return x + h.reshape(b, hh, ww, c)
