"""Training speed of the digits default (configs/digits/vp_ddpmpp.py) under the CPU settings.

    python bench/digits_train.py [--calls 3] [--full]

Rows: the train step (batch 64, 16x16, DDPM++ with 12 base channels) in a fresh process per
setting, one call per step or `lax.scan` over 10 steps per call: before (XLA's own convolution
gradients, no cpu_defaults.py settings), with models/conv.py's explicit gradients, and with both
(the defaults). Each cell: compile + first call, and the median per-step time of --calls
further calls. With --full it also times the README command itself, `python main.py --config
configs/digits/vp_ddpmpp.py` (3000 steps, two sample grids, checkpoints), before and after, in
fresh workdirs with an empty compilation cache: about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BEFORE = {"SCORELAB_CONV_GRAD": "xla", "SCORELAB_XLA_DEFAULTS": "off"}
SETTINGS = [  # (name, environment, steps per call)
    ("before: lax gradients, no cpu_defaults.py", BEFORE, 1),
    ("before: lax gradients, no cpu_defaults.py", BEFORE, 10),
    ("explicit gradients (models/conv.py)", {"SCORELAB_XLA_DEFAULTS": "off"}, 1),
    ("explicit gradients (models/conv.py)", {"SCORELAB_XLA_DEFAULTS": "off"}, 10),
    ("explicit gradients + cpu_defaults.py (the defaults)", {}, 1),
    ("explicit gradients + cpu_defaults.py (the defaults)", {}, 10),
]

CHILD = r"""
import json, sys, time
import cpu_defaults
cpu_defaults.apply()
import jax, jax.numpy as jnp, numpy as np
import losses, models, sde_lib
from configs.digits.vp_ddpmpp import get_config
n, calls = int(sys.argv[1]), int(sys.argv[2])
c = get_config()
sde, model, t = sde_lib.get_sde(c), models.get_model(c), c.training
x = jax.random.uniform(jax.random.PRNGKey(2), (n, t.batch_size, 16, 16, 1))
params = jax.jit(lambda: model.init({"params": jax.random.PRNGKey(0),
                                     "dropout": jax.random.PRNGKey(1)}, x[0, :1], jnp.ones((1,)),
                                    train=False)["params"])()
opt = losses.get_optimizer(lr=c.optim.lr, warmup=c.optim.warmup)
loss_fn = losses.get_loss_fn(sde, model, True, t.method, t.continuous, t.reduce_mean,
                             t.likelihood_weighting)
step = jax.jit(losses.get_multi_step_fn(
    losses.get_step_fn(loss_fn, opt, c.model.ema_rate, c.model.ema_warmup),
    jax.random.PRNGKey(3)), donate_argnums=0)
state = jax.jit(losses.init_train_state, static_argnums=1)(params, opt)
t0 = time.perf_counter()
state, l = step(state, x)
l.block_until_ready()
first = time.perf_counter() - t0
times = []
for _ in range(calls):
    t0 = time.perf_counter()
    state, l = step(state, x)
    l.block_until_ready()
    times.append((time.perf_counter() - t0) / n)
print(json.dumps({"first": first, "step": float(np.median(times)), "loss": float(l[-1])}))
"""


def child_env(extra: dict, cache: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "SCORELAB_CONV_GRAD", "SCORELAB_XLA_DEFAULTS")}
    env.update(extra, SCORELAB_COMPILE_CACHE=cache, PYTHONPATH=ROOT)
    return env


def step_rows(calls: int) -> list[dict]:
    rows = []
    for name, extra, n in SETTINGS:
        print(f"measuring {name}, {n} step(s) per call ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as cache:
            out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(calls)], cwd=ROOT,
                                 env=child_env(extra, cache), capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"{name}: child failed:\n{out.stderr[-2000:]}")
        rows.append(dict(json.loads(out.stdout.strip().splitlines()[-1]), name=name, n=n))
    return rows


def full_rows() -> list[tuple[str, float]]:
    rows = []
    for name, extra, n in (("before (1 step per call, lax gradients, no cpu_defaults.py)",
                            BEFORE, 1),
                           ("defaults (10 steps per call, explicit gradients, cpu_defaults.py)",
                            {}, 10)):
        print(f"running main.py: {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "main.py", "--config", "configs/digits/vp_ddpmpp.py",
                   "--workdir", os.path.join(tmp, "run"),
                   f"--config.training.n_jitted_steps={n}"]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, cwd=ROOT, env=child_env(extra, os.path.join(tmp, "cache")),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wall = time.perf_counter() - t0
            if out.returncode:
                raise SystemExit(f"{name}: main.py failed:\n{out.stderr[-2000:]}")
            with open(os.path.join(tmp, "run", "metrics.jsonl")) as f:
                last = [json.loads(line) for line in f if line.strip()][-1]
        rows.append((name, wall, last.get("loss", float("nan"))))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--full", action="store_true", help="also time the 3000-step README run")
    args = p.parse_args()
    from bench.train_throughput import machine
    print(f"Machine: {machine()}\n")
    rows = step_rows(args.calls)
    base = rows[0]["step"]
    print("| setting | steps per call | compile + first call s | ms per step | speed-up | "
          "last loss |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['n']} | {r['first']:.1f} | {r['step'] * 1e3:.1f} | "
              f"{base / r['step']:.2f}x | {r['loss']:.4f} |")
    print(f"\nPer-step medians of {args.calls} calls after the first; speed-up against the "
          "first row.")
    if args.full:
        full = full_rows()
        print("\n| `python main.py --config configs/digits/vp_ddpmpp.py` (3000 steps) "
              "| wall s | speed-up | last logged loss |")
        print("|---|---:|---:|---:|")
        for name, wall, loss in full:
            print(f"| {name} | {wall:.0f} | {full[0][1] / wall:.2f}x | {loss:.4f} |")


if __name__ == "__main__":
    main()
