"""RefineNet building blocks of NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020), after
RefineNet (Lin et al. 2017): pre-activation residual blocks with dilation, RCU, CRP, MSF.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.conv import Conv
from utils import choose, require

ACTIVATIONS = {
    "elu": nn.elu,
    "relu": nn.relu,
    "lrelu": partial(nn.leaky_relu, negative_slope=0.2),
    "swish": nn.swish,
}
INTERPOLATIONS = ("bilinear", "nearest")

# One entry per encoder stage of a RefineNet: (channel multiplier of nf, whether the first
# residual block is a 'down' block, dilation). A 'down' block halves H and W when dilation is
# 1; with dilation > 1 it keeps the resolution (the receptive field grows instead).
Stage = tuple[int, bool, int]


def get_act(name: str) -> Callable:
    """The activation named by config key model.nonlinearity.

    Args:
      name: 'elu' (NCSN, NCSNv2), 'relu', 'lrelu' (slope 0.2) or 'swish'.

    Returns:
      An elementwise function.
    """
    return ACTIVATIONS[choose("model.nonlinearity", name, ACTIVATIONS)]


def downsampling_factor(stages: tuple[Stage, ...]) -> int:
    """Total spatial reduction of a RefineNet encoder.

    Args:
      stages: encoder stages (see `Stage`).

    Returns:
      2 ** (number of 'down' stages with dilation 1); H and W must be multiples of it.
    """
    return 2 ** sum(1 for _, down, dilation in stages if down and dilation == 1)


def _torch_bias_init(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default conv bias, which NCSN used."""
    bound = 1.0 / np.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound
    )


def ncsn_conv(x, features: int, kernel_size: int = 3, dilation: int = 1, bias: bool = True):
    """A stride-1 'SAME' convolution with PyTorch's default init (as in NCSN/NCSNv2).

    Must be called inside a compact method: it creates an `nn.Conv` there.

    Args:
      x: [B, H, W, C_in].
      features: output channels.
      kernel_size: square kernel size.
      dilation: kernel dilation.
      bias: whether to add a bias.

    Returns:
      [B, H, W, features].
    """
    fan_in = x.shape[-1] * kernel_size * kernel_size
    return Conv(
        features,
        (kernel_size, kernel_size),
        padding="SAME",
        kernel_dilation=(dilation, dilation),
        use_bias=bias,
        kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_init=_torch_bias_init(fan_in),
    )(x)


def conv_mean_pool(x, features: int, kernel_size: int = 3):
    """Convolution followed by 2x2 mean pooling (inside a compact method).

    Args:
      x: [B, H, W, C] with H, W even.
      features: output channels.
      kernel_size: convolution kernel size.

    Returns:
      [B, H / 2, W / 2, features].
    """
    h = ncsn_conv(x, features, kernel_size)
    return (h[:, ::2, ::2] + h[:, 1::2, ::2] + h[:, ::2, 1::2] + h[:, 1::2, 1::2]) / 4.0


def _maybe_norm(norm, h, y):
    """Apply a fresh norm module if one is given (refine blocks of NCSN v1), else identity."""
    return h if norm is None else norm()(h, y)


class ResidualBlock(nn.Module):
    """Pre-activation residual block norm-act-conv-norm-act-conv (+ shortcut).

    Attributes:
      features: output channels.
      norm: zero-argument factory of a norm module called as `norm(x, y)`.
      act: activation.
      down: a 'down' block: halves H, W (dilation 1) or uses dilated convolutions instead.
      dilation: convolution dilation.
    """

    features: int
    norm: Callable
    act: Callable = nn.elu
    down: bool = False
    dilation: int = 1

    @nn.compact
    def __call__(self, x, y=None):
        """Args: x [B, H, W, C]; y int [B] or None. Returns: [B, H', W', features]."""
        c_in, d = x.shape[-1], self.dilation
        h = self.act(self.norm()(x, y))
        if self.down:
            h = ncsn_conv(h, c_in, dilation=d)
            h = self.act(self.norm()(h, y))
            if d > 1:
                h = ncsn_conv(h, self.features, dilation=d)
                shortcut = ncsn_conv(x, self.features, dilation=d)
            else:
                h = conv_mean_pool(h, self.features)
                shortcut = conv_mean_pool(x, self.features, kernel_size=1)
            return h + shortcut
        h = ncsn_conv(h, self.features, dilation=d)
        h = self.act(self.norm()(h, y))
        h = ncsn_conv(h, self.features, dilation=d)
        if c_in == self.features:
            shortcut = x
        elif d > 1:
            shortcut = ncsn_conv(x, self.features, dilation=d)
        else:
            shortcut = ncsn_conv(x, self.features, kernel_size=1)
        return h + shortcut


class RCUBlock(nn.Module):
    """Residual conv unit: `n_blocks` residual units of `n_stages` x ([norm]-act-conv).

    Attributes:
      features: channels (input and output).
      n_blocks: residual units.
      n_stages: act-conv stages per unit.
      act: activation.
      norm: norm factory (NCSN v1) or None (NCSNv2).
    """

    features: int
    n_blocks: int
    n_stages: int
    act: Callable = nn.elu
    norm: Callable | None = None

    @nn.compact
    def __call__(self, x, y=None):
        """Args: x [B, H, W, features]. Returns: [B, H, W, features]."""
        for _ in range(self.n_blocks):
            residual = x
            for _ in range(self.n_stages):
                x = self.act(_maybe_norm(self.norm, x, y))
                x = ncsn_conv(x, self.features, bias=False)
            x = x + residual
        return x


class CRPBlock(nn.Module):
    """Chained residual pooling: act, then a chain of ([norm]-pool5x5-conv) whose every
    output is added to the input.

    Attributes:
      features: channels.
      n_stages: pool-conv stages.
      act: activation.
      norm: norm factory (NCSN v1) or None (NCSNv2).
      pool: 'max' (NCSNv2) or 'avg' (NCSN v1; zero padding counted, as in PyTorch).
    """

    features: int
    n_stages: int = 2
    act: Callable = nn.elu
    norm: Callable | None = None
    pool: str = "max"

    @nn.compact
    def __call__(self, x, y=None):
        """Args: x [B, H, W, features]. Returns: [B, H, W, features]."""
        pool = nn.max_pool if self.pool == "max" else partial(nn.avg_pool, count_include_pad=True)
        x = self.act(x)
        path = x
        for _ in range(self.n_stages):
            path = _maybe_norm(self.norm, path, y)
            path = pool(path, (5, 5), strides=(1, 1), padding=((2, 2), (2, 2)))
            path = ncsn_conv(path, self.features, bias=False)
            x = x + path
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion: [norm]-conv each input to `features`, resize to `shape`, sum.

    Attributes:
      shape: output (H, W).
      features: output channels.
      interpolation: 'bilinear' (half-pixel centres, as jax.image.resize) or 'nearest'.
      norm: norm factory (NCSN v1) or None (NCSNv2).
    """

    shape: tuple[int, int]
    features: int
    interpolation: str = "bilinear"
    norm: Callable | None = None

    @nn.compact
    def __call__(self, xs, y=None):
        """Args: xs tuple of [B, H_i, W_i, C_i]. Returns: [B, *shape, features]."""
        total = 0.0
        for x in xs:
            h = ncsn_conv(_maybe_norm(self.norm, x, y), self.features)
            if h.shape[1:3] != tuple(self.shape):
                h = jax.image.resize(
                    h, (h.shape[0], *self.shape, self.features), self.interpolation
                )
            total = total + h
        return total


class RefineBlock(nn.Module):
    """RefineNet block: RCU (2x2) on each input, MSF (if more than one), CRP, output RCU.

    Attributes:
      output_shape: (H, W) of the result.
      features: output channels.
      act: activation.
      norm: norm factory inside RCU/MSF/CRP (NCSN v1) or None (NCSNv2).
      pool: CRP pooling, 'avg' (NCSN v1) or 'max' (NCSNv2).
      interpolation: MSF resize method.
      end: the last block; its output RCU has 3 units instead of 1.
    """

    output_shape: tuple[int, int]
    features: int
    act: Callable = nn.elu
    norm: Callable | None = None
    pool: str = "max"
    interpolation: str = "bilinear"
    end: bool = False

    @nn.compact
    def __call__(self, xs, y=None):
        """Args: xs tuple of [B, H_i, W_i, C_i]. Returns: [B, *output_shape, features]."""
        hs = tuple(RCUBlock(x.shape[-1], 2, 2, self.act, self.norm)(x, y) for x in xs)
        if len(hs) > 1:
            h = MSFBlock(self.output_shape, self.features, self.interpolation, self.norm)(hs, y)
        else:
            h = hs[0]
        h = CRPBlock(self.features, 2, self.act, self.norm, self.pool)(h, y)
        return RCUBlock(self.features, 3 if self.end else 1, 2, self.act, self.norm)(h, y)


class RefineNet(nn.Module):
    """Dilated RefineNet: conv, residual encoder stages, RefineBlock decoder, norm-act-conv.

    Attributes:
      nf: base channels.
      out_channels: output channels.
      stages: encoder stages, finest first (see `Stage`); two residual blocks each.
      refine_mults: channel multiplier of each RefineBlock's output, coarsest first.
      norm: norm factory called as `norm()(x, y)`.
      act: activation.
      conditional_refine: NCSN v1 style RefineBlocks (norms inside, average-pooling CRP);
        otherwise NCSNv2 style (no norms, max-pooling CRP).
      interpolation: MSF resize method.
    """

    nf: int
    out_channels: int
    stages: tuple[Stage, ...]
    refine_mults: tuple[int, ...]
    norm: Callable
    act: Callable = nn.elu
    conditional_refine: bool = False
    interpolation: str = "bilinear"

    @nn.compact
    def __call__(self, x, y=None):
        """Args: x [B, H, W, C]; y int [B] or None. Returns: [B, H, W, out_channels]."""
        h = ncsn_conv(x, self.nf)  # [B, H, W, nf]
        layers = []
        for mult, down, dilation in self.stages:
            h = ResidualBlock(mult * self.nf, self.norm, self.act, down, dilation)(h, y)
            h = ResidualBlock(mult * self.nf, self.norm, self.act, False, dilation)(h, y)
            layers.append(h)  # [B, H / 2^k, W / 2^k, mult * nf]
        refine_norm = self.norm if self.conditional_refine else None
        pool = "avg" if self.conditional_refine else "max"
        ref = None
        for i, (layer, mult) in enumerate(zip(layers[::-1], self.refine_mults, strict=True)):
            xs = (layer,) if ref is None else (layer, ref)
            end = i == len(layers) - 1
            ref = RefineBlock(
                output_shape=layer.shape[1:3],
                features=mult * self.nf,
                act=self.act,
                norm=refine_norm,
                pool=pool,
                interpolation=self.interpolation,
                end=end,
            )(xs, y)  # [B, *layer.shape[1:3], mult * nf]
        h = self.act(self.norm()(ref, y))  # [B, H, W, nf]
        return ncsn_conv(h, self.out_channels)  # [B, H, W, out_channels]


def check_refinenet_config(model_name: str, x, cfg, stages: tuple[Stage, ...]):
    """Raise a one-line ConfigError for settings a RefineNet score model cannot run with.

    Args:
      model_name: the model.name the network is registered under (for the message).
      x: the input [B, H, W, C].
      cfg: the network module (its nf, nonlinearity, interpolation, image_size, num_channels).
      stages: the encoder stages, to get the downsampling factor.
    """
    get_act(cfg.nonlinearity)
    choose("model.interpolation", cfg.interpolation, INTERPOLATIONS)
    require(cfg.nf >= 1, "model.nf", f"must be a positive integer, got {cfg.nf}")
    factor = downsampling_factor(stages)
    require(
        cfg.image_size >= factor and cfg.image_size % factor == 0,
        "data.image_size",
        f"{cfg.image_size} is not supported by model.name={model_name}; use a multiple of "
        f"{factor} (its downsampling factor)",
    )
    expected = (cfg.image_size, cfg.image_size, cfg.num_channels)
    require(
        x.ndim == 4 and tuple(x.shape[1:]) == expected,
        "data.image_size/data.num_channels",
        f"model.name={model_name} expects inputs [B, {', '.join(map(str, expected))}], "
        f"got {list(x.shape)}",
    )
