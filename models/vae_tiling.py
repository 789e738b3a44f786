"""Tiled autoencoder passes for images too large to decode (or encode) at once: the input is cut
into overlapping square tiles laid out on the latent grid, each tile goes through the
autoencoder on its own, one after another (lax.scan: one tile's activations live at a time),
and the outputs are blended with linear ramps over the overlaps. The blend weights sum to one at
every output pixel, so a function that acts locally is reproduced exactly; the autoencoder is
not local (GroupNorm statistics and the mid-block attention see one tile), so a tiled pass is
close to the untiled one, not equal. A tile covering the whole input is the untiled pass.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from utils import require


def check_tiling(tile: int, overlap: int, key: str = "pretrained.vae_tile") -> tuple[int, int]:
    """(tile, overlap) in latent pixels after the checks; tile 0 is off (overlap ignored),
    overlap -1 is a quarter of the tile.

    Args:
      tile: the tile side (0: no tiling). overlap: the overlap of neighbouring tiles (-1: tile
        // 4). key: the config key of the tile ('<key>_overlap' is the overlap's).
    Raises:
      ConfigError: one line naming the key of a bad value.
    """
    tile, overlap = int(tile), int(overlap)
    require(tile >= 0, key, f"must be >= 0 (0: no tiling), got {tile}")
    if tile == 0:
        return 0, 0
    require(overlap >= -1, f"{key}_overlap",
            f"must be >= 0 (or -1: a quarter of {key}), got {overlap}")
    overlap = tile // 4 if overlap == -1 else overlap
    require(2 * overlap <= tile, f"{key}_overlap",
            f"{overlap} is more than half of {key}={tile}; give {key} >= twice the overlap")
    return tile, overlap


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of length `tile` covering [0, size): `tile - overlap` apart, the last
    one ending at size (so it may overlap its neighbour by more); [0] when tile >= size."""
    if tile >= size:
        return [0]
    return list(range(0, size - tile, tile - overlap)) + [size - tile]


def blend_weights(starts: list[int], length: int, size: int) -> np.ndarray:
    """Blend weights [len(starts), size] (float64) of tiles [s, s + length) covering [0, size).

    Each tile ramps up linearly over its overlap with the tiles before it and down over its
    overlap with the tiles after it ((k + 1) / (n + 1) over an overlap of n; no ramp at the
    ends of [0, size)); zero outside the tile. The ramps are then divided by their sum, so the
    weights at every position sum to one (where two tiles overlap the ramps are already
    complementary: a linear cross-fade).
    """
    w = np.zeros((len(starts), size))
    for i, s in enumerate(starts):
        e = s + length
        ramp = np.ones(length)
        k = np.arange(length, dtype=np.float64)
        if i > 0:  # tiles before end at starts[i - 1] + length at the latest
            n = starts[i - 1] + length - s
            ramp = np.minimum(ramp, np.where(k < n, (k + 1) / (n + 1), 1.0))
        if i < len(starts) - 1:  # tiles after start at starts[i + 1] at the earliest
            n = e - starts[i + 1]
            ramp = np.minimum(ramp, np.where(k >= length - n, (length - k) / (n + 1), 1.0))
        w[i, s:e] = ramp
    total = w.sum(0)
    if np.any(total <= 0):
        raise ValueError(f"tiles {starts} of length {length} do not cover [0, {size})")
    return w / total


def tiled(fn: Callable, x: jnp.ndarray, tile: int, overlap: int, f_in: int, f_out: int):
    """fn over overlapping tiles of x, blended (see the module docstring).

    Args:
      fn: a map [B, t f_in, t f_in, C] -> [B, t f_out, t f_out, C'] for every tile side t (the
        autoencoder's decode: f_in 1, f_out 8; its encode: f_in 8, f_out 1).
      x: [B, h f_in, w f_in, C]: an input on a latent grid of h x w.
      tile, overlap: the tile side and overlap on the latent grid (check_tiling's); tile 0 or
        tile >= h and w: fn(x) itself.
      f_in, f_out: input and output pixels per latent pixel.
    Returns:
      [B, h f_out, w f_out, C'] in fn's output dtype (accumulated in float32).
    """
    b, hi, wi, c = x.shape
    h, w = hi // f_in, wi // f_in
    if tile <= 0 or (tile >= h and tile >= w):
        return fn(x)
    ty, tx = min(tile, h), min(tile, w)
    sy, sx = tile_starts(h, ty, overlap), tile_starts(w, tx, overlap)
    wy = blend_weights([s * f_out for s in sy], ty * f_out, h * f_out)
    wx = blend_weights([s * f_out for s in sx], tx * f_out, w * f_out)
    grid = [(i, j) for i in range(len(sy)) for j in range(len(sx))]
    starts = np.array([(sy[i], sx[j]) for i, j in grid], np.int32)  # [n, 2] latent pixels
    weights = np.stack([np.outer(wy[i, sy[i] * f_out:(sy[i] + ty) * f_out],
                                 wx[j, sx[j] * f_out:(sx[j] + tx) * f_out])
                        for i, j in grid]).astype(np.float32)  # [n, ty f_out, tx f_out]
    piece = (b, ty * f_in, tx * f_in, c)
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct(piece, x.dtype))
    canvas = jnp.zeros((b, h * f_out, w * f_out, out.shape[-1]), jnp.float32)

    def add_tile(canvas, tile_in):
        (y0, x0), weight = tile_in
        y = fn(jax.lax.dynamic_slice(x, (0, y0 * f_in, x0 * f_in, 0), piece))
        at = (0, y0 * f_out, x0 * f_out, 0)
        acc = jax.lax.dynamic_slice(canvas, at, y.shape) + weight[None, :, :, None] * y.astype(
            jnp.float32)
        return jax.lax.dynamic_update_slice(canvas, acc, at), None

    canvas, _ = jax.lax.scan(add_tile, canvas, ((jnp.asarray(starts[:, 0]),
                                                 jnp.asarray(starts[:, 1])),
                                                jnp.asarray(weights)))
    return canvas.astype(out.dtype)
