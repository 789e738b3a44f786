"""The same conditional UNet on pixels (32x32x3) and on autoencoder latents (8x8x4): train
steps/s, sampling seconds per image at one sampler, peak memory, and after an equal wall-clock
training budget the prompt faithfulness and fd_shapes of each.

    python bench/latent_vs_pixel.py --autoencoder runs/shapes_ae --budget 300 --out /tmp/lvp

Each run is `main.py --mode train` (training.max_seconds = budget) then `--mode eval` at one
guidance scale, in subprocesses timed by /usr/bin/time (peak resident memory of the process).
The autoencoder's own training is not part of the latent budget (it is trained once and
shared). steps/s is the median over the log intervals after the first (which includes the
compilation), or steps / budget when a run logged only once.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"pixels 32x32x3": "configs/shapes/pixel_text.py",
           "latents 8x8x4": "configs/shapes/latent_text.py"}


def run(args, log):
    """Run main.py with `args`; (wall seconds, peak RSS MiB)."""
    cmd = ["/usr/bin/time", "-f", "%M %e", sys.executable, "main.py", *args]
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.PIPE, text=True)
    tail = proc.stderr.strip().splitlines()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n" + "\n".join(tail[-20:]))
    rss_kb, wall = tail[-1].split()
    return float(wall), float(rss_kb) / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--autoencoder", required=True, help="a trained autoencoder_kl.py workdir")
    p.add_argument("--budget", type=float, default=300.0, help="training seconds per run")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--num_prompts", type=int, default=70)
    p.add_argument("--out", default="/tmp/latent_vs_pixel")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for name, config in CONFIGS.items():
        workdir = os.path.join(a.out, name.split()[0])
        common = [f"--config={config}", f"--workdir={workdir}"]
        if "latent" in config:
            common.append(f"--config.latent.autoencoder_workdir={a.autoencoder}")
        train_wall, train_rss = run([*common, "--mode=train", "--config.training.n_iters=100000",
                                     f"--config.training.max_seconds={a.budget}",
                                     "--config.training.snapshot_freq=100000"],
                                    os.path.join(a.out, f"{name.split()[0]}_train.log"))
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            recs = [json.loads(line) for line in f]
        eval_wall, eval_rss = run([*common, "--mode=eval",
                                   f"--config.eval.guidance_scales=({a.guidance},)",
                                   f"--config.eval.num_prompts={a.num_prompts}",
                                   "--config.eval.samples_per_prompt=2"],
                                  os.path.join(a.out, f"{name.split()[0]}_eval.log"))
        evals = sorted(f for f in os.listdir(os.path.join(workdir, "eval")) if f.endswith(".json"))
        with open(os.path.join(workdir, "eval", evals[-1])) as f:
            res = json.load(f)["rows"][0]
        steps = max(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))
                    if d.isdigit())  # the final checkpoint: the last step trained
        rates = [r["steps_per_sec"] for r in recs[1:]]  # the first log interval compiles
        rows.append({"run": name, "steps": steps,
                     "steps/s": float(np.median(rates)) if rates else steps / a.budget,
                     "s/image": res["seconds_per_image"],
                     "peak MiB train": train_rss, "peak MiB eval": eval_rss,
                     **{k: res[k] for k in ("acc_colour", "acc_shape", "acc_size",
                                            "acc_position", "acc_all", "fd_shapes")}})
        print(json.dumps(rows[-1]), flush=True)
    keys = list(rows[0])
    print(f"\nbudget {a.budget:.0f} s of training each, guidance {a.guidance}, "
          f"{2 * a.num_prompts} samples, {time.strftime('%Y-%m-%d')}\n")
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(keys) - 1)) + "|")
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                for v in r.values()) + " |")


if __name__ == "__main__":
    main()
