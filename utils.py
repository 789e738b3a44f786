"""Small shared helpers: the user-error type, explicit broadcasting, config checks."""

from __future__ import annotations

from collections.abc import Iterable

import jax.numpy as jnp
import numpy as np


class ConfigError(ValueError):
    """A user mistake (bad config value, missing path). `main.py` prints it as one line."""


def bcast(v: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """Reshape a per-example vector `v` of shape [B] so it broadcasts against `x` [B, ...]."""
    v = jnp.asarray(v)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def batch_sum(x: jnp.ndarray) -> jnp.ndarray:
    """Sum over every axis but the first: [B, ...] -> [B]."""
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def choose(key: str, value: str, valid: Iterable[str]):
    """Raise a ConfigError naming `key` unless `value` is one of `valid`."""
    valid = list(valid)
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(valid)}")
    return value


def require(cond: bool, key: str, message: str):
    """Raise a ConfigError `key: message` unless `cond` holds."""
    if not cond:
        raise ConfigError(f"{key}: {message}")


def check_unit_images(images) -> np.ndarray:
    """`images` as an array, or a ConfigError unless they are float values in [0, 1]."""
    if not hasattr(images, "dtype"):
        images = np.asarray(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ConfigError(
            f"images must be float in [0, 1], got dtype {images.dtype} "
            "(uint8 images: divide by 255)"
        )
    lo, hi = float(images.min()), float(images.max())
    if not (lo >= 0.0 and hi <= 1.0):
        raise ConfigError(
            f"images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
            "(data in [-1, 1]: use (x + 1) / 2; clip model samples first)"
        )
    return images


def apply_in_batches(fn, x: np.ndarray, batch_size: int) -> tuple:
    """`fn(chunk)` -> tuple of [b, ...] arrays, over float32 `x` in batches of one size (the
    last zero-padded, so one compilation); each output concatenated as numpy, padding dropped."""
    n = x.shape[0]
    size = min(batch_size, n)
    parts = []
    for start in range(0, n, size):
        chunk = jnp.asarray(x[start : start + size], jnp.float32)
        k = chunk.shape[0]
        if k < size:
            chunk = jnp.pad(chunk, ((0, size - k),) + ((0, 0),) * (chunk.ndim - 1))
        parts.append(tuple(np.asarray(out[:k]) for out in fn(chunk)))
    return tuple(np.concatenate(outs) for outs in zip(*parts, strict=True))
