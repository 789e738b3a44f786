"""Quick-start quality vs cost: the VP checkerboard job (configs/toy/vp_checkerboard.py) under
variations of network, schedule and sampler; fraction of samples inside the squares.

    python bench/toy_quality.py [--settings baseline,octaves4,...] [--samplers pc,em,...]

Each setting runs the whole main job (`run_lib.train`: compile, train, write the 2000 samples)
in a fresh subprocess with the persistent compilation cache off, so its time is what a first
run costs; then draws 2000 samples from the trained EMA network with each sampler. Prints a
markdown table: in-square fraction (`datasets.in_checkerboard`), energy distance to fresh
data, NFE, the main job's wall time and CPU time, training steps/s (median over the logged
windows) and the sampler's wall time (compilation included).
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

# name -> training overrides on top of the checked-in default.
SETTINGS = {
    "baseline": {},
    "octaves4": {"model.input_octaves": 4},
    "octaves6": {"model.input_octaves": 6},
    "iters8k": {"training.n_iters": 8000},
    "iters12k": {"training.n_iters": 12000},
    "nf256": {"model.nf": 256},
    "blocks5": {"model.num_res_blocks": 5},
    "batch2048": {"training.batch_size": 2048},
    "octaves4_iters8k": {"model.input_octaves": 4, "training.n_iters": 8000},
    "octaves4_batch2048": {"model.input_octaves": 4, "training.batch_size": 2048},
    "octaves4_iters10k": {"model.input_octaves": 4, "training.n_iters": 10000},
    "octaves4_iters12k": {"model.input_octaves": 4, "training.n_iters": 12000},
    "lr5e-3": {"optim.lr": 5e-3},
    "ema9999_iters8k": {"model.ema_rate": 0.9999, "training.n_iters": 8000},
}

# name -> sampler overrides, each evaluated on every trained model (the first is the default).
SAMPLERS = {
    "pc": {},
    "em": {"sampling.predictor": "euler_maruyama", "sampling.corrector": "none"},
    "rd": {"sampling.corrector": "none"},
    "pc_N1000": {"model.num_scales": 1000},
    "em_N1000": {"sampling.predictor": "euler_maruyama", "sampling.corrector": "none",
                 "model.num_scales": 1000},
    "ode": {"sampling.method": "ode"},
    "pc_snr0.1": {"sampling.snr": 0.1},
    "pc_snr0.25": {"sampling.snr": 0.25},
    "ancestral": {"sampling.predictor": "ancestral_sampling"},
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
rates = [json.loads(ln)["steps_per_sec"] for ln in open(os.path.join(workdir, "metrics.jsonl"))]
data = datasets.sample_toy("checkerboard", jax.random.PRNGKey(123), 2000)
out = dict(wall_s=wall, cpu_s=r.ru_utime + r.ru_stime, steps_per_sec=float(np.median(rates)))
for name, sampler in json.loads({samplers!r}).items():
    c = run_lib.override(config, sampler)
    exp = run_lib.build(c)
    params, step = run_lib.load_ema(c, exp, workdir)
    t1 = time.perf_counter()
    x, nfe = run_lib.generate(c, exp, params, jax.random.PRNGKey(7), 2000)
    out[name] = dict(in_squares=datasets.in_checkerboard(x), nfe=nfe,
                     energy_distance=float(evaluation.energy_distance(x, data)),
                     sample_s=time.perf_counter() - t1)
print("RESULT " + json.dumps(out))
"""


def run_setting(overrides: dict, samplers: dict) -> dict:
    """One fresh process: the main job with `overrides`, then 2000 samples of each sampler."""
    with tempfile.TemporaryDirectory() as tmp:
        code = _CHILD.format(root=ROOT, overrides=json.dumps(overrides),
                             samplers=json.dumps(samplers), workdir=os.path.join(tmp, "run"))
        env = {**os.environ, "SCORELAB_COMPILE_CACHE": "off", "JAX_PLATFORMS": "cpu"}
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"setting {overrides} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _pick(names: str, table: dict, what: str) -> list:
    names = names.split(",")
    unknown = [n for n in names if n not in table]
    if unknown:
        sys.exit(f"error: unknown {what} {unknown}; choose from {', '.join(table)}")
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="baseline,octaves4",
                   help=f"comma-separated, of: {', '.join(SETTINGS)}")
    p.add_argument("--samplers", default="pc,em",
                   help=f"comma-separated, of: {', '.join(SAMPLERS)}")
    args = p.parse_args()
    names = _pick(args.settings, SETTINGS, "settings")
    samplers = {n: SAMPLERS[n] for n in _pick(args.samplers, SAMPLERS, "samplers")}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start (shared with other jobs: times are upper "
          "bounds)\n")
    print("| setting | sampler | in squares | energy distance | NFE | train job wall s | "
          "CPU s | steps/s | sampling s |")
    print("|:--|:--|--:|--:|--:|--:|--:|--:|--:|")
    for name in names:
        r = run_setting(SETTINGS[name], samplers)
        ov = ", ".join(f"{k}={v}" for k, v in SETTINGS[name].items()) or "default"
        for sampler in samplers:
            q = r[sampler]
            print(f"| {name} ({ov}) | {sampler} | {100 * q['in_squares']:.1f}% | "
                  f"{q['energy_distance']:.4f} | {q['nfe']} | {r['wall_s']:.0f} | "
                  f"{r['cpu_s']:.0f} | {r['steps_per_sec']:.0f} | {q['sample_s']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
