"""Train-step throughput of the CIFAR-10 NCSN++ (VE, continuous) and DDPM++ configs.

    python bench/train_throughput.py [--batch 8] [--steps 5] [--configs ve/cifar10_ncsnpp,...]

Prints a markdown table: compile time (cold, and warm from JAX's persistent compilation cache),
train steps/s and images/s (median over timed steps), XLA's memory analysis of the step and the
process's peak RSS, and the step's achieved FLOP/s (XLA cost analysis / step time) against the
FLOP/s of a large float32 `jnp.dot` on the same device.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cpu_defaults  # noqa: E402

cpu_defaults.apply()  # the CPU defaults of main.py, before JAX starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import losses  # noqa: E402
import models  # noqa: E402
import sde_lib  # noqa: E402

DEFAULT_CONFIGS = "ve/cifar10_ncsnpp_continuous,vp/cifar10_ddpmpp_continuous"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dev = jax.devices()[0]
    return (f"{cpu}; {os.cpu_count()} cores; jax {jax.__version__}; backend "
            f"{jax.default_backend()}; device {dev.device_kind}")


def dot_flops(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n float32 matmul (2 n^3 FLOPs), median of `repeats`."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / float(np.median(times))


def build_step(config, batch: int):
    """A jitted single train step of `config` and its example arguments."""
    sde = sde_lib.get_sde(config)
    model = models.get_model(config)
    d = config.data
    x = jnp.zeros((batch, d.image_size, d.image_size, d.num_channels))
    params = jax.jit(lambda: model.init({"params": jax.random.PRNGKey(0),
                                         "dropout": jax.random.PRNGKey(1)},
                                        x[:1], jnp.ones((1,)), train=False)["params"])()
    opt = losses.get_optimizer(lr=2e-4, warmup=10)
    t = config.training
    loss_fn = losses.get_loss_fn(sde, model, True, t.method, t.continuous, t.reduce_mean,
                                 t.likelihood_weighting)
    step = jax.jit(losses.get_step_fn(loss_fn, opt, config.model.ema_rate), donate_argnums=0)
    state = losses.init_train_state(params, opt)
    batch_x = jax.random.uniform(jax.random.PRNGKey(2), x.shape)
    return step, state, batch_x, jax.random.PRNGKey(3)


def measure(name: str, batch: int, steps: int) -> dict:
    config = importlib.import_module(f"configs.{name.replace('/', '.')}").get_config()
    step, state, x, rng = build_step(config, batch)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    lowered = step.lower(state, x, rng)
    t0 = time.perf_counter()
    compiled = lowered.compile()  # the persistent cache (set up in main) has no entry yet
    cold = time.perf_counter() - t0
    jax.clear_caches()  # drop in-memory caches: the next compile can only hit the disk cache
    t0 = time.perf_counter()
    step.lower(state, x, rng).compile()
    warm = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    mem = compiled.memory_analysis()
    times = []
    state, loss = compiled(state, x, rng)
    loss.block_until_ready()
    for _ in range(steps):
        t0 = time.perf_counter()
        state, loss = compiled(state, x, rng)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))
    mem_bytes = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
                 if mem is not None else float("nan"))
    return {"config": name, "params": n_params, "batch": batch, "cold": cold, "warm": warm,
            "step_s": dt, "steps_per_s": 1 / dt, "images_per_s": batch / dt,
            "xla_mem_gib": mem_bytes / 2**30, "flops": float(cost.get("flops", float("nan"))),
            "loss": float(loss)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=DEFAULT_CONFIGS)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        # JAX's persistent compilation cache, set before the first compile of the process.
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        print(f"Machine: {machine()}")
        peak = dot_flops()
        print(f"Reference: float32 2048x2048 jnp.dot at {peak / 1e9:.1f} GFLOP/s\n")
        for name in args.configs.split(","):
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows.append(measure(name, args.batch, args.steps))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("| config | params | batch | compile cold s | compile warm s | steps/s | images/s "
          "| XLA step memory GiB | GFLOP/step | achieved GFLOP/s | % of jnp.dot |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        achieved = r["flops"] / r["step_s"]
        print(f"| {r['config']} | {r['params'] / 1e6:.1f}M | {r['batch']} | {r['cold']:.1f} | "
              f"{r['warm']:.1f} | {r['steps_per_s']:.3f} | {r['images_per_s']:.2f} | "
              f"{r['xla_mem_gib']:.2f} | {r['flops'] / 1e9:.1f} | {achieved / 1e9:.1f} | "
              f"{100 * achieved / peak:.0f}% |")
    print(f"\nProcess peak RSS: {rss:.2f} GiB. Step time: median of {args.steps} steps.")


if __name__ == "__main__":
    main()
