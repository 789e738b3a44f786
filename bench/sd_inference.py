"""Stable Diffusion text-to-image inference, scorelab (JAX, sd_pipeline.py) against diffusers'
StableDiffusionPipeline (PyTorch eager), same checkpoint, same machine.

    python bench/sd_inference.py --path tests/data/sd_tiny/sd1 --size 64 --batch 1 \
        [--torch-python /tmp/torchenv/bin/python] [--rounds 3]
    python bench/sd_inference.py --random sd15 --size 256 --torch-python /tmp/torchenv/bin/python

The whole pipeline per call: tokenize and encode the prompts and the negative prompt, 25
DPM-Solver++ (2M) steps with classifier-free guidance at 7.5 (50 UNet evaluations per image),
VAE decode; reported as seconds per image (median over the rounds, after one warm-up call that
compiles) and the peak resident memory of each process (whole process: weights, activations,
compiler), plus the accelerator's peak where JAX reports one. The torch half runs in its own
interpreter (torch and diffusers never enter requirements.txt), driven line by line so that the
rounds alternate (JAX, torch, JAX, ...) under the same machine load. --random sd15 first writes
a checkpoint of random weights in the SD 1.5 shapes (UNet, VAE and CLIP ViT-L/14 text encoder
configs as published for runwayml/stable-diffusion-v1-5) with the torch environment, to a
temporary folder, so no download is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import run_lib  # noqa: E402
import sd_pipeline  # noqa: E402
from bench.samplers import machine  # noqa: E402
from configs.sd import sd15  # noqa: E402

TOKENIZER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                         "data", "sd_tiny", "sd1", "tokenizer")

# The torch worker: argv path size batch steps guidance threads; answers one JSON line per
# "run" command with the seconds of one whole pipeline call; "quit" ends it.
TORCH_WORKER = r"""
import json, sys, time
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

path, size, batch, steps, guidance, threads = sys.argv[1:7]
size, batch, steps, threads = int(size), int(batch), int(steps), int(threads)
guidance = float(guidance)
torch.set_num_threads(threads)
pipe = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, feature_extractor=None,
                                               requires_safety_checker=False)
pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config,
                                                         algorithm_type="dpmsolver++",
                                                         solver_order=2)
pipe.set_progress_bar_config(disable=True)
prompts = ["a photograph of an astronaut riding a horse"] * batch

def once():
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = pipe(prompts, negative_prompt=["blurry"] * batch, height=size, width=size,
                   num_inference_steps=steps, guidance_scale=guidance, generator=g,
                   output_type="np")
    return float(out.images.mean())

once()  # warm-up
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    if line.strip() == "quit":
        break
    t0 = time.perf_counter()
    once()
    seconds = time.perf_counter() - t0
    with open("/proc/self/status") as f:  # VmHWM: peak RSS of this process image
        peak = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM"))
    print(json.dumps({"seconds": seconds, "peak_rss_kb": peak}), flush=True)
"""

# Writes an SD 1.5-shaped checkpoint of random weights: argv out_dir tokenizer_dir.
RANDOM_SD15 = r"""
import shutil, sys, torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

out, tok = sys.argv[1:3]
torch.manual_seed(0)
unet = UNet2DConditionModel(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, cross_attention_dim=768,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, norm_num_groups=32)
vae = AutoencoderKL(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32)
text = CLIPTextModel(CLIPTextConfig(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
    bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=768))
sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      clip_sample=False, set_alpha_to_one=False, steps_offset=1)
tokenizer = CLIPTokenizer.from_pretrained(tok)
StableDiffusionPipeline(vae, text, tokenizer, unet, sched, safety_checker=None,
                        feature_extractor=None, requires_safety_checker=False).save_pretrained(out)
"""


class TorchWorker:
    """The diffusers half in its own interpreter, one pipeline call per `run()`."""

    def __init__(self, python: str, path: str, size: int, batch: int, steps: int,
                 guidance: float, threads: int):
        self.proc = subprocess.Popen(
            [python, "-c", TORCH_WORKER, path, str(size), str(batch), str(steps), str(guidance),
             str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def run(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=120)


def jax_pipeline(path: str, size: int, batch: int, steps: int, guidance: float):
    """() -> images: the whole scorelab pipeline (prompts -> context -> 25 guided DPM-Solver++
    steps -> decode), as --mode sample runs it without writing files."""
    config = run_lib.override(sd15.get_config(), {
        "pretrained.path": path, "pretrained.prediction_type": "", "data.image_size": size,
        "sampling.steps": steps, "sampling.guidance_scale": guidance,
        "sampling.batch_size": batch, "sampling.negative_prompts": "blurry",
        "sampling.prompts": ";".join(["a photograph of an astronaut riding a horse"] * batch)})
    request = sd_pipeline.read_request(config)
    run = sd_pipeline.load(config, request)

    def once():
        _, y, m = sd_pipeline.task_inputs(config, run, request)
        images, _ = sd_pipeline.generate_images(config, run, request, jnp.asarray(y),
                                                jnp.asarray(m))
        return images

    return once


def peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM; getrusage's ru_maxrss would carry a
    parent's peak into a child across fork + exec)."""
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM"))


def accelerator_peak() -> str:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return f"{peak / 2**30:.2f} GiB" if peak else "—"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", default="tests/data/sd_tiny/sd1", help="SD directory (diffusers)")
    p.add_argument("--random", choices=["sd15"], default=None,
                   help="write and use random weights in these shapes (needs --torch-python)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    p.add_argument("--torch-python", default=None,
                   help="interpreter of an environment with torch, diffusers and transformers")
    args = p.parse_args()

    path, tmp = args.path, None
    if args.random:
        if not args.torch_python:
            sys.exit("error: --random needs --torch-python (it writes the weights with torch)")
        tmp = tempfile.mkdtemp(prefix="sd15_random_")
        path = os.path.join(tmp, "sd15")
        subprocess.run([args.torch_python, "-c", RANDOM_SD15, path, TOKENIZER], check=True)
    try:
        table(args, path)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def table(args, path: str) -> None:
    once = jax_pipeline(path, args.size, args.batch, args.steps, args.guidance)
    t0 = time.perf_counter()
    once()  # compile + warm-up
    compile_s = time.perf_counter() - t0
    worker = None
    if args.torch_python:
        worker = TorchWorker(args.torch_python, path, args.size, args.batch, args.steps,
                             args.guidance, args.threads)
    j, t, t_rss = [], [], 0
    for r in range(args.rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(once())
        j.append(time.perf_counter() - t0)
        if worker:
            out = worker.run()
            t.append(out["seconds"])
            t_rss = max(t_rss, out["peak_rss_kb"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    info = worker.info if worker else {}
    if worker:
        worker.close()
    j_rss = peak_rss_kb()
    med, b = statistics.median, args.batch
    print(f"Machine: {machine()}")
    if info:
        print(f"torch {info['torch']} ({info['threads']} threads)")
    print(f"Checkpoint: {'random SD 1.5 shapes' if args.random else path}; {args.size}x"
          f"{args.size}, batch {b}, {args.steps} DPM-Solver++ steps, guidance {args.guidance} "
          f"({2 * args.steps} UNet evaluations per image); JAX compile + first call "
          f"{compile_s:.1f} s\n")
    print("| pipeline | s / image | peak RSS (process) | accelerator peak |")
    print("|---|---:|---:|---:|")
    print(f"| scorelab (JAX) | {med(j) / b:.3f} | {j_rss / 2**20:.2f} GiB | "
          f"{accelerator_peak()} |")
    if t:
        print(f"| diffusers (torch eager) | {med(t) / b:.3f} | {t_rss / 2**20:.2f} GiB | — |")
        print(f"\ntorch / scorelab time: {med(t) / med(j):.2f} (above 1: scorelab faster)")
    else:
        print("| diffusers (torch eager) | not run | — | — |")
    print(f"\nMedians of {len(j)} rounds per side, alternating; each round is one whole "
          "pipeline call (text encoding, sampling, decoding).")


if __name__ == "__main__":
    main()
