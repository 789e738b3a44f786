"""Controllable generation against exact answers, and its cost on a trained digits model.

    python bench/controllable.py [--n 1000]
    python bench/controllable.py --config configs/digits/vp_ddpmpp.py --workdir runs/digits

Analytic half: on correlated full-covariance mixtures (analytic.correlated_mixture, 2-D and
16-D, the first half of the coordinates known), the energy distance of each inpainting method's
unknown coordinates to exact samples of p(x_B | x_A), beside the true-vs-true spread and the
unconditional samples' distance, with the exact score (VP SDE, N = 200). Digits half (with
--workdir, a trained run with its fid_stats): each task on the test images at the run's own
sampler and at DPM-Solver++(2M) with 20 steps: masked-region MSE / PSNR against the test image,
fd_digits of the results, and the warm seconds per image. Class half (--class-workdir, a
trained configs/digits/vp_ddpmpp_class.py run, and/or --classifier-workdir, a
configs/digits/classifier.py run used with the unconditional --workdir): each class in turn,
the offline digits classifier's accuracy on the requested class, fd_digits against the training
statistics of --workdir, and the warm seconds per image, at the run's own sampler and at
DPM-Solver++(2M) with 10 steps (the README's recommended digits default).

    python bench/controllable.py --digits-only --config configs/digits/vp_ddpmpp.py \
        --workdir runs/digits_vp --tasks class --class-workdir runs/digits_class \
        --classifier-workdir runs/digits_classifier
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
    """Each task on a trained image run's test images (digits; RGB runs add colourisation),
    at the run's sampler and DPM-Solver++(2M) with 20 steps; the Fréchet distance when the
    run has reference statistics."""
    import eval_lib
    import run_lib
    import tasks

    base = _load_config(config_path)
    exp = run_lib.build(base)
    params, step = run_lib.load_ema(base, exp, workdir)
    net, ref = None, None
    if os.path.exists(eval_lib.stats_path(base, workdir)):
        net = eval_lib.feature_network(base)
        ref = eval_lib.reference_stats(base, workdir, net)[:2]
    fd_name = evaluation.metric_names(net)["frechet_distance"] if net else "Fréchet distance"
    settings = [("inpaint", {"mask": "centre_square"}), ("inpaint", {"mask": "left_half"}),
                ("inpaint", {"mask": "centre_square", "resample_times": 2}),
                ("img2img", {"strength": 0.5}), ("img2img", {"strength": 0.5, "mask": "left_half"})]
    if exp.shape[-1] == 3:
        settings.append(("colorize", {}))
    fast = {"method": "dpm_solver++", "steps": 20}
    out = [f"{base.data.dataset} checkpoint {step}, {num} test images per row", "",
           "| task | settings | sampler | NFE | masked MSE | masked PSNR dB | "
           f"{fd_name} | s / image |", "|:--|:--|:--|--:|--:|--:|--:|--:|"]
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
            fd = "n/a"
            if net is not None:
                feats, _ = evaluation.network_features(net, results)
                stats = evaluation.FeatureStats().update(feats)
                fd = f"{float(evaluation.frechet_distance(stats.mean, stats.cov, *ref)):.3f}"
            s = config.sampling
            sampler = (f"DPM-Solver++(2M) {s.steps}" if sam else
                       f"PC {s.predictor}, corrector {s.corrector}, "
                       f"{config.model.num_scales} steps")
            desc = ", ".join(f"{k}={v}" for k, v in extra.items())
            out.append(f"| {task} | {desc} | {sampler} | {nfe} | {m['masked_mse']:.4f} | "
                       f"{m['masked_psnr']:.2f} | {fd} | {sec:.4f} |")
            log(out[-1])
    return "\n".join(out)


def _load_config(path: str):
    spec = importlib.util.spec_from_file_location("cfg", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def class_table(uncond: tuple, class_run: tuple | None, classifier_dir: str | None,
                num: int, num_slow: int) -> str:
    """Class rows: (config path, workdir) of the unconditional run (its fid_stats are the
    reference) and of a class-conditional run; a classifier workdir for classifier guidance.
    `num` samples per fast-sampler row, `num_slow` per row at the run's own sampler."""
    import class_lib
    import eval_lib
    import run_lib

    base = _load_config(uncond[0])
    net = eval_lib.feature_network(base)
    mu, cov, _ = eval_lib.reference_stats(base, uncond[1], net)
    fast = {"sampling.method": "dpm_solver++", "sampling.steps": 10}
    rows = []  # (label, config, workdir, overrides)
    if class_run:
        cfg = _load_config(class_run[0])
        for w in (0.0, 1.0, 3.0):
            for sam in ({}, fast):
                if w == 0.0 and not sam:
                    continue  # the unguided baseline at the fast sampler only
                rows.append((f"class-conditional, guidance w={w:g}", cfg, class_run[1],
                             {"sampling.guidance_scale": w, **sam}))
    if classifier_dir:
        cfg = run_lib.override(base, {"sampling.task": "class"})
        for scale in (1.0, 3.0):
            for sam in ({}, fast):
                rows.append((f"classifier guidance, scale {scale:g}", cfg, uncond[1],
                             {"sampling.classifier_workdir": classifier_dir,
                              "sampling.classifier_scale": scale, **sam}))
    out = ["each class in turn; accuracy of the offline digits classifier on the requested "
           "class; fd_digits against the training split (it grows as the sample shrinks)", "",
           "| model | sampler | NFE | samples | class accuracy | fd_digits | s / image |",
           "|:--|:--|--:|--:|--:|--:|--:|"]
    for label, cfg, workdir, upd in rows:
        n = num if upd.get("sampling.method") == "dpm_solver++" else num_slow
        labels = (np.arange(n) % 10).astype(np.int32)
        config = run_lib.override(cfg, {"sampling.class_label": -1, **upd})
        exp = run_lib.build(config)
        spec = class_lib.guidance_spec(config, exp)
        params, step = run_lib.load_ema(config, exp, workdir)
        bs = min(int(config.sampling.batch_size), n)
        sampler = class_lib.ClassSampler(config, exp, spec, bs)
        rng = jax.random.PRNGKey(0)
        sampler(rng, params, labels[:bs])  # compiles
        start = time.perf_counter()
        x = sampler(rng, params, labels)
        sec = (time.perf_counter() - start) / n
        feats, logits = evaluation.network_features(net, eval_lib._net_images(net, x))
        acc = class_lib.class_accuracy(logits, labels)["class_accuracy"]
        stats = evaluation.FeatureStats().update(feats)
        fd = float(evaluation.frechet_distance(stats.mean, stats.cov, mu, cov))
        s = config.sampling
        name = (f"DPM-Solver++(2M) {s.steps}" if s.method == "dpm_solver++" else
                f"PC {s.predictor}, corrector {s.corrector}, {config.model.num_scales} steps")
        out.append(f"| {label} (step {step}) | {name} | {sampler.nfe} | {n} | {acc:.3f} | "
                   f"{fd:.3f} | {sec:.4f} |")
        log(out[-1])
    return "\n".join(out)


def text_table(config_path: str, workdir: str, ae_workdir: str, num: int) -> str:
    """Prompt-steered image-to-image on a shapes text run: single-object test scenes, each
    edited towards a prompt naming another colour (or its own caption, the control), at
    several strengths; the offline shapes classifier reads colour and shape of the results."""
    import feature_net
    import pipeline
    import run_lib
    import shapes
    import text_tasks

    base = run_lib.override(_load_config(config_path), {
        "latent.autoencoder_workdir": ae_workdir, "sampling.task": "img2img",
        "sampling.method": "dpm_solver++", "sampling.steps": 20, "sampling.guidance_scale": 3.0})
    run, params, step = pipeline.load(base, workdir)
    images, attrs, captions = shapes.generate(4321, num, 32, num_objects=1)
    images = images.astype(np.float32) / 255.0
    colour, shape = attrs["colour"][:, 0], attrs["shape"][:, 0]
    target = (colour + 1 + np.arange(num) % 6) % 7  # always another colour
    steer = [f"a {shapes.SHAPES_COLOURS[c]} {shapes.SHAPES_SHAPES[k]}"
             for c, k in zip(target, shape, strict=True)]
    net = feature_net.load_shapes_classifier()
    masks = np.ones_like(images)
    out = [f"shapes text run (step {step}), {num} single-object test scenes per row, "
           "DPM-Solver++(2M) 20 steps, guidance 3", "",
           "| prompt | strength | colour = prompt's | colour = input's | shape kept | "
           "MSE to input | s / image |", "|:--|--:|--:|--:|--:|--:|--:|"]
    for label, prompts, want in (("another colour", steer, target),
                                 ("own caption", list(captions), colour)):
        for strength in (0.4, 0.6, 0.8):
            config = run_lib.override(base, {"sampling.strength": strength})
            rng = jax.random.PRNGKey(0)
            start = time.perf_counter()
            results, _ = text_tasks.run_text_task(config, run, params, images, masks, prompts,
                                                  rng)
            sec = (time.perf_counter() - start) / num
            read = feature_net.shapes_attributes(net, results)
            out.append(f"| {label} | {strength:g} | {np.mean(read['colour'] == want):.3f} | "
                       f"{np.mean(read['colour'] == colour):.3f} | "
                       f"{np.mean(read['shape'] == shape):.3f} | "
                       f"{np.mean((results - images) ** 2):.4f} | {sec:.4f} |")
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
                   "(default: all of inpaint, img2img, colorize, class)")
    p.add_argument("--class-workdir", help="a trained configs/digits/vp_ddpmpp_class.py run")
    p.add_argument("--class-config", default="configs/digits/vp_ddpmpp_class.py")
    p.add_argument("--classifier-workdir", help="a trained configs/digits/classifier.py run "
                   "(classifier guidance of the unconditional --workdir)")
    p.add_argument("--text-workdir", help="a trained configs/shapes/latent_text.py run "
                   "(with --ae-workdir): prompt-steered image-to-image")
    p.add_argument("--text-config", default="configs/shapes/latent_text.py")
    p.add_argument("--ae-workdir", help="the text run's autoencoder run")
    p.add_argument("--num-text", type=int, default=200, help="scenes per text row")
    p.add_argument("--num-class", type=int, default=500,
                   help="samples per class row at the fast sampler")
    p.add_argument("--num-class-slow", type=int, default=128,
                   help="samples per class row at the run's own (500-step) sampler")
    args = p.parse_args()
    print(f"Machine: {machine()}\n")
    if not args.digits_only:
        print("### Inpainting on correlated Gaussian mixtures (exact score, VP, N = 200)\n")
        print(analytic_table(args.n) + "\n", flush=True)
    if args.text_workdir:
        print("### Prompt-steered image-to-image on shapes\n")
        print(text_table(args.text_config, args.text_workdir, args.ae_workdir, args.num_text)
              + "\n", flush=True)
    if args.workdir:
        if not args.tasks or set(args.tasks.split(",")) - {"class"}:
            print("### Trained image model\n")
            print(digits_table(args.config, args.workdir, args.num_images, args.tasks) + "\n")
        if (not args.tasks or "class" in args.tasks.split(",")) and (
                args.class_workdir or args.classifier_workdir):
            print("### Class guidance on digits\n")
            run = (args.class_config, args.class_workdir) if args.class_workdir else None
            print(class_table((args.config, args.workdir), run, args.classifier_workdir,
                              args.num_class, args.num_class_slow))


if __name__ == "__main__":
    main()
