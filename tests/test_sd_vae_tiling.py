"""Tiled VAE decode / encode for large images (models/vae_tiling.py, pretrained.vae_tile): blend
weights that sum to one, a local map reproduced exactly, the tiny SD autoencoder of
tests/data/sd_tiny close to its one-pass output (and within the errors of its own tiles), both
sd_pipeline paths tiled, and bad tile settings stopping with one line.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import run_lib
import sd_pipeline
from configs.sd import sd15
from models import pretrained, vae_tiling
from utils import ConfigError

DATA = os.path.join(os.path.dirname(__file__), "data", "sd_tiny")
SD1 = os.path.join(DATA, "sd1")
BASE = {"pretrained.path": SD1, "data.image_size": 32, "sampling.steps": 4,
        "sampling.batch_size": 2, "sampling.prompts": "a red fox;a blue car"}
EPS = np.finfo(np.float64).eps


@pytest.fixture(scope="module")
def vae():
    """(decode, encode-to-posterior-mean) of the tiny SD 1.x autoencoder (2x downsampling)."""
    sd = pretrained.load_stable_diffusion(SD1)
    v = {"params": sd.params["vae"]}
    return (lambda z: sd.vae.apply(v, z, method=sd.vae.decode),
            lambda x: sd.vae.apply(v, x, method=sd.vae.encode).mean)


# ---------------------------------------------------------------- the tiling itself


# (size, tile, overlap): even strides, a last tile overlapping by more, three tiles over one
# position (starts 0, 6, 7), tile 1, no overlap
LAYOUTS = [(16, 8, 2), (20, 8, 2), (15, 8, 2), (64, 24, 6), (7, 1, 0), (12, 4, 0), (9, 6, 3)]


@pytest.mark.parametrize("size,tile,overlap", LAYOUTS)
@pytest.mark.parametrize("f", [1, 8])
def test_blend_weights_sum_to_one_and_stay_in_their_tiles(size, tile, overlap, f):
    starts = vae_tiling.tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] == size - tile
    assert all(0 < b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    w = vae_tiling.blend_weights([s * f for s in starts], tile * f, size * f)
    assert w.shape == (len(starts), size * f) and w.dtype == np.float64
    # a partition of unity: one at every position, up to float64 rounding of the division
    assert np.abs(w.sum(0) - 1.0).max() <= 4 * EPS
    for s, row in zip(starts, w, strict=True):
        assert np.all(row[s * f:(s + tile) * f] > 0)
        assert not row[:s * f].any() and not row[(s + tile) * f:].any()


def test_two_tile_overlap_is_a_linear_cross_fade():
    # tiles [0, 8) and [6, 14): over the overlap [6, 8) the weights are 1/3, 2/3 and 2/3, 1/3
    w = vae_tiling.blend_weights(vae_tiling.tile_starts(14, 8, 2), 8, 14)
    np.testing.assert_allclose(w[:, 6:8], [[2 / 3, 1 / 3], [1 / 3, 2 / 3]], rtol=0, atol=4 * EPS)
    np.testing.assert_array_equal(w[0, :6], 1.0)
    np.testing.assert_array_equal(w[1, 8:], 1.0)
    # at 8x resolution: a ramp of 16 equal steps
    w8 = vae_tiling.blend_weights([0, 48], 64, 112)
    np.testing.assert_allclose(np.diff(w8[1, 48:64]), 1 / 17, rtol=0, atol=8 * EPS)


def _local(z):
    """A map that acts on each latent pixel alone (2x nearest upsampling, then pointwise)."""
    up = jnp.repeat(jnp.repeat(z, 2, 1), 2, 2)
    return jnp.tanh(1.7 * up[..., :3]) + up[..., 3:] ** 2


@pytest.mark.parametrize("shape,tile,overlap", [((2, 16, 16, 4), 8, 2), ((1, 12, 20, 4), 5, 2),
                                                ((1, 15, 9, 4), 10, 2), ((1, 16, 16, 4), 3, 1)])
def test_a_local_map_is_reproduced_exactly(shape, tile, overlap):
    """The blend is a partition of unity, so a map with no spatial coupling comes back as it is
    (float32 accumulation: a few ulps)."""
    z = jax.random.normal(jax.random.key(0), shape)
    out = jax.jit(lambda z: vae_tiling.tiled(_local, z, tile, overlap, 1, 2))(z)
    assert out.shape == (shape[0], 2 * shape[1], 2 * shape[2], 3)
    np.testing.assert_allclose(out, _local(z), rtol=0, atol=1e-6)
    # and the other way round (an encoder-like 2x reduction: f_in 2, f_out 1)
    x = jax.random.normal(jax.random.key(1), (1, 2 * shape[1], 2 * shape[2], 3))
    pool = lambda x: jnp.sin(x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2] // 2, 2,
                                       3).mean((2, 4)))
    np.testing.assert_allclose(vae_tiling.tiled(pool, x, tile, overlap, 2, 1), pool(x), rtol=0,
                               atol=1e-6)


# ---------------------------------------------------------------- the tiny SD autoencoder


def test_a_tile_covering_everything_is_the_untiled_pass(vae):
    decode, encode = vae
    z = jax.random.normal(jax.random.key(0), (2, 16, 16, 4))
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
    for tile in (16, 40):
        np.testing.assert_array_equal(vae_tiling.tiled(decode, z, tile, 4, 1, 2), decode(z))
        np.testing.assert_array_equal(vae_tiling.tiled(encode, x, tile, 4, 2, 1), encode(x))


def _own_tile_errors(fn, x, full, tile, overlap, f_in, f_out):
    """Per output pixel: the largest |fn(tile alone) - full| over the tiles covering it."""
    h, w = x.shape[1] // f_in, x.shape[2] // f_in
    worst = np.zeros(full.shape, np.float32)
    for ys in vae_tiling.tile_starts(h, tile, overlap):
        for xs in vae_tiling.tile_starts(w, tile, overlap):
            own = np.asarray(fn(x[:, ys * f_in:(ys + tile) * f_in, xs * f_in:(xs + tile) * f_in]))
            at = np.s_[:, ys * f_out:(ys + tile) * f_out, xs * f_out:(xs + tile) * f_out]
            worst[at] = np.maximum(worst[at], np.abs(own - full[at]))
    return worst


@pytest.mark.parametrize("direction", ["decode", "encode"])
def test_tiled_vae_is_close_to_the_untiled_pass(vae, direction):
    """Tiles see their own GroupNorm statistics, mid-block attention and zero padding, so the
    tiled output differs from the one-pass output; being a convex blend of the tiles' own
    outputs, it differs by no more than the worst tile covering a pixel, and the difference
    shrinks as tiles grow past the decoder's receptive field (~8 latent pixels here).
    Measured on this random-weight VAE at 32x32 latents (RMS / std of the output): decode
    0.28 (tile 16) and 0.10 (tile 24), encode 0.20 and 0.06; the bound 0.15 at tile 24 leaves
    1.5x to 2.4x room, and a misplaced tile or weight gives errors of the order of the std."""
    decode, encode = vae
    if direction == "decode":
        fn, f_in, f_out = jax.jit(decode), 1, 2
        x = jax.random.normal(jax.random.key(0), (1, 32, 32, 4))
    else:
        fn, f_in, f_out = jax.jit(encode), 2, 1
        x = jnp.clip(0.5 * jax.random.normal(jax.random.key(1), (1, 64, 64, 3)), -1, 1)
    full = np.asarray(fn(x))
    rms = {}
    for tile, overlap in ((16, 4), (24, 6)):
        out = np.asarray(jax.jit(lambda x, t=tile, o=overlap: vae_tiling.tiled(
            fn, x, t, o, f_in, f_out))(x))
        assert out.shape == full.shape and np.all(np.isfinite(out))
        err = np.abs(out - full)
        worst = _own_tile_errors(fn, x, full, tile, overlap, f_in, f_out)
        assert np.all(err <= worst + 1e-4)
        rms[tile] = float(np.sqrt(np.mean(err**2)) / full.std())
    assert 0 < rms[24] < rms[16] and rms[24] < 0.15, rms


# ---------------------------------------------------------------- through sd_pipeline


def _config(**updates):
    return run_lib.override(sd15.get_config(), {**BASE, **updates})


def test_pipeline_tiles_both_the_encode_and_the_decode(vae, tmp_path):
    """img2img at strength 0 is the VAE round trip: with pretrained.vae_tile=8 (overlap 2) of
    a 16x16 latent it is the tiled decode of the tiled encode, not a round trip with either
    pass untiled."""
    decode, encode = vae
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    image = np.round(np.stack([xx, yy, 0.5 * (xx + yy)], -1) * 255) / 255.0
    path = str(tmp_path / "input.npz")
    np.savez(path, images=np.round(image * 255).astype(np.uint8)[None])
    out = run_lib.sample(_config(**{"pretrained.vae_tile": 8, "sampling.task": "img2img",
                                    "sampling.input": path, "sampling.strength": 0.0}),
                         str(tmp_path / "w"))
    with np.load(out) as f:
        samples = f["samples"]
    x = jnp.asarray(2.0 * image[None] - 1.0, jnp.float32)
    unit = lambda a: np.clip((np.asarray(a) + 1.0) / 2.0, 0.0, 1.0)
    z_tiled, z_full = vae_tiling.tiled(encode, x, 8, 2, 2, 1), encode(x)
    both = unit(vae_tiling.tiled(decode, z_tiled, 8, 2, 1, 2))
    assert samples.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(samples, np.repeat(both, 2, 0), atol=1e-5)
    for other in (vae_tiling.tiled(decode, z_full, 8, 2, 1, 2), decode(z_tiled)):
        assert np.abs(unit(other) - both).max() > 1e-3
    with open(tmp_path / "w" / "samples" / "img2img_0000.json") as f:
        assert json.load(f)["vae_tile"] == 8


@pytest.mark.parametrize("updates,key", [
    ({"pretrained.vae_tile": -8}, "pretrained.vae_tile"),
    ({"pretrained.vae_tile": 8, "pretrained.vae_tile_overlap": 5}, "pretrained.vae_tile_overlap"),
    ({"pretrained.vae_tile": 8, "pretrained.vae_tile_overlap": -2},
     "pretrained.vae_tile_overlap"),
    ({"pretrained.vae_tile": 1, "pretrained.vae_tile_overlap": 1}, "pretrained.vae_tile_overlap"),
])
def test_bad_tiles_are_one_line_and_write_nothing(updates, key, tmp_path):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        run_lib.sample(_config(**updates), str(tmp_path / "w"))
    assert "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "w")


def test_tile_defaults():
    assert vae_tiling.check_tiling(0, 5) == (0, 0)  # off: the overlap is not read
    assert vae_tiling.check_tiling(64, -1) == (64, 16)  # a quarter of the tile
    assert vae_tiling.check_tiling(8, 4) == (8, 4)
    request = sd_pipeline.read_request(_config(**{"pretrained.vae_tile": 12}))
    assert request.vae_tiling == (12, 3)
    assert sd_pipeline.read_request(_config()).vae_tiling == (0, 0)
