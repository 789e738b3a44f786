"""models/conv.py (explicit canonical convolution gradients) and cpu_defaults.py (XLA flags,
dispatch mode and malloc settings), the CPU defaults adopted for speed.

Values and gradients are compared with `lax.conv_general_dilated`'s own (autodiff through its
transpose rules), for strides, paddings and kernel sizes the networks use and odd ones they do
not, inside and outside `lax.scan`; then 20 DDPM train steps under the defaults are compared
with 20 steps under XLA's own gradients and settings, in a subprocess, which also shows the
page faults the malloc and dispatch defaults remove.
"""

import functools
import itertools
import json
import os
import resource
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import cpu_defaults
import losses
import sde_lib
from models import conv
from models.ddpm import DDPM

DN = ("NHWC", "HWIO", "NHWC")


def _lax(x, w, strides, pad):
    return lax.conv_general_dilated(x, w, strides, pad, dimension_numbers=DN)


def _ours(x, w, strides, pad):
    return conv.conv_general_dilated(x, w, strides, pad, dimension_numbers=DN)


def _vjp(f, x, w, dy):
    y, pull = jax.vjp(f, x, w)
    return (y, *pull(dy))


CASES = list(itertools.product(
    (7,),  # height (the width, 10, is even)
    (1, 2, 3, 4),  # square kernel
    (1, 2),  # stride
    ("SAME", "VALID", ((1, 1), (1, 1)), ((0, 1), (2, 0)))))
# a pad of the kernel size or more is the lax fallback (tested below), not a case here
CASES = [c for c in CASES if isinstance(c[3], str) or all(lo < c[1] for lo, _ in c[3])]


@pytest.mark.parametrize("h,k,s,pad", CASES)
def test_values_and_gradients_match_lax(h, k, s, pad):
    kx, kw, ky = jax.random.split(jax.random.PRNGKey(h * 100 + k * 10 + s), 3)
    x = jax.random.normal(kx, (3, h, h + 3, 5))
    w = jax.random.normal(kw, (k, k, 5, 6))
    y_ref = _lax(x, w, (s, s), pad)
    dy = jax.random.normal(ky, y_ref.shape)
    ref = jax.jit(lambda x, w, dy: _vjp(lambda a, b: _lax(a, b, (s, s), pad), x, w, dy))(x, w, dy)
    got = jax.jit(lambda x, w, dy: _vjp(lambda a, b: _ours(a, b, (s, s), pad), x, w, dy))(x, w, dy)
    for name, r, g in zip(("y", "dx", "dw"), ref, got, strict=True):
        assert g.shape == r.shape and g.dtype == r.dtype, name
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(r))),
                                   err_msg=name)


def test_gradients_inside_scan_match_lax():
    """The loop case the module exists for: kernel and input gradients in a scan body."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 4, 4)) * 0.3

    def run(f):
        def body(c, _):
            xc, wc = c
            dx, dw = jax.grad(lambda a, b: jnp.sum(jnp.tanh(f(a, b, (1, 1), "SAME"))),
                              argnums=(0, 1))(xc, wc)
            return (xc - 0.1 * dx, wc - 0.1 * dw), jnp.sum(dw)
        return jax.jit(lambda x, w: jax.lax.scan(body, (x, w), None, length=3))(x, w)

    (xr, wr), sr = run(_lax)
    (xo, wo), so = run(_ours)
    np.testing.assert_allclose(xo, xr, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(wo, wr, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(so, sr, rtol=1e-5, atol=1e-4)


def _uses_custom_vjp(f, *args) -> bool:
    return "custom_vjp_call" in str(jax.make_jaxpr(f)(*args))


def test_which_convolutions_take_the_explicit_path(monkeypatch):
    x = jnp.ones((1, 8, 8, 4))
    w = jnp.ones((3, 3, 4, 4))
    assert _uses_custom_vjp(lambda a, b: _ours(a, b, (1, 1), "SAME"), x, w)
    # dilation, grouping (the depthwise FIR filters) and a pad >= the kernel fall back to lax
    x = jax.random.normal(jax.random.PRNGKey(0), x.shape)
    w = jax.random.normal(jax.random.PRNGKey(1), w.shape)
    cases = (dict(rhs_dilation=(2, 2)), dict(feature_group_count=4),
             dict(padding=((3, 3), (0, 0))))
    for kw in cases:
        kw = {"padding": "SAME", **kw}
        wk = w[:, :, :1] if "feature_group_count" in kw else w

        def ours(a, b, kw=kw):
            return conv.conv_general_dilated(a, b, (1, 1), dimension_numbers=DN, **kw)

        def ref(a, b, kw=kw):
            return lax.conv_general_dilated(a, b, (1, 1), dimension_numbers=DN, **kw)

        assert not _uses_custom_vjp(ours, x, wk)
        dy = jnp.ones_like(ref(x, wk))
        for o, r in zip(jax.jit(functools.partial(_vjp, ours))(x, wk, dy),
                        jax.jit(functools.partial(_vjp, ref))(x, wk, dy), strict=True):
            np.testing.assert_allclose(o, r, rtol=1e-6, atol=1e-5)
    monkeypatch.setenv("SCORELAB_CONV_GRAD", "xla")
    assert not _uses_custom_vjp(lambda a, b: _ours(a, b, (1, 1), "SAME"), x, w)


def test_flax_conv_keeps_its_parameters():
    x = jnp.ones((1, 8, 8, 3))
    ours = conv.Conv(5, (3, 3), strides=(2, 2)).init(jax.random.PRNGKey(0), x)
    import flax.linen as nn
    ref = nn.Conv(5, (3, 3), strides=(2, 2)).init(jax.random.PRNGKey(0), x)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def train_small_ddpm(steps: int = 20):
    """`steps` train steps of a small DDPM (stride-2 downsampling convolutions, 1x1 shortcuts,
    attention, dropout): (losses [steps], final parameters) as numpy."""
    model = DDPM(image_size=8, num_channels=1, nf=16, ch_mult=(1, 2), num_res_blocks=1,
                 attn_resolutions=(4,), dropout=0.1)
    sde = sde_lib.VPSDE(N=100)
    x = jax.random.uniform(jax.random.PRNGKey(0), (steps, 4, 8, 8, 1))
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x[0], jnp.ones((4,)))["params"]
    opt = losses.get_optimizer(lr=1e-3, warmup=0)
    loss_fn = losses.get_loss_fn(sde, model, True, continuous=False)
    step = jax.jit(losses.get_step_fn(loss_fn, opt, 0.999))
    state = jax.jit(losses.init_train_state, static_argnums=1)(params, opt)
    step_losses = []
    for i in range(steps):
        state, loss = step(state, x[i], jax.random.PRNGKey(i))
        step_losses.append(float(loss))
    return np.array(step_losses), [np.asarray(p) for p in jax.tree.leaves(state.params)]


def page_faults_per_call(calls: int = 4) -> float:
    """Minor page faults per call of a jitted program whose loop carries a 64 MiB temporary."""
    x = jnp.ones((4096, 4096))
    f = jax.jit(lambda x: jnp.sum(lax.fori_loop(0, 2, lambda i, y: y * 1.5 + 1.0, x * 2.0)))
    for _ in range(2):  # the heap reaches its size
        f(x).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        f(x).block_until_ready()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


CHILD = """
import json, os, sys
sys.path.insert(0, "tests")
import jax
from test_conv import page_faults_per_call, train_small_ddpm
assert "ynn_fusion_type" not in os.environ.get("XLA_FLAGS", "")
assert jax.config._read("jax_cpu_enable_async_dispatch")
step_losses, params = train_small_ddpm()
print(json.dumps({"losses": step_losses.tolist(), "params": [p.tolist() for p in params],
                  "faults": page_faults_per_call()}))
"""


FAULTS_CHILD = """
import json, sys
sys.path.insert(0, "tests")
import cpu_defaults
assert len(cpu_defaults.apply()) == 3  # the flag, the dispatch mode, the malloc settings
from test_conv import page_faults_per_call
print(json.dumps(page_faults_per_call()))
"""


def test_cpu_defaults_give_the_same_20_train_steps():
    """The CPU defaults adopted for speed (explicit convolution gradients, cpu_defaults.py's XLA
    flag, dispatch mode and malloc settings; this session runs with all of them) against XLA's
    own gradients and JAX's own settings (a subprocess with SCORELAB_CONV_GRAD=xla and
    SCORELAB_XLA_DEFAULTS=off)."""
    assert "ynn_fusion_type" in os.environ["XLA_FLAGS"] and conv.enabled()
    assert not jax.config._read("jax_cpu_enable_async_dispatch")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(SCORELAB_CONV_GRAD="xla", SCORELAB_XLA_DEFAULTS="off")
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE,
                             text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    new_losses, new_params = train_small_ddpm()
    out, _ = child.communicate(timeout=600)
    assert child.returncode == 0
    old = json.loads(out.strip().splitlines()[-1])
    assert new_losses[-1] < new_losses[0]  # it trains
    np.testing.assert_allclose(new_losses, old["losses"], rtol=1e-4)
    for a, b in zip(new_params, old["params"], strict=True):
        np.testing.assert_allclose(a, np.array(b), rtol=1e-3, atol=1e-5)
    # JAX's defaults map the 64 MiB temporary afresh on each call (16384 pages of 4 KiB on
    # Linux); the defaults here reuse it. Measured, like the other side, in a fresh process
    # started as main.py starts (this session's heap has been shaped by every earlier test).
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", cpu_defaults.ENV_VAR)}
    out = subprocess.run([sys.executable, "-c", FAULTS_CHILD], env=env, capture_output=True,
                         text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-2000:]
    faults = json.loads(out.stdout.strip().splitlines()[-1])
    # Most calls fault nothing; depending on where the heap's top lies, a process can still
    # fault 16 MB (4096 pages) per call, a quarter of the temporary, so the bound is a half.
    assert old["faults"] > 2 * faults + 10, (old["faults"], faults)


def test_cpu_defaults_respect_the_user():
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+eltwise"}
    assert cpu_defaults.apply(env) == [] and env["XLA_FLAGS"].endswith("+eltwise")
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert cpu_defaults.apply(env) == ["--xla_cpu_experimental_ynn_fusion_type="
                                       "-individual_convolution"]
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2",
                                        "--xla_cpu_experimental_ynn_fusion_type="
                                        "-individual_convolution"]
    env = {"SCORELAB_XLA_DEFAULTS": "off"}
    assert cpu_defaults.apply(env) == [] and "XLA_FLAGS" not in env
    assert cpu_defaults.apply(env, process=True) == []  # off leaves the process alone too
