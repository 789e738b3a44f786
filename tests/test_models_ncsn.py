"""NCSN v1 / NCSNv2 RefineNets: norms vs their formulas, sigma indexing, 1/sigma output
scaling, shapes of every variant, parameter counts vs a closed-form count, config errors.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import ncsn, ncsn_layers, ncsnv2, normalization
from utils import ConfigError

KEY = jax.random.PRNGKey(0)
SIGMAS = jnp.array([0.5, 2.0])


def _fake_variables(model, x, labels, seed=0):
    """Variables of the right structure filled from numpy (cheaper than compiling `init`)."""
    shapes = jax.eval_shape(model.init, KEY, x, labels)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype), shapes)


def _images(size, channels=3, batch=2, seed=1):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(size=(batch, size, size, channels)), jnp.float32)


@pytest.fixture(scope="module")
def v2_setup():
    model = ncsnv2.NCSNv2(nf=4, image_size=16, num_channels=3)
    x = _images(16)
    return model, _fake_variables(model, x, SIGMAS), x


@pytest.fixture(scope="module")
def v1_setup():
    model = ncsn.NCSN(nf=4, num_scales=5, sigma_min=0.01, sigma_max=1.0, image_size=16)
    x = _images(16)
    return model, _fake_variables(model, x, SIGMAS), x


# ----------------------------------------------------------------------------- norms


def _numpy_norm_plus(x, gamma, alpha, beta, eps=1e-5):
    """NCSN app. A: gamma (x_hat + alpha mu_hat) + beta, computed directly in float64."""
    x = np.asarray(x, np.float64)
    mu = x.mean(axis=(1, 2), keepdims=True)
    s = np.sqrt(x.var(axis=(1, 2), keepdims=True) + eps)
    m = mu.mean(axis=-1, keepdims=True)
    v = np.sqrt(((mu - m) ** 2).mean(axis=-1, keepdims=True) + eps)
    return gamma * ((x - mu) / s + alpha * (mu - m) / v) + beta


def test_conditional_instance_norm_plus_matches_formula():
    c, num_classes = 6, 4
    rng = np.random.default_rng(0)
    x = jnp.asarray(3.0 + 2.0 * rng.standard_normal((2, 5, 4, c)), jnp.float32)
    y = jnp.array([3, 0])
    norm = normalization.ConditionalInstanceNormPlus(num_classes=num_classes)
    params = norm.init(KEY, x, y)["params"]
    table0 = np.asarray(params["Embed_0"]["embedding"])
    assert table0.shape == (num_classes, 3 * c)
    np.testing.assert_allclose(table0[:, : 2 * c], 1.0, atol=0.1)  # gamma, alpha ~ N(1, .02^2)
    np.testing.assert_array_equal(table0[:, 2 * c :], 0.0)  # beta = 0
    table = rng.standard_normal((num_classes, 3 * c)).astype(np.float32)
    out = norm.apply({"params": {"Embed_0": {"embedding": jnp.asarray(table)}}}, x, y)
    g, a, b = np.split(table[np.asarray(y)][:, None, None, :], 3, axis=-1)
    np.testing.assert_allclose(out, _numpy_norm_plus(x, g, a, b), rtol=1e-4, atol=1e-4)


def test_instance_norm_plus_matches_formula():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 3, 5, 4)) - 1.0, jnp.float32)
    p = {k: jnp.asarray(rng.standard_normal(4), jnp.float32) for k in ("gamma", "alpha", "beta")}
    out = normalization.InstanceNormPlus().apply({"params": p}, x)
    want = _numpy_norm_plus(x, *(np.asarray(p[k]) for k in ("gamma", "alpha", "beta")))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- NCSN v1


@pytest.mark.parametrize("num_scales, sigma_min, sigma_max", [(10, 0.01, 1.0), (232, 0.01, 50.0)])
def test_sigma_to_index_recovers_every_table_entry(num_scales, sigma_min, sigma_max):
    table = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_scales))
    idx = ncsn.sigma_to_index(jnp.asarray(table, jnp.float32), sigma_min, sigma_max, num_scales)
    np.testing.assert_array_equal(idx, np.arange(num_scales))
    outside = ncsn.sigma_to_index(jnp.array([1e3, 1e-6]), sigma_min, sigma_max, num_scales)
    np.testing.assert_array_equal(outside, [0, num_scales - 1])


def test_ncsn_conditions_on_the_noise_level_index(v1_setup):
    model, variables, x = v1_setup
    x = jnp.concatenate([x[:1]] * 4)
    table = np.exp(np.linspace(0.0, np.log(0.01), 5))  # sigma_max = 1, L = 5
    sigmas = jnp.array([table[1], table[1] * 1.01, table[2], table[2]], jnp.float32)
    out = model.apply(variables, x, sigmas, train=False)
    assert out.shape == x.shape
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-6)  # same index
    assert not np.allclose(out[1], out[2], atol=1e-3)  # different index


# ----------------------------------------------------------------------------- NCSNv2


def test_ncsnv2_output_scales_as_one_over_sigma(v2_setup):
    model, variables, x = v2_setup
    x = jnp.concatenate([x[:1], x[:1]])
    out = model.apply(variables, x, SIGMAS, train=False)
    np.testing.assert_allclose(out[0] * SIGMAS[0], out[1] * SIGMAS[1], rtol=1e-5, atol=1e-6)


def test_uncentered_inputs_are_mapped_to_minus_one_one(v2_setup):
    model, variables, x = v2_setup
    out = model.apply(variables, x, SIGMAS)
    centered = model.clone(centered=True).apply(variables, 2.0 * x - 1.0, SIGMAS)
    np.testing.assert_allclose(out, centered, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cls, size", [(ncsnv2.NCSNv2_128, 4), (ncsnv2.NCSNv2_256, 8)], ids=["128@4px", "256@8px"]
)
def test_deeper_variants_at_smallest_input(cls, size):
    model = cls(nf=2, image_size=size, num_channels=1)
    x = _images(size, channels=1)
    out = model.apply(_fake_variables(model, x, SIGMAS), x, SIGMAS)
    assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))


def test_conv_init_matches_pytorch_default_bounds():
    class OneConv(nn.Module):
        @nn.compact
        def __call__(self, x):
            return ncsn_layers.ncsn_conv(x, 64, dilation=2)

    x = jnp.zeros((1, 4, 4, 16))
    p = OneConv().init(KEY, x)["params"]["Conv_0"]
    bound = 1.0 / np.sqrt(16 * 9)  # 1/sqrt(fan_in) for kernel and bias alike
    for w in (p["kernel"], p["bias"]):
        assert float(jnp.max(jnp.abs(w))) <= bound and float(jnp.std(w)) > 0.4 * bound


# ----------------------------------------------------------------------------- sizes


def _conv(cin, cout, k=3, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def _closed_form_count(nf, channels, stages, refine_mults, num_classes=None):
    """Parameters of the dilated RefineNet, counted from the architecture description."""
    cond = num_classes is not None

    def norm(c):
        return 3 * c * (num_classes if cond else 1)

    def refine_norm(c):
        return norm(c) if cond else 0

    def res_block(cin, cout, down, d):
        n = norm(cin)
        if down:
            n += _conv(cin, cin) + norm(cin) + _conv(cin, cout)
            return n + (_conv(cin, cout) if d > 1 else _conv(cin, cout, k=1))
        n += _conv(cin, cout) + norm(cout) + _conv(cout, cout)
        if cin != cout:
            n += _conv(cin, cout) if d > 1 else _conv(cin, cout, k=1)
        return n

    def rcu(c, n_blocks):
        return n_blocks * 2 * (_conv(c, c, bias=False) + refine_norm(c))

    total, c, widths = _conv(channels, nf), nf, []
    for mult, down, d in stages:
        total += res_block(c, mult * nf, down, d) + res_block(mult * nf, mult * nf, False, d)
        c = mult * nf
        widths.append(c)
    prev = None
    for i, (w, mult) in enumerate(zip(widths[::-1], refine_mults, strict=True)):
        ins, out = ([w] if prev is None else [w, prev]), mult * nf
        total += sum(rcu(ci, 2) for ci in ins)
        if len(ins) > 1:
            total += sum(_conv(ci, out) + refine_norm(ci) for ci in ins)
        total += 2 * (_conv(out, out, bias=False) + refine_norm(out))  # CRP
        total += rcu(out, 3 if i == len(widths) - 1 else 1)
        prev = out
    return total + norm(nf) + _conv(nf, channels)


def _count(model, size, channels=3):
    x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
    shapes = jax.eval_shape(model.init, KEY, x, jax.ShapeDtypeStruct((1,), jnp.float32))
    return sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))


# CIFAR-10 configurations of the NCSN (2019) and NCSNv2 (2020) papers.
CIFAR10_COUNTS = [
    (ncsn.NCSN(nf=128, num_scales=10, sigma_min=0.01, sigma_max=1.0, image_size=32), 30_117_635),
    (ncsnv2.NCSNv2(nf=128, image_size=32), 29_694_083),
]


@pytest.mark.parametrize("model, expected", CIFAR10_COUNTS, ids=["ncsn", "ncsnv2"])
def test_cifar10_parameter_counts(model, expected):
    num_classes = model.num_scales if isinstance(model, ncsn.NCSN) else None
    closed = _closed_form_count(128, 3, model.STAGES, model.REFINE_MULTS, num_classes)
    assert _count(model, 32) == closed == expected


@pytest.mark.parametrize("cls", [ncsnv2.NCSNv2_128, ncsnv2.NCSNv2_256])
def test_deeper_variant_parameter_counts(cls):
    model = cls(nf=8, image_size=32)
    assert _count(model, 32) == _closed_form_count(8, 3, cls.STAGES, cls.REFINE_MULTS)


def test_full_size_256_shapes():
    model = ncsnv2.NCSNv2_256(nf=8, image_size=256)
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    s = jax.ShapeDtypeStruct((1,), jnp.float32)
    out = jax.eval_shape(model.apply, jax.eval_shape(model.init, KEY, x, s), x, s)
    assert out.shape == x.shape


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "model, size, key",
    [
        (ncsnv2.NCSNv2_128(nf=2, image_size=18), 18, "data.image_size"),
        (ncsnv2.NCSNv2_256(nf=2, image_size=12), 12, "data.image_size"),
        (ncsnv2.NCSNv2(nf=2, image_size=8), 16, "data.image_size"),
        (ncsnv2.NCSNv2(nf=2, image_size=8, normalization="GroupNorm"), 8, "model.normalization"),
        (ncsn.NCSN(nf=2, image_size=8, normalization="InstanceNorm"), 8, "model.normalization"),
        (ncsnv2.NCSNv2(nf=2, image_size=8, nonlinearity="gelu"), 8, "model.nonlinearity"),
        (ncsnv2.NCSNv2(nf=2, image_size=8, interpolation="cubic"), 8, "model.interpolation"),
        (ncsn.NCSN(nf=2, image_size=8, sigma_min=2.0, sigma_max=1.0), 8, "model.sigma_min"),
        (ncsn.NCSN(nf=0, image_size=8), 8, "model.nf"),
    ],
)
def test_bad_config_raises_config_error_naming_the_key(model, size, key):
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    with pytest.raises(ConfigError, match=key) as err:
        jax.eval_shape(model.init, KEY, x, jax.ShapeDtypeStruct((1,), jnp.float32))
    assert "\n" not in str(err.value)
