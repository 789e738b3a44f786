"""Controllable generation against exact answers, and its cost on a trained digits model.

    python bench/controllable.py [--n 1000]
    python bench/controllable.py --config configs/digits/vp_ddpmpp.py --workdir runs/digits

Analytic half: on correlated full-covariance mixtures (analytic.correlated_mixture, 2-D and
16-D, the first half of the coordinates known), the energy distance of each inpainting method's
unknown coordinates to exact samples of p(x_B | x_A), beside the true-vs-true spread and the
unconditional samples' distance, with the exact score (VP SDE, N = 200). Digits half (with
--workdir, a trained run with its fid_stats): each task on the test images at the run's own
sampler and at DPM-Solver++(2M) with 20 steps: masked-region MSE / PSNR against the test image,
fd_digits of the results, and the warm seconds per image.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import analytic  # noqa: E402
import controllable  # noqa: E402
import evaluation  # noqa: E402
import sde_lib  # noqa: E402
from bench.samplers import machine  # noqa: E402

RD = dict(predictor="reverse_diffusion", corrector="none")
METHODS = {  # label -> (method, kwargs)
    "replacement, reverse diffusion": ("pc", RD),
    "replacement, reverse diffusion + Langevin": ("pc", dict(RD, corrector="langevin")),
    "replacement, Euler-Maruyama": ("pc", dict(RD, predictor="euler_maruyama")),
    "replacement, ancestral": ("pc", dict(RD, predictor="ancestral_sampling")),
    "RePaint r=2 (L=10)": ("pc", dict(RD, jump_length=10, resample_times=2)),
    "RePaint r=5 (L=10)": ("pc", dict(RD, jump_length=10, resample_times=5)),
    "RePaint r=10 (L=10)": ("pc", dict(RD, jump_length=10, resample_times=10)),
    "DDIM eta=1, 50 steps": ("ddim", dict(steps=50, eta=1.0)),
    "DPM-Solver++(2M), 20 steps": ("dpm_solver++", dict(steps=20)),
    "UniPC-3, 20 steps": ("unipc", dict(steps=20)),
}


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def analytic_table(n: int) -> str:
    sde = sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=200)
    cols, cells = [], {}
    for dim in (2, 16):
        gmm = analytic.correlated_mixture(dim)
        a_idx = np.arange(dim // 2)
        a = np.asarray(gmm.sample(jax.random.PRNGKey(5), 1))[0, a_idx]
        cond, b_idx = gmm.conditional(a_idx, a)
        truth = cond.sample(jax.random.PRNGKey(1), n)
        spread = max(float(evaluation.energy_distance(cond.sample(jax.random.PRNGKey(10 + i), n),
                                                      truth)) for i in range(6))
        unc = gmm.marginal(b_idx).sample(jax.random.PRNGKey(2), n)
        y = jnp.zeros((n, dim)).at[:, a_idx].set(jnp.asarray(a, jnp.float32))
        mask = np.zeros(dim, np.float32)
        mask[a_idx] = 1.0
        col = f"{dim}-D"
        cols.append(col)
        cells[("true-vs-true spread", col)] = f"{spread:.4f}"
        unc_ed = float(evaluation.energy_distance(unc, truth))
        cells[("unconditional samples", col)] = f"{unc_ed:.4f}"
        for label, (method, kw) in METHODS.items():
            s = controllable.get_inpaint_sampler(sde, y, mask, method, **kw)
            x, nfe = jax.jit(lambda r, s=s, g=gmm: s(r, g.score_fn(sde)))(jax.random.PRNGKey(3))
            ed = float(evaluation.energy_distance(np.asarray(x)[:, b_idx], truth))
            cells[(label, col)] = f"{ed:.4f} (NFE {nfe})"
            log(f"  {col} {label}: {cells[(label, col)]}")
    rows = ["true-vs-true spread", "unconditional samples", *METHODS]
    out = [f"{n} samples; energy distance of x_B to exact p(x_B | x_A) (lower is better)", "",
           "| method | " + " | ".join(cols) + " |", "|:--|" + "--:|" * len(cols)]
    out += [f"| {r} | " + " | ".join(cells[(r, c)] for c in cols) + " |" for r in rows]
    return "\n".join(out)


def digits_table(config_path: str, workdir: str, num: int, only: str = "") -> str:
    import eval_lib
    import run_lib
    import tasks

    spec = importlib.util.spec_from_file_location("cfg", config_path)
    cfg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cfg)
    base = cfg.get_config()
    exp = run_lib.build(base)
    params, step = run_lib.load_ema(base, exp, workdir)
    net = eval_lib.feature_network(base)
    mu, cov, _ = eval_lib.reference_stats(base, workdir, net)
    settings = [("inpaint", {"mask": "centre_square"}), ("inpaint", {"mask": "left_half"}),
                ("inpaint", {"mask": "centre_square", "resample_times": 2}),
                ("img2img", {"strength": 0.5}), ("img2img", {"strength": 0.5, "mask": "left_half"})]
    fast = {"method": "dpm_solver++", "steps": 20}
    out = [f"digits checkpoint {step}, {num} test images per row", "",
           "| task | settings | sampler | NFE | masked MSE | masked PSNR dB | fd_digits | "
           "s / image |", "|:--|:--|:--|--:|--:|--:|--:|--:|"]
    images = None
    for task, extra in settings:
        if only and task not in only.split(","):
            continue
        for sam in ({}, fast):
            if "resample_times" in extra and sam:
                continue  # RePaint resamples on the PC grid only
            upd = {"sampling.task": task,
                   **{f"sampling.{k}": v for k, v in {**extra, **sam}.items()}}
            config = run_lib.override(base, upd)
            images = tasks.load_inputs(config, exp.shape, num) if images is None else images
            masks = tasks._masks(config, exp.shape, num)
            bs = int(config.sampling.batch_size)
            rng = jax.random.PRNGKey(0)
            tasks.run_task(config, exp, params, images[:bs], masks[:bs], rng)  # compiles
            start = time.perf_counter()
            results, nfe = tasks.run_task(config, exp, params, images, masks, rng)
            sec = (time.perf_counter() - start) / num
            region = masks if (task == "inpaint" or "mask" in extra) else np.zeros_like(masks)
            m = tasks.region_metrics(results, images, region)
            feats, _ = evaluation.network_features(net, results)
            stats = evaluation.FeatureStats().update(feats)
            fd = float(evaluation.frechet_distance(stats.mean, stats.cov, mu, cov))
            s = config.sampling
            sampler = (f"DPM-Solver++(2M) {s.steps}" if sam else
                       f"PC {s.predictor}, corrector {s.corrector}, "
                       f"{config.model.num_scales} steps")
            desc = ", ".join(f"{k}={v}" for k, v in extra.items())
            out.append(f"| {task} | {desc} | {sampler} | {nfe} | {m['masked_mse']:.4f} | "
                       f"{m['masked_psnr']:.2f} | {fd:.3f} | {sec:.4f} |")
            log(out[-1])
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="samples per analytic cell")
    p.add_argument("--config", help="config file of a trained digits run (with --workdir)")
    p.add_argument("--workdir", help="the trained run, with its fid_stats: adds the digits table")
    p.add_argument("--num-images", type=int, default=200, help="test images per digits row")
    p.add_argument("--digits-only", action="store_true", help="skip the analytic table")
    p.add_argument("--tasks", default="", help="comma-separated tasks of the digits table "
                   "(default: all of inpaint, img2img)")
    args = p.parse_args()
    print(f"Machine: {machine()}\n")
    if not args.digits_only:
        print("### Inpainting on correlated Gaussian mixtures (exact score, VP, N = 200)\n")
        print(analytic_table(args.n) + "\n", flush=True)
    if args.workdir:
        print("### Trained digits model\n")
        print(digits_table(args.config, args.workdir, args.num_images, args.tasks))


if __name__ == "__main__":
    main()
