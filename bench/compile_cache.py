"""Time to the first train step and the first sample batch, cold (empty persistent compilation
cache) and warm (a second process reading the cache), for the toy, digits and CIFAR-10
DDPM++ configs.

    python bench/compile_cache.py [--configs toy,digits,cifar10_ddpmpp] [--cifar_batch 8]

Each measurement is a fresh process building the run's programs as `run_lib.train` does (init,
the jitted train step, the sampler), timed from after the imports. The train step of an image
config reads a random batch of the right shape (the compiled program does not depend on the
values, so CIFAR-10 needs no data). "first sample batch" runs the configured sampler once
(toy: 2000 samples, 1000 PC evaluations; digits: 64 samples, 500 Euler-Maruyama steps); for
CIFAR-10 only the sampler's compilation is timed, since 2000 evaluations of the 62M-parameter
network take far longer than the compilation. The last column sums XLA's backend compilation
(cache reads included) over every program of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {  # name -> (config module, overrides, run the first sample batch)
    "toy": ("configs.toy.vp_checkerboard", {}, True),
    "digits": ("configs.digits.vp_ddpmpp", {}, True),
    "cifar10_ddpmpp": ("configs.vp.cifar10_ddpmpp_continuous", {}, False),
}

_CHILD = r"""
import importlib, json, sys, time
sys.path.insert(0, {root!r})
import cpu_defaults
cpu_defaults.apply()  # as main.py does, before JAX starts
import compile_cache
compile_cache.setup()
import jax, jax.numpy as jnp, numpy as np
from jax import monitoring
compile_s = [0.0]
def on_duration(event, duration_secs, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        compile_s[0] += duration_secs
monitoring.register_event_duration_secs_listener(on_duration)
from jax.sharding import NamedSharding, PartitionSpec as P
import losses, run_lib

config = run_lib.override(importlib.import_module({module!r}).get_config(),
                          json.loads({overrides!r}))
t0 = time.perf_counter()
exp = run_lib.build(config)
optimizer = run_lib.get_optimizer(config)
step_fn = losses.get_step_fn(run_lib.get_loss_fn(config, exp), optimizer, config.model.ema_rate,
                             bool(config.model.get("ema_warmup", False)))
state = run_lib.init_state(lambda: run_lib.init_params(config, exp), optimizer, exp.mesh)
p_step = run_lib._jit_train_steps(step_fn, run_lib._key(config, run_lib.STREAM_TRAIN),
                                  NamedSharding(exp.mesh, P()))
n, b = int(config.training.n_jitted_steps), int(config.training.batch_size)
if exp.images:
    batches = jax.random.uniform(jax.random.PRNGKey(0), (1, b) + exp.shape) * 2 - 1
else:
    batches = run_lib._train_batches(config, exp, None, 0)(0, n)
state, step_losses = p_step(state, batches)
run_lib.fetch(step_losses)
first_step = time.perf_counter() - t0
num = min(int(config.sampling.batch_size), int(config.sampling.num_samples))
generator = run_lib.get_generator(config, exp, num)
rng = np.asarray(jax.random.PRNGKey(1))
t1 = time.perf_counter()
compiled = generator.lower(rng, state.ema_params).compile()
sampler_compile = time.perf_counter() - t1
first_batch = None
if {sample!r}:
    x, nfe = compiled(rng, state.ema_params)
    run_lib.fetch(x)
    first_batch = time.perf_counter() - t1
print("RESULT " + json.dumps(dict(first_step=first_step, sampler_compile=sampler_compile,
                                  first_batch=first_batch, steps=n, compile_s=compile_s[0])))
"""


def measure(name: str, cache_dir: str, extra: dict) -> dict:
    module, overrides, sample = CONFIGS[name]
    code = _CHILD.format(root=ROOT, module=module, overrides=json.dumps({**overrides, **extra}),
                         sample=sample)
    env = {**os.environ, "SCORELAB_COMPILE_CACHE": cache_dir, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _s(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--cifar_batch", type=int, default=8,
                   help="CIFAR-10 training and sampling batch (compilation barely depends on it)")
    args = p.parse_args()
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"error: unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start (shared with other jobs: times are upper "
          "bounds)\n")
    print("| config | cache | first train step s | sampler compile s | first sample batch s | "
          "XLA compile s (all programs) |")
    print("|:--|:--|--:|--:|--:|--:|")
    for name in names:
        extra = {}
        if name.startswith("cifar10"):
            extra = {"training.batch_size": args.cifar_batch,
                     "sampling.batch_size": args.cifar_batch}
        with tempfile.TemporaryDirectory() as cache:
            for label in ("cold", "warm"):
                r = measure(name, cache, extra)
                print(f"| {name} | {label} | {_s(r['first_step'])} | "
                      f"{_s(r['sampler_compile'])} | {_s(r['first_batch'])} | "
                      f"{_s(r['compile_s'])} |", flush=True)


if __name__ == "__main__":
    main()
