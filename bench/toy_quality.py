"""Quick-start quality vs cost: the VP checkerboard job (configs/toy/vp_checkerboard.py) under
variations of network, schedule and sampler; fraction of samples inside the squares.

    python bench/toy_quality.py [--settings baseline,octaves4,...]

Each setting runs the whole main job (`run_lib.train`: compile, train, write the 2000 samples)
in a fresh subprocess with the persistent compilation cache off, so its time is what a first
run costs. Prints a markdown table: in-square fraction (`datasets.in_checkerboard`), energy
distance to fresh data, wall time, CPU time of the process and training steps/s (median over
the logged windows).
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
CONFIG = "configs/toy/vp_checkerboard.py"

# name -> config overrides on top of the checked-in default.
SETTINGS = {
    "baseline": {},
    "octaves4": {"model.input_octaves": 4},
    "octaves3": {"model.input_octaves": 3},
    "octaves6": {"model.input_octaves": 6},
    "iters8k": {"training.n_iters": 8000},
    "nf256": {"model.nf": 256},
    "blocks4": {"model.num_res_blocks": 4},
    "octaves4_iters8k": {"model.input_octaves": 4, "training.n_iters": 8000},
    "octaves4_scales1000": {"model.input_octaves": 4, "model.num_scales": 1000},
    "octaves4_nocorrector": {"model.input_octaves": 4, "sampling.corrector": "none"},
    "octaves4_lr1e-3": {"model.input_octaves": 4, "optim.lr": 1e-3},
    "octaves4_batch1024": {"model.input_octaves": 4, "training.batch_size": 1024},
    "octaves4_ema9999": {"model.input_octaves": 4, "model.ema_rate": 0.9999},
    "octaves4_iters6k": {"model.input_octaves": 4, "training.n_iters": 6000},
}

_CHILD = r"""
import json, os, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
import datasets, evaluation, jax, run_lib
from configs.toy.vp_checkerboard import get_config
config = run_lib.override(get_config(), json.loads({overrides!r}))
workdir = {workdir!r}
t0 = time.perf_counter()
run_lib.train(config, workdir)
wall = time.perf_counter() - t0
r = resource.getrusage(resource.RUSAGE_SELF)
step = int(config.training.n_iters)
with np.load(os.path.join(workdir, "samples", f"samples_{{step}}.npz")) as f:
    x = f["samples"]
data = datasets.sample_toy("checkerboard", jax.random.PRNGKey(123), len(x))
rates = [json.loads(ln)["steps_per_sec"] for ln in open(os.path.join(workdir, "metrics.jsonl"))]
print("RESULT " + json.dumps({{
    "in_squares": datasets.in_checkerboard(x),
    "energy_distance": float(evaluation.energy_distance(x, data)),
    "wall_s": wall, "cpu_s": r.ru_utime + r.ru_stime,
    "steps_per_sec": float(np.median(rates)), "n_iters": step}}))
"""


def run_setting(overrides: dict) -> dict:
    """One fresh process running the main job with `overrides`; its RESULT record."""
    with tempfile.TemporaryDirectory() as tmp:
        code = _CHILD.format(root=ROOT, overrides=json.dumps(overrides),
                             workdir=os.path.join(tmp, "run"))
        env = {**os.environ, "SCORELAB_COMPILE_CACHE": "off", "JAX_PLATFORMS": "cpu"}
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"setting {overrides} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="baseline,octaves4",
                   help=f"comma-separated, of: {', '.join(SETTINGS)}")
    args = p.parse_args()
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        sys.exit(f"error: unknown settings {unknown}; choose from {', '.join(SETTINGS)}")
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"machine: {platform.processor() or 'cpu'}, {os.cpu_count()} cores, load average "
          f"{load:.2f} at start (shared with other jobs: wall times are upper bounds)\n")
    print("| setting | overrides | in squares | energy distance | wall s | CPU s | steps/s |")
    print("|:--|:--|--:|--:|--:|--:|--:|")
    for name in names:
        r = run_setting(SETTINGS[name])
        ov = ", ".join(f"{k}={v}" for k, v in SETTINGS[name].items()) or "(default)"
        print(f"| {name} | {ov} | {100 * r['in_squares']:.1f}% | {r['energy_distance']:.4f} | "
              f"{r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['steps_per_sec']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
