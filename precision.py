"""Mixed precision: run a Flax score network in bfloat16 with float32 master parameters.

Parameters and input are cast down for the forward pass and the output back to float32, so the
loss is reduced, and the gradients, parameters and optimiser state are kept, in float32.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class CastModel:
    """`model` computed in `dtype`, called like its `apply(variables, x, labels, train, rngs,
    **cond)` (conditioning keywords: context, context_mask, class_labels).

    Besides the parameters and the input, the float32 output of every submodule is cast down,
    so activations stay in `dtype` where a layer mixes in a float32 value (the time embedding,
    a numpy constant); the network output is returned as float32. Labels stay float32.
    """

    def __init__(self, model: nn.Module, dtype=jnp.bfloat16):
        self.model, self.dtype = model, dtype

    def _down(self, tree):
        cast = lambda v: v.astype(self.dtype) if v.dtype == jnp.float32 else v
        return jax.tree.map(lambda v: cast(v) if isinstance(v, jax.Array) else v, tree)

    def _intercept(self, next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        is_root = not isinstance(context.module.parent, nn.Module)
        return out if is_root or context.method_name != "__call__" else self._down(out)

    def apply(self, variables, x, labels, train: bool = False, rngs=None, **cond):
        with nn.intercept_methods(self._intercept):
            out = self.model.apply(self._down(variables), x.astype(self.dtype), labels,
                                   train=train, rngs=rngs, **self._down(cond))
        return out.astype(jnp.float32)


def with_compute_dtype(model: nn.Module, compute_dtype: str):
    """`model` itself for 'float32', else a CastModel computing in `compute_dtype`."""
    dtype = COMPUTE_DTYPES[compute_dtype]
    return model if dtype == jnp.float32 else CastModel(model, dtype)
