"""The DDPM CIFAR-10 network, scorelab (JAX/XLA) against diffusers (PyTorch eager), same CPU.

    python bench/train_vs_torch.py [--torch-python /tmp/torchenv/bin/python] [--rounds 3]

Train: one step of the 35.7M-parameter DDPM UNet (configs/vp/ddpm/cifar10.py; diffusers'
`UNet2DModel` in the google/ddpm-cifar10-32 shape), batch 8, float32, dropout 0.1, eps loss on
the linear-beta chain, Adam 2e-4 with global-norm clipping at 1. Sample: 100 ancestral steps at
batch 16 (our PC sampler with the ancestral predictor on a 100-step VP chain; diffusers'
`DDPMScheduler` loop with 100 inference steps). Both halves run in one invocation, in alternating
rounds (JAX steps, then torch steps, ...), so they see the same machine load; each cell is the
median over all rounds. The torch half runs in a separate Python (torch and diffusers never enter
requirements.txt): make that environment once with

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch diffusers

Without it (no --torch-python and no /tmp/torchenv), the torch columns say "not run".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cpu_defaults  # noqa: E402

DEFAULTS = cpu_defaults.apply()  # the CPU defaults of main.py, before JAX starts

import jax  # noqa: E402

import models  # noqa: E402
import sampling  # noqa: E402
import sde_lib  # noqa: E402
from bench.train_throughput import build_step, machine  # noqa: E402
from configs.vp.ddpm.cifar10 import get_config  # noqa: E402
from models import utils as mutils  # noqa: E402

# The torch worker: reads one command per line ("train K", "sample K", "quit") and answers one
# JSON line of K timings (seconds). Runs under the torch environment's interpreter.
TORCH_WORKER = r"""
import inspect, json, sys, time
import torch
from diffusers import DDPMScheduler, UNet2DModel

threads, batch, sample_batch, sample_steps = (int(v) for v in sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
kw = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
          block_out_channels=(128, 256, 256, 256),
          down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
          up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
          freq_shift=1, flip_sin_to_cos=False, downsample_padding=0)
if "dropout" in inspect.signature(UNet2DModel.__init__).parameters:
    kw["dropout"] = 0.1
model = UNet2DModel(**kw)
opt = torch.optim.Adam(model.parameters(), lr=2e-4)
abar = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, 1000), 0)
sched = DDPMScheduler(num_train_timesteps=1000)
sched.set_timesteps(sample_steps)

def train_step():
    model.train()
    x0 = torch.rand(batch, 3, 32, 32) * 2 - 1
    t = torch.randint(0, 1000, (batch,))
    eps = torch.randn_like(x0)
    a = abar[t].view(-1, 1, 1, 1)
    pred = model(a.sqrt() * x0 + (1 - a).sqrt() * eps, t).sample
    loss = ((pred - eps) ** 2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss)

@torch.no_grad()
def sample():
    model.eval()
    x = torch.randn(sample_batch, 3, 32, 32)
    for t in sched.timesteps:
        x = sched.step(model(x, t).sample, t, x).prev_sample
    return float(x.abs().mean())

print(json.dumps({"params": sum(p.numel() for p in model.parameters()),
                  "dropout": kw.get("dropout", 0.0), "torch": torch.__version__,
                  "threads": torch.get_num_threads()}), flush=True)
train_step()  # warm-up (allocator, first-call overheads)
for line in sys.stdin:
    cmd, *rest = line.split()
    if cmd == "quit":
        break
    fn = train_step if cmd == "train" else sample
    times = []
    for _ in range(int(rest[0])):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    print(json.dumps(times), flush=True)
"""


class TorchWorker:
    """The diffusers half in its own interpreter, driven line by line."""

    def __init__(self, python: str, threads: int, batch: int, sample_batch: int, steps: int):
        self.proc = subprocess.Popen(
            [python, "-c", TORCH_WORKER, str(threads), str(batch), str(sample_batch), str(steps)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def run(self, what: str, k: int) -> list[float]:
        self.proc.stdin.write(f"{what} {k}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def jax_sampler(config, params, batch: int, steps: int):
    """A compiled () -> samples of `steps` ancestral steps on a `steps`-step VP chain."""
    sde = sde_lib.VPSDE(beta_min=config.model.beta_min, beta_max=config.model.beta_max, N=steps)
    model = models.get_model(config)
    sampler = sampling.get_pc_sampler(sde, (batch, 32, 32, 3), "ancestral_sampling", "none")

    @jax.jit
    def run(rng):
        score_fn = mutils.get_score_fn(sde, model, {"params": params}, continuous=False)
        return sampler(rng, score_fn)[0]

    rng = jax.random.PRNGKey(0)
    run(rng).block_until_ready()
    return lambda: run(rng).block_until_ready()


def timed(fn, k: int) -> list[float]:
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_py = os.environ.get("SCORELAB_TORCH_PYTHON", "/tmp/torchenv/bin/python")
    p.add_argument("--torch-python", default=default_py,
                   help="interpreter of an environment with torch and diffusers")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed train steps per round and side")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sample-batch", type=int, default=16)
    p.add_argument("--sample-steps", type=int, default=100)
    p.add_argument("--sample-rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    args = p.parse_args()

    config = get_config()
    step, state, x, rng = build_step(config, args.batch)
    n_params = sum(int(v.size) for v in jax.tree.leaves(state.params))
    state, loss = step(state, x, rng)  # compile + warm-up
    loss.block_until_ready()

    def jax_step():
        nonlocal state
        state, loss = step(state, x, rng)
        loss.block_until_ready()

    worker = None
    if os.path.exists(args.torch_python):
        worker = TorchWorker(args.torch_python, args.threads, args.batch, args.sample_batch,
                             args.sample_steps)
    else:
        print(f"(no torch environment at {args.torch_python}: torch columns not run; see the "
              "docstring for the one-line setup)", file=sys.stderr)

    j_train, t_train = [], []
    for r in range(args.rounds):
        j_train += timed(jax_step, args.steps)
        if worker:
            t_train += worker.run("train", args.steps)
        print(f"round {r + 1}/{args.rounds} train done", file=sys.stderr, flush=True)
    sample = jax_sampler(config, state.params, args.sample_batch, args.sample_steps)
    j_samp, t_samp = [], []
    for r in range(args.sample_rounds):
        j_samp += timed(sample, 1)
        if worker:
            t_samp += worker.run("sample", 1)
        print(f"round {r + 1}/{args.sample_rounds} sample done", file=sys.stderr, flush=True)
    info = worker.info if worker else {}
    if worker:
        worker.close()

    med = statistics.median
    print(f"Machine: {machine()}")
    if info:
        print(f"torch {info['torch']} ({info['threads']} threads), diffusers UNet2DModel "
              f"{info['params'] / 1e6:.1f}M parameters, dropout {info['dropout']}")
    print(f"scorelab DDPM {n_params / 1e6:.1f}M parameters, jax {jax.__version__}, "
          f"CPU defaults: {DEFAULTS or 'off'}\n")
    print("| what | scorelab (JAX) s | diffusers (torch eager) s | torch / scorelab |")
    print("|---|---:|---:|---:|")
    for what, j, t in ((f"train step, batch {args.batch}", j_train, t_train),
                       (f"{args.sample_steps} ancestral steps, batch {args.sample_batch}",
                        j_samp, t_samp)):
        tc = f"{med(t):.3f}" if t else "not run"
        ratio = f"{med(t) / med(j):.2f}" if t else "—"
        print(f"| {what} | {med(j):.3f} | {tc} | {ratio} |")
    print(f"\nMedians of {len(j_train)} train steps and {len(j_samp)} sampling runs per side, "
          "alternating rounds. A ratio above 1 means scorelab is faster.")


if __name__ == "__main__":
    main()
