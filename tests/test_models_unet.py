"""Tests of the DDPM UNet, NCSN++/DDPM++ and FIR resampling (tiny sizes; CPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from models import ddpm, ncsnpp
from models import up_or_down_sampling as updown
from utils import ConfigError

TINY = dict(image_size=8, num_channels=3, nf=8, num_res_blocks=1, attn_resolutions=(4,),
            dropout=0.5)

# Together these cover every option value of NCSN++ at least once.
NCSNPP_CASES = {
    "ncsnpp_ve": dict(ch_mult=(1, 2)),
    "ddpmpp_vp": dict(ch_mult=(1, 2), fir=False, progressive_input="none",
                      embedding_type="positional", scale_by_sigma=False),
    "ddpm_block_outskip_cat": dict(ch_mult=(1, 2), resblock_type="ddpm",
                                   progressive="output_skip", progressive_input="input_skip",
                                   progressive_combine="cat", skip_rescale=False),
    "ddpm_block_residual_sum": dict(ch_mult=(1, 2), resblock_type="ddpm", fir=False,
                                    progressive="residual", progressive_input="input_skip",
                                    embedding_type="positional", resamp_with_conv=False,
                                    scale_by_sigma=False),
    "biggan_outskip_uncond": dict(ch_mult=(1, 2), progressive="output_skip",
                                  conditional=False, scale_by_sigma=False),
    "biggan_residual_cat": dict(ch_mult=(1, 2), fir=False, progressive="residual",
                                progressive_input="input_skip", progressive_combine="cat",
                                skip_rescale=False),
}
DDPM_CASES = {
    "ddpm": dict(ch_mult=(1, 2)),
    "ddpm_noconv_uncond": dict(ch_mult=(1, 2), resamp_with_conv=False, conditional=False),
}


def _normal(shape, seed=0) -> jnp.ndarray:
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _inputs(image_size=8, channels=3):
    x = np.random.default_rng(0).uniform(size=(2, image_size, image_size, channels))
    return jnp.asarray(x, jnp.float32), jnp.array([0.3, 7.0])


def _n_params(model, image_size=32, channels=3) -> int:
    x = jnp.zeros((1, image_size, image_size, channels))
    shapes = jax.eval_shape(model.init, _key(0), x, jnp.ones((1,)))
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes))


def _key(seed: int):
    """A PRNG key whose random ops compile fast on CPU (the tests run eagerly)."""
    return jax.random.key(seed, impl="rbg")


def _random_variables(model, x, labels):
    """Variables of the shapes `model.init` would create, filled with O(1) random values from
    numpy, so zero-initialised output layers do not hide anything and no init is compiled."""
    shapes = jax.eval_shape(model.init, _key(0), x, labels)
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        if "scale" in name:  # GroupNorm gain
            return jnp.asarray(1.0 + 0.1 * rng.standard_normal(leaf.shape), jnp.float32)
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 100
        return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(fan_in), jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _build(cls, kwargs):
    model = cls(**{**TINY, **kwargs})
    x, labels = _inputs()
    return model, _random_variables(model, x, labels)


@pytest.fixture(scope="module", params=list(NCSNPP_CASES) + list(DDPM_CASES))
def built(request):
    name = request.param
    if name in NCSNPP_CASES:
        return _build(ncsnpp.NCSNpp, NCSNPP_CASES[name])
    return _build(ddpm.DDPM, DDPM_CASES[name])


def test_output_shape_eval_and_train(built):
    model, variables = built
    x, labels = _inputs()
    y_eval = model.apply(variables, x, labels, train=False)
    y_train = model.apply(variables, x, labels, train=True, rngs={"dropout": _key(3)})
    assert y_eval.shape == y_train.shape == x.shape
    assert np.all(np.isfinite(y_eval)) and np.all(np.isfinite(y_train))
    assert not np.allclose(y_eval, y_train)  # dropout is active only when training
    y_again = model.apply(variables, x, labels, train=False)
    np.testing.assert_array_equal(y_eval, y_again)
    if model.conditional:
        y_other = model.apply(variables, x, labels[::-1], train=False)
        assert not np.allclose(y_eval, y_other)


def test_centering_and_scale_by_sigma():
    model, variables = _build(ncsnpp.NCSNpp, NCSNPP_CASES["ncsnpp_ve"])
    x, labels = _inputs()
    y = model.apply(variables, x, labels)
    centered = model.clone(centered=True, scale_by_sigma=False)
    y_centered = centered.apply(variables, 2 * x - 1, labels)
    np.testing.assert_allclose(y * labels[:, None, None, None], y_centered, rtol=2e-5, atol=2e-5)


def test_ddpm_cifar10_parameter_count():
    n = _n_params(ddpm.DDPM(image_size=32, num_channels=3, nf=128, ch_mult=(1, 2, 2, 2),
                            num_res_blocks=2, attn_resolutions=(16,), dropout=0.1,
                            resamp_with_conv=True))
    assert n == 35_746_307
    assert round(n / 1e5) / 10 == 35.7  # Ho et al. (2020), Appendix B


def test_ncsnpp_cifar10_parameter_counts():
    ncsnpp_ve = ncsnpp.NCSNpp()  # the defaults are the NCSN++ cont. CIFAR-10 configuration
    ddpmpp_vp = ncsnpp.NCSNpp(fir=False, progressive_input="none", embedding_type="positional",
                              scale_by_sigma=False)
    assert _n_params(ncsnpp_ve) == 62_758_787
    assert _n_params(ddpmpp_vp) == 61_804_419


# ---------------------------------------------------------------- FIR resampling


def _conv_ref(z: np.ndarray, k2: np.ndarray) -> np.ndarray:
    """Valid 2-D true convolution by explicit loops: z [H, W], k2 [kh, kw]."""
    kh, kw = k2.shape
    flipped = k2[::-1, ::-1]
    out = np.zeros((z.shape[0] - kh + 1, z.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(z[i:i + kh, j:j + kw] * flipped)
    return out


def _resample_ref(x: np.ndarray, taps, factor: int, up: bool) -> np.ndarray:
    """Reference FIR up/down-sampling of one channel x [H, W]."""
    k2 = np.outer(taps, taps) / np.sum(taps) ** 2
    p = len(taps) - factor
    if up:
        z = np.zeros((x.shape[0] * factor, x.shape[1] * factor))
        z[::factor, ::factor] = x
        before, after, k2 = (p + 1) // 2 + factor - 1, p // 2, k2 * factor**2
    else:
        z, before, after = x, (p + 1) // 2, p // 2
    z = np.pad(z, ((max(before, 0), max(after, 0)),) * 2)
    z = z[max(-before, 0):z.shape[0] - max(-after, 0), max(-before, 0):z.shape[1] - max(-after, 0)]
    out = _conv_ref(z, k2)
    return out if up else out[::factor, ::factor]


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 2, 1), (1, 2, 3), (1, 4, 6, 4, 1)])
@pytest.mark.parametrize("factor", [2, 4])
def test_fir_resampling_matches_reference(taps, factor):
    x = np.asarray(_normal((2, 8, 8, 3)))
    up = np.asarray(updown.upsample_2d(jnp.asarray(x), taps, factor=factor))
    down = np.asarray(updown.downsample_2d(jnp.asarray(x), taps, factor=factor))
    assert up.shape == (2, 8 * factor, 8 * factor, 3)
    assert down.shape == (2, 8 // factor, 8 // factor, 3)
    for b in range(2):
        for c in range(3):
            up_ref = _resample_ref(x[b, :, :, c], taps, factor, up=True)
            down_ref = _resample_ref(x[b, :, :, c], taps, factor, up=False)
            np.testing.assert_allclose(up[b, :, :, c], up_ref, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(down[b, :, :, c], down_ref, rtol=1e-5, atol=1e-5)


def test_box_kernel_is_nearest_and_average_pool():
    x = _normal((2, 8, 8, 3))
    np.testing.assert_allclose(updown.upsample_2d(x, (1, 1)), updown.naive_upsample_2d(x),
                               atol=1e-6)
    np.testing.assert_allclose(updown.downsample_2d(x, (1, 1)), updown.naive_downsample_2d(x),
                               atol=1e-6)


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 2, 1)])
def test_fused_resampling_conv_matches_unfused_in_interior(taps):
    """Away from the borders, conv and FIR filtering commute, so the fused ops equal
    'FIR-upsample then conv' and 'conv then FIR-downsample'."""
    x = _normal((2, 12, 12, 3))
    w = _normal((3, 3, 3, 5), seed=1)
    conv = lambda h: lax.conv_general_dilated(h, w, (1, 1), "SAME",
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
    up = updown.upsample_conv_2d(x, w, taps)
    down = updown.conv_downsample_2d(x, w, taps)
    assert up.shape == (2, 24, 24, 5) and down.shape == (2, 6, 6, 5)
    np.testing.assert_allclose(up[:, 4:-4, 4:-4], conv(updown.upsample_2d(x, taps))[:, 4:-4, 4:-4],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(down[:, 2:-2, 2:-2],
                               updown.downsample_2d(conv(x), taps)[:, 2:-2, 2:-2],
                               rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- configuration errors

BAD_NCSNPP = [
    ("model.resblock_type", dict(resblock_type="resnet")),
    ("model.progressive", dict(progressive="skip")),
    ("model.progressive_input", dict(progressive_input="output_skip")),
    ("model.progressive_combine", dict(progressive_combine="avg")),
    ("model.embedding_type", dict(embedding_type="learned")),
    ("model.fourier_scale", dict(fourier_scale=0.0)),
    ("model.fir_kernel", dict(fir_kernel=())),
    ("model.num_res_blocks", dict(num_res_blocks=0)),
    ("model.dropout", dict(dropout=1.0)),
    ("model.ch_mult", dict(ch_mult=())),
    ("data.image_size", dict(image_size=6, ch_mult=(1, 2, 2))),
    ("model.attn_resolutions", dict(attn_resolutions=(3,))),
    ("model.nf", dict(nf=10)),
    ("model.nf", dict(nf=2)),
    ("data.num_channels", dict(num_channels=1)),
]


@pytest.mark.parametrize("key,kwargs", BAD_NCSNPP, ids=[k for k, _ in BAD_NCSNPP])
def test_ncsnpp_bad_config_raises(key, kwargs):
    model = ncsnpp.NCSNpp(**{**TINY, "ch_mult": (1, 2), **kwargs})
    size = kwargs.get("image_size", 8)
    x, labels = _inputs(size)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        jax.eval_shape(model.init, _key(0), x, labels)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key,kwargs", [
    ("data.image_size", dict(image_size=30, ch_mult=(1, 2, 2, 2))),
    ("model.attn_resolutions", dict(attn_resolutions=(16,))),
    ("model.nf", dict(nf=10)),
])
def test_ddpm_bad_config_raises(key, kwargs):
    model = ddpm.DDPM(**{**TINY, "ch_mult": (1, 2), **kwargs})
    x, labels = _inputs(kwargs.get("image_size", 8))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        jax.eval_shape(model.init, _key(0), x, labels)


def test_input_shape_must_match_config():
    model = ddpm.DDPM(**{**TINY, "ch_mult": (1, 2)})
    x, labels = _inputs(16)
    with pytest.raises(ConfigError, match=r"data\.image_size"):
        jax.eval_shape(model.init, _key(0), x, labels)
