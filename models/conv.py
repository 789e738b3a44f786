"""Convolutions whose gradients XLA:CPU runs fast, also inside loops.

`lax.conv_general_dilated`'s own transpose rules express the input and kernel gradients as
convolutions with permuted dimension numbers (the kernel gradient contracts over the batch).
XLA:CPU turns such convolutions into the canonical NHWC/HWIO form its Eigen kernels run only
outside loops: inside a `lax.scan` / `while` body (several train steps per call) the kernel
gradient falls back to a naive loop: on a 3x3, 128-channel, 32x32 layer (batch 8, 2 cores)
1522 ms instead of 17 ms, and the input gradient 75 ms instead of 13 ms. Here the two
gradients are canonical NHWC/HWIO convolutions of explicitly transposed arrays, which XLA:CPU
runs with its fast kernels inside loops too (17 ms and 14 ms per scanned step); outside loops
they cost about the same as lax's (`bench/conv_grad.py` prints the table).

`conv_general_dilated` has `lax.conv_general_dilated`'s signature. It takes this path on the
CPU backend for NHWC/HWIO convolutions without dilation or grouping (every convolution of the
networks here except the depthwise FIR filters and NCSN's dilated ones) and is
`lax.conv_general_dilated` otherwise, or everywhere when `SCORELAB_CONV_GRAD=xla`. The values
and gradients are the same convolutions summed in another order (tests/test_conv.py compares
them with `lax`'s).
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def enabled() -> bool:
    """Whether the explicit-gradient path is on: CPU backend and SCORELAB_CONV_GRAD != 'xla'."""
    return (os.environ.get("SCORELAB_CONV_GRAD", "explicit") != "xla"
            and jax.default_backend() == "cpu")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, pads, precision):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN,
                                    precision=precision)


def _conv_fwd(x, w, strides, pads, precision):
    return _conv(x, w, strides, pads, precision), (x, w)


def _conv_bwd(strides, pads, precision, res, dy):
    x, w = res
    ks, ins, outs = w.shape[:2], x.shape[1:3], dy.shape[1:3]
    # Input gradient: dy dilated by the stride, convolved with the flipped kernel whose in/out
    # channels are swapped. Padding: k-1-lo before; after, whatever makes the output H long.
    dx_pads = [(k - 1 - lo, n + lo - (o - 1) * s - 1)
               for k, n, o, s, (lo, _) in zip(ks, ins, outs, strides, pads, strict=True)]
    w_t = jnp.transpose(w[::-1, ::-1], (0, 1, 3, 2))
    dx = lax.conv_general_dilated(dy, w_t, (1, 1), dx_pads, lhs_dilation=strides,
                                  dimension_numbers=_DN, precision=precision)
    # Kernel gradient: channels of x as the batch, the batch as input features, dy as a kernel
    # of the output's spatial size dilated by the stride; the result is [Cin, KH, KW, Cout].
    dw_pads = [(lo, k + (o - 1) * s - n - lo)
               for k, n, o, s, (lo, _) in zip(ks, ins, outs, strides, pads, strict=True)]
    dw = lax.conv_general_dilated(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dy, (1, 2, 0, 3)),
                                  (1, 1), dw_pads, rhs_dilation=strides, dimension_numbers=_DN,
                                  precision=precision)
    return dx.astype(x.dtype), jnp.transpose(dw, (1, 2, 0, 3)).astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _is_nhwc(dimension_numbers) -> bool:
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return dimension_numbers == lax.conv_dimension_numbers((1,) * 4, (1,) * 4, _DN)
    return tuple(dimension_numbers) == _DN


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
    """`lax.conv_general_dilated`, with explicit canonical gradients where they apply (above)."""
    simple = (enabled() and lhs.ndim == 4 and _is_nhwc(dimension_numbers)
              and all(d == 1 for d in (lhs_dilation or (1, 1)))
              and all(d == 1 for d in (rhs_dilation or (1, 1)))
              and feature_group_count == 1 and batch_group_count == 1
              and preferred_element_type is None and lhs.dtype == rhs.dtype)
    if simple:
        strides = tuple(int(s) for s in window_strides)
        if isinstance(padding, str):
            pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
        else:
            pads = padding
        pads = tuple((int(lo), int(hi)) for lo, hi in pads)
        if all(0 <= lo < k and hi >= 0 for (lo, hi), k in zip(pads, rhs.shape[:2], strict=True)):
            return _conv(lhs, rhs, strides, pads, precision)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count,
                                    batch_group_count=batch_group_count, precision=precision,
                                    preferred_element_type=preferred_element_type)


def Conv(*args, **kwargs) -> nn.Conv:  # noqa: N802 (a module constructor)
    """`flax.linen.Conv` running on `conv_general_dilated` above; same parameters and names."""
    return nn.Conv(*args, conv_general_dilated=conv_general_dilated, **kwargs)
