"""The latent-diffusion UNet with cross-attention (Rombach et al., CVPR 2022, Sec. 3.3): ResNet
blocks with a sinusoidal time embedding and SpatialTransformers whose cross-attention reads the
text tokens, softmax(Q K^T / sqrt(d)) V. Module names mirror diffusers' `UNet2DConditionModel`.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from models.conv import Conv
from models.ldm_layers import Downsample, ResnetBlock, Upsample, attention, check_groups, group_norm
from utils import ConfigError


def timestep_embedding(t, dim: int, flip_sin_to_cos: bool = True, freq_shift: float = 0.0,
                       max_period: float = 10000.0) -> jnp.ndarray:
    """Sinusoidal embedding of (float) timesteps, frequencies max_period^(-i / (dim/2 - shift)).

    Args:
      t: [B] timesteps. dim: embedding width. flip_sin_to_cos: [cos, sin] (else [sin, cos]).
      freq_shift: the frequency denominator's shift (0 in SD, 1 in DDPM's original).
      max_period: the lowest frequency's period.

    Returns:
      [B, dim] (zero-padded by one column when dim is odd).
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32)
                    / (half - freq_shift))
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    sin, cos = jnp.sin(args), jnp.cos(args)
    emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def coordinates(x) -> jnp.ndarray:
    """[B, H, W, 2]: each pixel's (row, column) centre mapped to [-1, 1], in x's dtype."""
    b, hh, ww, _ = x.shape
    rows = (jnp.arange(hh, dtype=jnp.float32) + 0.5) / hh * 2.0 - 1.0
    cols = (jnp.arange(ww, dtype=jnp.float32) + 0.5) / ww * 2.0 - 1.0
    grid = jnp.stack(jnp.meshgrid(rows, cols, indexing="ij"), axis=-1).astype(x.dtype)
    return jnp.broadcast_to(grid[None], (b, hh, ww, 2))


class CrossAttention(nn.Module):
    """Multi-head attention of x on itself (context None) or on a context; to_q, to_k, to_v
    without bias, to_out_0 with bias.

    Attributes:
      heads: attention heads. head_dim: per-head width. dropout: on the output.
    """

    heads: int
    head_dim: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, context=None, mask=None, train: bool = False):
        """x: [B, T, C]; context: [B, S, D] or None; mask: [B, S] (1 = attend) or None."""
        inner = self.heads * self.head_dim
        kv = x if context is None else context
        q = nn.Dense(inner, use_bias=False, name="to_q")(x)
        k = nn.Dense(inner, use_bias=False, name="to_k")(kv)
        v = nn.Dense(inner, use_bias=False, name="to_v")(kv)
        keep = None if mask is None else mask.astype(bool)[:, None, None, :]  # [B, 1, 1, S]
        h = nn.Dense(x.shape[-1], name="to_out_0")(attention(q, k, v, self.heads, keep))
        return nn.Dropout(self.dropout, deterministic=not train)(h)


class GEGLU(nn.Module):
    """proj: Dense to 2 * inner, then hidden * gelu(gate) (exact GELU)."""

    inner: int

    @nn.compact
    def __call__(self, x):
        hidden, gate = jnp.split(nn.Dense(2 * self.inner, name="proj")(x), 2, axis=-1)
        return hidden * nn.gelu(gate, approximate=False)


class FeedForward(nn.Module):
    """net_0 (GEGLU to 4 * C), dropout, net_2 (Dense back to C)."""

    dropout: float = 0.0
    mult: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = GEGLU(self.mult * x.shape[-1], name="net_0")(x)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(x.shape[-1], name="net_2")(h)


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention, cross-attention on the context, GEGLU feed-forward."""

    heads: int
    head_dim: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, context, context_mask=None, train: bool = False, pos=None):
        """x: [B, T, C]; context: [B, S, D]; context_mask: [B, S]; pos: [T, C] or None, added
        to the normalised input of both attentions. Returns [B, T, C]."""
        ln = lambda n: nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name=n)
        attn = lambda n: CrossAttention(self.heads, self.head_dim, self.dropout, name=n)
        at = (lambda h: h) if pos is None else (lambda h: h + pos.astype(h.dtype))
        x = x + attn("attn1")(at(ln("norm1")(x)), train=train)
        x = x + attn("attn2")(at(ln("norm2")(x)), context, context_mask, train=train)
        return x + FeedForward(self.dropout, name="ff")(ln("norm3")(x), train=train)


class SpatialTransformer(nn.Module):
    """GroupNorm (eps 1e-6), proj_in (1x1 conv or Dense), `depth` transformer blocks over the
    H*W tokens, proj_out (zero-initialised), plus the input.

    Attributes:
      heads, head_dim: attention heads and their width. depth: transformer blocks.
      groups: GroupNorm groups. use_linear_projection: Dense proj_in/proj_out (SD 2.x).
      dropout: attention/feed-forward dropout.
    """

    heads: int
    head_dim: int
    depth: int = 1
    groups: int = 32
    use_linear_projection: bool = False
    dropout: float = 0.0
    pos_embed: bool = False

    @nn.compact
    def __call__(self, x, context, context_mask=None, train: bool = False):
        """x: [B, H, W, C] -> [B, H, W, C]."""
        b, hh, ww, c = x.shape
        inner = self.heads * self.head_dim
        proj = (lambda n, w, **kw: nn.Dense(w, name=n, **kw)) if self.use_linear_projection \
            else (lambda n, w, **kw: Conv(w, (1, 1), name=n, **kw))
        h = group_norm(self.groups, 1e-6, "norm")(x)
        h = proj("proj_in", inner)(h).reshape(b, hh * ww, inner)  # [B, HW, inner]
        # a learned vector per token position, added after the LayerNorms so that it is not
        # drowned by the noise in the features at high noise levels
        pos = self.param("pos_embed", nn.initializers.normal(1.0), (hh * ww, inner),
                         jnp.float32) if self.pos_embed else None
        for k in range(self.depth):
            h = BasicTransformerBlock(self.heads, self.head_dim, self.dropout,
                                      name=f"transformer_blocks_{k}")(h, context, context_mask,
                                                                      train=train, pos=pos)
        h = proj("proj_out", c, kernel_init=nn.initializers.zeros)(h.reshape(b, hh, ww, inner))
        return x + h


class TimeEmbedding(nn.Module):
    """time_proj (sinusoidal, no parameters) then linear_1, SiLU, linear_2 to 4 * dim."""

    dim: int
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0

    @nn.compact
    def __call__(self, labels, dtype=jnp.float32):
        """labels: [B] -> [B, 4 dim]; the sinusoids are computed in float32, then cast to
        `dtype` (the sample's, so half-precision parameters give half-precision compute)."""
        emb = timestep_embedding(labels, self.dim, self.flip_sin_to_cos, self.freq_shift)
        emb = emb.astype(dtype)
        emb = nn.silu(nn.Dense(4 * self.dim, name="linear_1")(emb))
        return nn.Dense(4 * self.dim, name="linear_2")(emb)


class PooledContextEmbedding(nn.Module):
    """linear_1, SiLU, linear_2 from the masked mean of the context tokens to the time
    embedding's width: a global text condition for every ResNet block (Imagen and SDXL add a
    pooled text embedding to the timestep embedding in the same way)."""

    dim: int

    @nn.compact
    def __call__(self, context, context_mask=None):
        """context: [B, L, D]; context_mask: [B, L] (1 = token) or None -> [B, dim]."""
        keep = jnp.ones(context.shape[:2], context.dtype) if context_mask is None \
            else context_mask.astype(context.dtype)
        pooled = (context * keep[..., None]).sum(1) / jnp.maximum(keep.sum(1, keepdims=True), 1)
        return nn.Dense(self.dim, name="linear_2")(nn.silu(nn.Dense(self.dim,
                                                                    name="linear_1")(pooled)))


class MidBlockCrossAttn(nn.Module):
    """resnets_0, attentions_0 (SpatialTransformer), resnets_1 at the lowest resolution."""

    channels: int
    heads: int
    transformer: tuple = ()
    groups: int = 32
    eps: float = 1e-5
    dropout: float = 0.0
    scale_shift: bool = False

    @nn.compact
    def __call__(self, x, temb, context, context_mask, train: bool = False):
        """x: [B, h, w, channels] -> same shape."""
        res = lambda j: ResnetBlock(self.channels, self.groups, self.eps, self.dropout,
                                    self.scale_shift, name=f"resnets_{j}")
        x = res(0)(x, temb, train=train)
        x = SpatialTransformer(self.heads, self.channels // self.heads, **dict(self.transformer),
                               name="attentions_0")(x, context, context_mask, train)
        return res(1)(x, temb, train=train)


def check_unet_cond(m: UNetCond):
    """Raise ConfigError for impossible UNetCond fields (keys of config.model)."""
    chans = tuple(m.block_out_channels)
    if not chans or min(chans) < 1 or m.layers_per_block < 1 or m.transformer_depth < 1:
        raise ConfigError(f"model.block_out_channels={chans}, layers_per_block="
                          f"{m.layers_per_block}, transformer_depth={m.transformer_depth} "
                          "must be positive")
    if len(m.attention_levels) != len(chans):
        raise ConfigError(f"model.attention_levels={tuple(m.attention_levels)} needs one bool per "
                          f"level of model.block_out_channels={chans}")
    if (m.num_heads > 0) == (m.head_dim > 0):
        raise ConfigError(f"set exactly one of model.num_heads={m.num_heads} and model.head_dim="
                          f"{m.head_dim} (the other 0)")
    for c in chans:
        if c % (m.num_heads or m.head_dim):
            raise ConfigError(f"model.block_out_channels={chans} must be divisible by "
                              f"{'model.num_heads' if m.num_heads else 'model.head_dim'}")
    check_groups("model.norm_num_groups", m.norm_num_groups, chans,
                 f"model.block_out_channels={chans}")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout={m.dropout} must be in [0, 1)")


def check_inputs(m: UNetCond, x, context, class_labels):
    """Raise ConfigError unless x, context and class_labels fit the UNet's fields."""
    factor = 2 ** (len(m.block_out_channels) - 1)
    if x.ndim != 4 or x.shape[1] % factor or x.shape[2] % factor:
        raise ConfigError(f"UNet input of shape {tuple(x.shape)} must be [B, H, W, C] with H, W "
                          f"divisible by {factor} (2**(len(model.block_out_channels) - 1))")
    if context is None or context.ndim != 3 or context.shape[-1] != m.context_dim:
        got = None if context is None else tuple(context.shape)
        raise ConfigError(f"context of shape {got} does not match model.context_dim="
                          f"{m.context_dim}: expected [B, L, {m.context_dim}]")
    if m.num_classes > 0 and class_labels is None:
        raise ConfigError(f"model.num_classes={m.num_classes} needs class_labels [B]")


class UNetBlock(nn.Module):
    """One UNet level (diffusers' [CrossAttn]DownBlock2D / [CrossAttn]UpBlock2D): resnets_j,
    each followed by attentions_j when `heads` > 0, then downsamplers_0 / upsamplers_0.

    Attributes:
      channels: level width. num_layers: resnets. heads: attention heads (0: no attention).
      transformer: SpatialTransformer keyword fields but heads/head_dim, as a tuple of pairs.
      resample: 'down' | 'up' | 'none'. up: concatenate a skip before each resnet.
      groups, eps: resnet GroupNorm. dropout: resnet dropout. scale_shift: resnet time
        embedding as scale and shift.
    """

    channels: int
    num_layers: int
    heads: int
    transformer: tuple = ()
    resample: str = "none"
    up: bool = False
    groups: int = 32
    eps: float = 1e-5
    dropout: float = 0.0
    scale_shift: bool = False

    @nn.compact
    def __call__(self, x, temb, context, context_mask, skips, train: bool = False):
        """x: [B, H, W, C]; temb: [B, D]; skips: list of skip features (popped when up).

        Returns:
          (x, outputs): the level's output and, going down, the features it adds to the skips.
        """
        outputs = []
        for j in range(self.num_layers):
            if self.up:
                x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = ResnetBlock(self.channels, self.groups, self.eps, self.dropout,
                            self.scale_shift, name=f"resnets_{j}")(x, temb, train=train)
            if self.heads:
                x = SpatialTransformer(self.heads, self.channels // self.heads,
                                       **dict(self.transformer),
                                       name=f"attentions_{j}")(x, context, context_mask, train)
            outputs.append(x)
        if self.resample == "down":
            x = Downsample(self.channels, name="downsamplers_0")(x)
            outputs.append(x)
        elif self.resample == "up":
            x = Upsample(self.channels, name="upsamplers_0")(x)
        return x, outputs


class UNetCond(nn.Module):
    """The latent-diffusion / Stable Diffusion UNet (diffusers' `UNet2DConditionModel` tree).

    Attributes:
      out_channels: output channels (0: as many as the input has).
      block_out_channels: width per level (SD: (320, 640, 1280, 1280)).
      layers_per_block: resnets per down level (up levels have one more).
      attention_levels: a bool per level: SpatialTransformers after its resnets.
      transformer_depth: transformer blocks per SpatialTransformer.
      num_heads: heads at every level (SD 1.x: 8), or head_dim: per-head width (SD 2.x: 64);
        exactly one is non-zero.
      context_dim: width D of the context tokens. use_linear_projection: Dense proj_in/out.
      norm_num_groups, norm_eps: resnet GroupNorm. dropout: resnet/attention dropout.
      flip_sin_to_cos, freq_shift: the sinusoidal time projection (SD: True, 0).
      num_classes: > 0 adds a learned class embedding (`class_embedding`) to the time
        embedding: num_classes rows, as diffusers' `num_class_embeds` (checkpoint parity),
        so a run guided over K classes sets num_classes = K + 1 and uses K as the null class.
      coord_channels: append two channels of pixel coordinates (row, column in [-1, 1]) to
        the input before conv_in (CoordConv). Convolutions are translation-equivariant, so
        without them the only cue to absolute position is the zero padding at the borders and
        prompts such as 'on the left' are learned slowly; off for Stable Diffusion weights.
      pooled_context: add `add_embedding` (an MLP of the masked mean of the context tokens)
        to the time embedding, so every ResNet block sees the prompt, not only the
        cross-attention layers; off for Stable Diffusion weights.
      attention_pos_embed: add a learned embedding per token position (`pos_embed`, as in
        ViT) to the tokens of every SpatialTransformer after proj_in, so its self- and
        cross-attention queries know where they are; ties the UNet to one latent size; off
        for Stable Diffusion weights.
      resnet_scale_shift: every ResNet block takes a scale and a shift of its second
        GroupNorm's output from the time (+ pooled text) embedding, h (1 + scale) + shift
        (diffusers' resnet_time_scale_shift='scale_shift'), instead of an added bias: the
        prompt can then gate spatial features multiplicatively; off for SD weights.

    Compute precision follows the parameters and the sample: cast both to bfloat16 for
    half-precision inference (the context is cast to the sample's dtype).
    """

    out_channels: int = 0
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_levels: tuple[bool, ...] = (True, True, True, False)
    transformer_depth: int = 1
    num_heads: int = 8
    head_dim: int = 0
    context_dim: int = 768
    use_linear_projection: bool = False
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    dropout: float = 0.0
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    num_classes: int = 0
    coord_channels: bool = False
    pooled_context: bool = False
    attention_pos_embed: bool = False
    resnet_scale_shift: bool = False

    def _heads(self, channels: int) -> int:
        return self.num_heads if self.num_heads else channels // self.head_dim

    def _transformer(self) -> tuple:
        return (("depth", self.transformer_depth), ("groups", self.norm_num_groups),
                ("use_linear_projection", self.use_linear_projection), ("dropout", self.dropout),
                ("pos_embed", self.attention_pos_embed))

    def _level(self, level: int, num_layers: int, resample: str, up: bool, name: str):
        c = self.block_out_channels[level]
        return UNetBlock(c, num_layers, self._heads(c) if self.attention_levels[level] else 0,
                         self._transformer(), resample, up, self.norm_num_groups, self.norm_eps,
                         self.dropout, self.resnet_scale_shift, name=name)

    @nn.compact
    def __call__(self, x, labels, context=None, context_mask=None, class_labels=None,
                 train: bool = False):
        """Predict the network output for noisy x at timesteps `labels`.

        Args:
          x: [B, H, W, C], H and W divisible by 2**(levels - 1). labels: [B] float timesteps.
          context: [B, L, context_dim] tokens. context_mask: [B, L], 1 = real token,
            0 = padding (padded keys get no attention); None attends to every token.
          class_labels: [B] int, required when num_classes > 0.
          train: enables dropout (needs a 'dropout' rng when model.dropout > 0).

        Returns:
          [B, H, W, out_channels].
        """
        check_unet_cond(self)
        check_inputs(self, x, context, class_labels)
        context = context.astype(x.dtype)  # compute in the sample's precision
        temb = TimeEmbedding(self.block_out_channels[0], self.flip_sin_to_cos, self.freq_shift,
                             name="time_embedding")(labels, x.dtype)  # [B, 4 c0]
        if self.num_classes > 0:
            temb = temb + nn.Embed(self.num_classes, temb.shape[-1],
                                   name="class_embedding")(class_labels)
        if self.pooled_context:
            temb = temb + PooledContextEmbedding(temb.shape[-1], name="add_embedding")(
                context, context_mask)
        h = x if not self.coord_channels else jnp.concatenate([x, coordinates(x)], axis=-1)
        h = Conv(self.block_out_channels[0], (3, 3), padding=((1, 1), (1, 1)),
                    name="conv_in")(h)
        skips = [h]
        n = len(self.block_out_channels)
        for i in range(n):
            resample = "down" if i < n - 1 else "none"
            h, outs = self._level(i, self.layers_per_block, resample, False,
                                  f"down_blocks_{i}")(h, temb, context, context_mask, skips, train)
            skips.extend(outs)
        top = self.block_out_channels[-1]
        h = MidBlockCrossAttn(top, self._heads(top), self._transformer(), self.norm_num_groups,
                              self.norm_eps, self.dropout, self.resnet_scale_shift,
                              name="mid_block")(h, temb, context, context_mask, train)
        for i in range(n):
            resample = "up" if i < n - 1 else "none"
            h, _ = self._level(n - 1 - i, self.layers_per_block + 1, resample, True,
                               f"up_blocks_{i}")(h, temb, context, context_mask, skips, train)
        h = nn.silu(group_norm(self.norm_num_groups, self.norm_eps, "conv_norm_out")(h))
        out = self.out_channels or x.shape[-1]
        return Conv(out, (3, 3), padding=((1, 1), (1, 1)), name="conv_out")(h)
