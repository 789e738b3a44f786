"""Convolution gradients on XLA:CPU: lax's transpose rules against models/conv.py's explicit
canonical form, one at a time and inside `lax.scan` (several train steps per call).

    python bench/conv_grad.py [--repeats 7]

Rows: the forward, input-gradient and kernel-gradient convolutions of one 3x3, 128 -> 128
channel layer at 32x32, batch 8 (the DDPM CIFAR-10 top level), then a train step (Adam,
clipping, dropout) of four DDPM residual blocks at that size, as one jitted step and per step
of a 4-step `lax.scan`. Each cell is a median over --repeats calls, both modes in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402

from bench.train_throughput import machine  # noqa: E402
from models import conv, layers  # noqa: E402

DN = ("NHWC", "HWIO", "NHWC")
SCAN = 4


def timed(f, args, repeats: int, per: int = 1) -> tuple[float, float]:
    """(first call s, median later call s / per)."""
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append((time.perf_counter() - t0) / per)
    return first, statistics.median(times)


class Blocks(nn.Module):
    @nn.compact
    def __call__(self, x, temb, train):
        h = conv.Conv(128, (3, 3))(x)
        for _ in range(4):
            h = layers.ResnetBlockDDPM(out_ch=128, dropout=0.1)(h, temb, train)
        return conv.Conv(3, (3, 3))(h)


def layer_rows(repeats: int) -> list[tuple[str, float, float]]:
    """(what, ms with lax's gradients, ms explicit) for the single layer, alone and scanned."""
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 128))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 128, 128)) * 0.03
    dy = jax.random.normal(jax.random.PRNGKey(2), (8, 32, 32, 128))
    fns = {"lax": lambda a, b: lax.conv_general_dilated(a, b, (1, 1), "SAME",
                                                        dimension_numbers=DN),
           "explicit": lambda a, b: conv.conv_general_dilated(a, b, (1, 1), "SAME",
                                                              dimension_numbers=DN)}
    parts = {"forward": lambda f: lambda a: f(a, w),
             "input gradient": lambda f: lambda a: jax.vjp(lambda u: f(u, w), x)[1](a)[0],
             # the kernel gradient, returned at the input's shape so that it can be scanned
             "kernel gradient": lambda f: lambda a: jnp.broadcast_to(
                 jnp.sum(jax.vjp(lambda v: f(x, v), w)[1](a)[0]), a.shape)}
    rows = []
    for part, make in parts.items():
        for where in ("one call", f"per step of a {SCAN}-step scan"):
            cells = []
            for mode in ("lax", "explicit"):
                g = make(fns[mode])
                if where == "one call":
                    f = jax.jit(g)
                    per = 1
                else:
                    f = jax.jit(lambda a, g=g: lax.scan(lambda c, _: (g(c) * 0.5, None), a, None,
                                                        length=SCAN)[0])
                    per = SCAN
                cells.append(timed(f, (dy,), repeats, per)[1] * 1e3)
            rows.append((f"{part}, {where}", *cells))
    return rows


def step_rows(repeats: int) -> list[tuple[str, float, float, float, float]]:
    """Train step of four residual blocks: (what, compile s and ms/step, lax then explicit)."""
    net = Blocks()
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 3))
    temb = jax.random.normal(jax.random.PRNGKey(1), (8, 512))
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(2e-4))

    rows = {}
    for mode in ("xla", "explicit"):
        os.environ["SCORELAB_CONV_GRAD"] = mode

        # defined per mode: jit and scan cache traces by function, and the mode is read when
        # tracing
        def step(state, rng):
            params, opt_state = state

            def loss_fn(p):
                out = net.apply({"params": p}, x, temb, True, rngs={"dropout": rng})
                return jnp.mean((out - x) ** 2)

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        params = jax.jit(net.init, static_argnums=3)(
            {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, temb,
            False)["params"]
        state = (params, opt.init(params))
        rngs = jax.random.split(jax.random.PRNGKey(3), SCAN)
        one = jax.jit(step)
        scanned = jax.jit(lambda s, r: lax.scan(step, s, r))
        rows.setdefault("train step, one call", []).extend(
            timed(one, (state, rngs[0]), repeats))
        rows.setdefault(f"train step, per step of a {SCAN}-step scan", []).extend(
            timed(scanned, (state, rngs), max(2, repeats // SCAN), SCAN))
    os.environ.pop("SCORELAB_CONV_GRAD")
    return [(k, *v) for k, v in rows.items()]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    print(f"Machine: {machine()}\n")
    print("| 3x3 conv, 128 -> 128 ch, 8x32x32 | lax gradients ms | explicit ms | speed-up |")
    print("|---|---:|---:|---:|")
    for what, a, b in layer_rows(args.repeats):
        print(f"| {what} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    print("\n| four DDPM residual blocks, batch 8 | lax: first call s | lax ms/step "
          "| explicit: first call s | explicit ms/step | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, fa, a, fb, b in step_rows(args.repeats):
        print(f"| {what} | {fa:.1f} | {a * 1e3:.0f} | {fb:.1f} | {b * 1e3:.0f} | {a / b:.2f}x |")
    print(f"\nMedians of {args.repeats} calls (scan rows: per step). First call: compile + run.")


if __name__ == "__main__":
    main()
