"""Training batches as global arrays sharded over the mesh's 'data' axis, for one or many hosts.

Toy batches are drawn on device from fold_in(key, step); image batches come from this host's
rows of `datasets.train_iterator` and are joined into one global array with
`jax.make_array_from_process_local_data`. Either way batch s depends only on (seed, s), so a
resumed run sees the batches of an uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import datasets
from utils import require

# Batches of n jitted steps are [n, B, ...]: the batch axis (1) is split over 'data'.
BATCH_AXIS = 1


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Sharding of [n, B, ...] step batches: B over the mesh's 'data' axis."""
    return NamedSharding(mesh, P(None, "data"))


def host_slot(sharding: NamedSharding, global_batch_size: int) -> int:
    """Which of the `process_count` equal row blocks of a global batch this host's devices hold.

    The data iterator of host p must produce rows [p L, (p + 1) L), L = B / process_count, of
    each global batch; the mesh decides p, so ask the sharding rather than assume
    p == jax.process_index().
    """
    count = jax.process_count()
    rows = global_batch_size // count
    shape = (1, global_batch_size)
    index = sharding.addressable_devices_indices_map(shape).values()
    spans = [idx[BATCH_AXIS].indices(global_batch_size)[:2] for idx in index]
    start, stop = min(s for s, _ in spans), max(e for _, e in spans)
    require(stop - start == rows and start % rows == 0, "training.batch_size",
            f"this host's devices hold rows [{start}, {stop}) of {global_batch_size}, not one "
            f"block of {rows}; the mesh must group each host's devices together")
    return start // rows


def toy_batches(name: str, key, batch_size: int, mesh) -> Callable:
    """(step, n) -> [n, B, 2] float32 global array; batch s is drawn from fold_in(key, s).

    Args:
      name: a toy dataset of `datasets.TOY`.
      key: the data PRNG key.
      batch_size: global batch size B.
      mesh: the device mesh (B is split over its 'data' axis).
    """

    def make(step0, n):
        steps = step0 + jnp.arange(n)
        return jax.vmap(lambda s: datasets.sample_toy(name, jax.random.fold_in(key, s),
                                                      batch_size))(steps)

    jitted = jax.jit(make, static_argnums=1, out_shardings=batch_sharding(mesh))
    return lambda step, n: jitted(np.int32(step), n)


def image_batches(source: datasets.ImageSource, batch_size: int, seed: int, start_step: int,
                  mesh, scaler: Callable, random_flip: bool, uniform_dequantization: bool,
                  num_threads: int | None = None) -> Callable:
    """(step, n) -> [n, B, H, W, C] float32 global array of scaled images, steps in order.

    Each host reads only its own rows (`datasets.train_iterator` with this host's slot), scales
    them with `scaler` (from `datasets.get_data_scaler`) and contributes them to the global array.
    Calls must ask for consecutive steps, starting at `start_step`.

    Args:
      source: from `datasets.get_dataset`.
      batch_size: global batch size B (a multiple of the device count).
      seed: data seed; batch s is a function of (seed, s) only.
      start_step: the first step asked for (the step a resumed run starts at).
      mesh: the device mesh (B is split over its 'data' axis).
      scaler: [0, 1] data -> model space.
      random_flip, uniform_dequantization: augmentation, as in `datasets.train_iterator`.
      num_threads: reader threads (default: up to 8, at most the CPU count).
    """
    sharding = batch_sharding(mesh)
    num_threads = num_threads or max(1, min(8, os.cpu_count() or 1))
    iterator = datasets.train_iterator(
        source, batch_size, seed, start_step, process_index=host_slot(sharding, batch_size),
        process_count=jax.process_count(), random_flip=random_flip,
        uniform_dequantization=uniform_dequantization, num_threads=num_threads)
    position = [start_step]

    def next_batches(step: int, n: int) -> jax.Array:
        assert step == position[0], f"image batches asked for step {step}, next is {position[0]}"
        local = np.stack([next(iterator)["image"] for _ in range(n)])  # [n, B / hosts, H, W, C]
        position[0] += n
        local = np.asarray(scaler(local), np.float32)
        global_shape = (n, batch_size) + local.shape[2:]
        return jax.make_array_from_process_local_data(sharding, local, global_shape)

    return next_batches


def epoch_indices(num: int, seed: int, positions: np.ndarray) -> np.ndarray:
    """Example index at each stream position: epoch e = p // num is a permutation of
    range(num) drawn from (seed, e), so position p maps to a pure function of (seed, p)."""
    positions = np.asarray(positions, np.int64)
    out = np.empty(positions.shape, np.int64)
    for epoch in np.unique(positions // num):
        sel = positions // num == epoch
        perm = np.random.default_rng([seed, int(epoch)]).permutation(num)
        out[sel] = perm[positions[sel] % num]
    return out


def table_batches(tables: dict, batch_size: int, seed: int, mesh, lookups: dict | None = None,
                  lookup_key: str | None = None) -> Callable:
    """(step, n) -> {name: [n, B, ...] global array}: rows of in-memory tables, shuffled.

    Batch s holds stream positions [s B, (s + 1) B) (`epoch_indices`); each host gathers only
    its own rows. Columns of `lookups` are gathered by the integer column `lookup_key` of the
    tables (e.g. a caption's tokens by the caption index of an image); `lookup_key` itself is
    not returned.

    Args:
      tables: {name: numpy [N, ...]}, one row per example.
      batch_size: global batch size B. seed: shuffling seed. mesh: the device mesh.
      lookups: {name: numpy [U, ...]} indexed by tables[lookup_key].
    """
    sharding = batch_sharding(mesh)
    num = len(next(iter(tables.values())))
    rows = batch_size // jax.process_count()
    slot = host_slot(sharding, batch_size)

    def next_batches(step: int, n: int) -> dict:
        pos = (step * batch_size + np.arange(n)[:, None] * batch_size
               + slot * rows + np.arange(rows)[None, :])  # [n, rows]
        idx = epoch_indices(num, seed, pos)
        local = {k: v[idx] for k, v in tables.items() if k != lookup_key}
        if lookups:
            keys = tables[lookup_key][idx]
            local.update({k: v[keys] for k, v in lookups.items()})
        return {k: jax.make_array_from_process_local_data(sharding, v,
                                                          (n, batch_size) + v.shape[2:])
                for k, v in local.items()}

    return next_batches
