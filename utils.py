"""Small shared helpers: the user-error type, explicit broadcasting, config checks."""

from __future__ import annotations

from collections.abc import Iterable

import jax.numpy as jnp


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
