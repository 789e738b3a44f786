"""The KL-regularised autoencoder of latent diffusion (Rombach et al., CVPR 2022, Sec. 3.1 and
App. G): a GroupNorm-ResNet encoder giving a diagonal Gaussian posterior q(z|x), a mirrored
decoder, and the PatchGAN discriminator (Isola et al., 2017) of its optional adversarial loss.
Module names mirror diffusers' `AutoencoderKL`. NHWC.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from models.conv import Conv
from models.ldm_layers import (
    Downsample,
    ResnetBlock,
    SpatialSelfAttention,
    Upsample,
    check_groups,
    group_norm,
)
from utils import ConfigError, batch_sum, choose

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


@flax.struct.dataclass
class DiagonalGaussian:
    """q(z|x) = N(mean, diag(exp(logvar))) with logvar clipped to [-30, 20] (as LDM).

    Attributes:
      mean: [B, h, w, c]. logvar: [B, h, w, c] (already clipped).
      deterministic: a point mass at `mean` (double_z=False): zero std, kl and nll.
    """

    mean: jnp.ndarray
    logvar: jnp.ndarray
    deterministic: bool = flax.struct.field(pytree_node=False, default=False)

    @classmethod
    def from_moments(cls, moments, deterministic: bool = False) -> DiagonalGaussian:
        """Split [B, h, w, 2c] moments on the channel axis into mean and (clipped) logvar.

        Args:
          moments: [B, h, w, 2c], or the mean [B, h, w, c] itself when `deterministic`.
          deterministic: build a point mass at the mean.

        Returns:
          the posterior.
        """
        if deterministic:
            return cls(moments, jnp.full_like(moments, LOGVAR_MIN), True)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return cls(mean, jnp.clip(logvar, LOGVAR_MIN, LOGVAR_MAX))

    @property
    def std(self) -> jnp.ndarray:
        """exp(logvar / 2), [B, h, w, c] (zero if deterministic)."""
        return jnp.zeros_like(self.mean) if self.deterministic else jnp.exp(0.5 * self.logvar)

    @property
    def var(self) -> jnp.ndarray:
        """exp(logvar), [B, h, w, c] (zero if deterministic)."""
        return jnp.zeros_like(self.mean) if self.deterministic else jnp.exp(self.logvar)

    def sample(self, rng) -> jnp.ndarray:
        """z = mean + std * eps, eps ~ N(0, I); [B, h, w, c]."""
        return self.mean + self.std * jax.random.normal(rng, self.mean.shape, self.mean.dtype)

    def mode(self) -> jnp.ndarray:
        """The posterior mode (its mean), [B, h, w, c]."""
        return self.mean

    def kl(self) -> jnp.ndarray:
        """KL(q || N(0, I)) = 1/2 sum(mean^2 + var - 1 - logvar) over latent dims; [B]."""
        if self.deterministic:
            return jnp.zeros(self.mean.shape[:1], self.mean.dtype)
        return 0.5 * batch_sum(self.mean**2 + self.var - 1.0 - self.logvar)

    def nll(self, x) -> jnp.ndarray:
        """-log q(x) = 1/2 sum(log 2 pi + logvar + (x - mean)^2 / var) over dims; [B]."""
        if self.deterministic:
            return jnp.zeros(self.mean.shape[:1], self.mean.dtype)
        return 0.5 * batch_sum(np.log(2.0 * np.pi) + self.logvar
                               + (x - self.mean) ** 2 / self.var)


class MidBlock(nn.Module):
    """resnets_0, attentions_0 (self-attention), resnets_1 at the lowest resolution."""

    channels: int
    groups: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        """x: [B, h, w, channels] -> same shape."""
        res = lambda j: ResnetBlock(self.channels, self.groups, 1e-6, self.dropout,
                                    name=f"resnets_{j}")
        x = res(0)(x, train=train)
        x = SpatialSelfAttention(self.groups, 1e-6, name="attentions_0")(x)
        return res(1)(x, train=train)


class ResnetStack(nn.Module):
    """One encoder or decoder level: `num_layers` resnets (each followed by self-attention
    when `attend`), then a downsampler (encoder) or upsampler (decoder) when `resample` is set.
    """

    channels: int
    num_layers: int
    groups: int
    attend: bool = False
    resample: str = "none"  # 'down' | 'up' | 'none'
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        """x: [B, H, W, C] -> [B, H', W', channels]."""
        for j in range(self.num_layers):
            x = ResnetBlock(self.channels, self.groups, 1e-6, self.dropout,
                            name=f"resnets_{j}")(x, train=train)
            if self.attend:
                x = SpatialSelfAttention(self.groups, 1e-6, name=f"attentions_{j}")(x)
        if self.resample == "down":
            x = Downsample(self.channels, asymmetric=True, name="downsamplers_0")(x)
        elif self.resample == "up":
            x = Upsample(self.channels, name="upsamplers_0")(x)
        return x


class Encoder(nn.Module):
    """x [B, H, W, C] -> posterior moments [B, H/f, W/f, 2 z_channels] (z_channels if not
    double_z), f = 2**(len(ch_mult) - 1). Fields as in `AutoencoderKL`."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    attn_resolutions: tuple[int, ...]
    resolution: int
    dropout: float
    groups: int
    double_z: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Conv(self.ch, (3, 3), padding=((1, 1), (1, 1)), name="conv_in")(x)
        n = len(self.ch_mult)
        for i, mult in enumerate(self.ch_mult):
            x = ResnetStack(self.ch * mult, self.num_res_blocks, self.groups,
                            attend=self.resolution // 2**i in self.attn_resolutions,
                            resample="down" if i < n - 1 else "none", dropout=self.dropout,
                            name=f"down_blocks_{i}")(x, train=train)
        x = MidBlock(self.ch * self.ch_mult[-1], self.groups, self.dropout,
                     name="mid_block")(x, train=train)
        x = nn.silu(group_norm(self.groups, 1e-6, "conv_norm_out")(x))
        out = 2 * self.z_channels if self.double_z else self.z_channels
        return Conv(out, (3, 3), padding=((1, 1), (1, 1)), name="conv_out")(x)


class Decoder(nn.Module):
    """z [B, h, w, z_channels] -> x [B, h f, w f, out_channels]; levels in reverse order, each
    with num_res_blocks + 1 resnets and an upsampler on all but the last."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    out_channels: int
    attn_resolutions: tuple[int, ...]
    resolution: int
    dropout: float
    groups: int

    @nn.compact
    def __call__(self, z, train: bool = False):
        top = self.ch * self.ch_mult[-1]
        x = Conv(top, (3, 3), padding=((1, 1), (1, 1)), name="conv_in")(z)
        x = MidBlock(top, self.groups, self.dropout, name="mid_block")(x, train=train)
        n = len(self.ch_mult)
        for i in range(n):
            level = n - 1 - i
            x = ResnetStack(self.ch * self.ch_mult[level], self.num_res_blocks + 1, self.groups,
                            attend=self.resolution // 2**level in self.attn_resolutions,
                            resample="up" if i < n - 1 else "none", dropout=self.dropout,
                            name=f"up_blocks_{i}")(x, train=train)
        x = nn.silu(group_norm(self.groups, 1e-6, "conv_norm_out")(x))
        return Conv(self.out_channels, (3, 3), padding=((1, 1), (1, 1)), name="conv_out")(x)


def check_autoencoder(ae: AutoencoderKL):
    """Raise ConfigError for impossible AutoencoderKL fields (keys of config.autoencoder)."""
    if not ae.ch_mult or min(ae.ch_mult) < 1 or ae.ch < 1 or ae.num_res_blocks < 1:
        raise ConfigError(f"autoencoder.ch={ae.ch}, ch_mult={tuple(ae.ch_mult)}, "
                          f"num_res_blocks={ae.num_res_blocks} must be positive")
    widths = [ae.ch] + [ae.ch * m for m in ae.ch_mult]
    check_groups("autoencoder.norm_num_groups", ae.norm_num_groups, widths,
                 f"ch={ae.ch}, ch_mult={tuple(ae.ch_mult)}")
    levels = [ae.resolution // 2**i for i in range(len(ae.ch_mult))]
    if not set(ae.attn_resolutions) <= set(levels):
        raise ConfigError(f"autoencoder.attn_resolutions={tuple(ae.attn_resolutions)} do not "
                          f"occur; resolutions are {tuple(levels)}")
    if not 0.0 <= ae.dropout < 1.0:
        raise ConfigError(f"autoencoder.dropout={ae.dropout} must be in [0, 1)")


class AutoencoderKL(nn.Module):
    """The latent-diffusion KL autoencoder (diffusers' `AutoencoderKL` tree: encoder,
    quant_conv, post_quant_conv, decoder).

    Attributes:
      in_channels, out_channels: image channels. ch: first level width. ch_mult: per-level
      multipliers (downsampling factor 2**(len - 1)). num_res_blocks: resnets per encoder level.
      z_channels: encoder/decoder latent width. embed_dim: width of the sampled latent z.
      attn_resolutions: down-path resolutions whose resnets are followed by self-attention.
      resolution: the training image size those resolutions refer to. dropout: resnet dropout.
      norm_num_groups: GroupNorm groups (32 in SD). double_z: a Gaussian (else a point mass).
    """

    in_channels: int = 3
    out_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    attn_resolutions: tuple[int, ...] = ()
    resolution: int = 256
    dropout: float = 0.0
    norm_num_groups: int = 32
    double_z: bool = True

    def setup(self):
        check_autoencoder(self)
        common = dict(ch=self.ch, ch_mult=tuple(self.ch_mult), num_res_blocks=self.num_res_blocks,
                      attn_resolutions=tuple(self.attn_resolutions), resolution=self.resolution,
                      dropout=self.dropout, groups=self.norm_num_groups)
        self.encoder = Encoder(z_channels=self.z_channels, double_z=self.double_z, **common)
        moments = 2 * self.embed_dim if self.double_z else self.embed_dim
        self.quant_conv = Conv(moments, (1, 1))
        self.post_quant_conv = Conv(self.z_channels, (1, 1))
        self.decoder = Decoder(out_channels=self.out_channels, **common)

    def encode(self, x, train: bool = False) -> DiagonalGaussian:
        """x: [B, H, W, in_channels] -> q(z|x) over [B, H/f, W/f, embed_dim]."""
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ConfigError(f"autoencoder input of shape {tuple(x.shape)} does not match "
                              f"autoencoder.in_channels={self.in_channels} (NHWC)")
        moments = self.quant_conv(self.encoder(x, train=train))
        return DiagonalGaussian.from_moments(moments, deterministic=not self.double_z)

    def decode(self, z, train: bool = False) -> jnp.ndarray:
        """z: [B, h, w, embed_dim] -> x: [B, h f, w f, out_channels]."""
        return self.decoder(self.post_quant_conv(z), train=train)

    def __call__(self, x, rng=None, sample_posterior: bool = True, train: bool = False):
        """Reconstruct x through a posterior sample (or its mode).

        Args:
          x: [B, H, W, in_channels]. rng: key for the posterior sample; None draws it from
            the 'posterior' rng stream. sample_posterior: sample z (else use the mode).
          train: enables dropout (needs a 'dropout' rng when autoencoder.dropout > 0).

        Returns:
          (recon [B, H, W, out_channels], posterior).
        """
        posterior = self.encode(x, train=train)
        if sample_posterior:
            z = posterior.sample(self.make_rng("posterior") if rng is None else rng)
        else:
            z = posterior.mode()
        return self.decode(z, train=train), posterior


DISC_NORMS = ("group", "none")


class PatchDiscriminator(nn.Module):
    """The pix2pix / LDM NLayerDiscriminator: a grid of real/fake logits, one per patch.

    BatchNorm of the original is replaced by GroupNorm (`norm='group'`, no mutable batch
    statistics) or dropped (`norm='none'`); the first and last convs are never normalised.

    Attributes:
      ndf: first layer width. n_layers: stride-2 layers after the first. norm: 'group' | 'none'.
      norm_num_groups: GroupNorm groups (must divide ndf).
    """

    ndf: int = 64
    n_layers: int = 3
    norm: str = "group"
    norm_num_groups: int = 32

    @nn.compact
    def __call__(self, x):
        """x: [B, H, W, C] -> logits [B, H', W', 1], H' = H / 2**n_layers - 2."""
        choose("autoencoder.disc_norm", self.norm, DISC_NORMS)
        if self.norm == "group":
            widths = [self.ndf * min(2**n, 8) for n in range(1, self.n_layers + 1)]
            check_groups("discriminator norm_num_groups", self.norm_num_groups, widths,
                         f"ndf={self.ndf}, n_layers={self.n_layers}")
        pad = ((1, 1), (1, 1))
        conv = functools.partial(Conv, kernel_size=(4, 4), padding=pad,
                                 kernel_init=nn.initializers.normal(0.02))  # as pix2pix
        x = nn.leaky_relu(conv(self.ndf, strides=(2, 2))(x), 0.2)
        for n in range(1, self.n_layers + 1):
            width = self.ndf * min(2**n, 8)
            stride = 2 if n < self.n_layers else 1
            x = conv(width, strides=(stride, stride), use_bias=self.norm == "none")(x)
            if self.norm == "group":
                x = group_norm(self.norm_num_groups, 1e-5)(x)
            x = nn.leaky_relu(x, 0.2)
        return conv(1)(x)
