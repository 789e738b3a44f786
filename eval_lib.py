"""Evaluation from the CLI: checkpoint sweeps with FID / IS / KID (or the digits-classifier
proxies), bits/dim (Song et al. 2021, Sec. 4.3) and test loss; reference statistics; and the
SDE paper's sampler ablation (Table 1: P1000, P2000, C2000, PC1000) with a quality-vs-NFE plot.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time

import jax
import numpy as np

import checkpointing
import datasets
import evaluation
import feature_net
import likelihood
import run_lib
import sampling
import sde_lib
import visualize
from models import utils as mutils
from utils import ConfigError, require

STREAM_EVAL = run_lib.STREAM_EVAL


def _eval_get(config, key, default):
    return config.eval.get(key, default) if "eval" in config else default


# ---------------------------------------------------------------------------------------------
# Feature network and reference statistics
# ---------------------------------------------------------------------------------------------


def feature_network(config):
    """The FID Inception when `eval.inception_path` is set; else, for digits, the offline
    classifier (its metrics are named fd_digits / kid_digits / cis_digits, never FID)."""
    path = _eval_get(config, "inception_path", None)
    if path:
        return evaluation.load_inception(path)
    if config.data.dataset == "digits":
        return evaluation.load_digits_classifier(_eval_get(config, "classifier_path", None))
    if config.data.dataset == "shapes":
        return feature_net.load_shapes_classifier(_eval_get(config, "classifier_path", None))
    raise ConfigError(
        f"eval.inception_path: needed for data.dataset={config.data.dataset!r} (pytorch-fid's "
        "pt_inception-2015-12-05-6726825d.pth or its .npz); the offline proxy exists for "
        "'digits' only"
    )


def _net_images(net, images):
    """Quantise images in [0, 1] to 8 bits (as the literature does) in the network's channels."""
    images = np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0) / 255.0
    if not hasattr(net, "image_shape") and images.shape[-1] == 1:  # the Inception takes RGB
        images = np.repeat(images, 3, axis=-1)
    return images


def stats_path(config, workdir: str) -> str:
    """Where `--mode fid_stats` writes and `--mode eval` reads the reference statistics."""
    path = _eval_get(config, "stats_path", None)
    if path:
        return path
    d = config.data
    split = _eval_get(config, "stats_split", "train")
    return os.path.join(workdir, "fid_stats", f"{d.dataset}_{split}_{d.image_size}.npz")


def fid_stats(config, workdir: str) -> str:
    """Feature statistics of a dataset split (uint8 images, no dequantisation, no dropped
    remainder), plus a reference feature subset for KID. Returns the file written."""
    import tqdm

    exp = run_lib.build(config)
    require(exp.images, "data.dataset", "--mode fid_stats needs an image dataset")
    net = feature_network(config)
    d = config.data
    split = _eval_get(config, "stats_split", "train")
    source = datasets.get_dataset(d.dataset, split, d.image_size, d.num_channels,
                                  d.get("data_dir", None))
    batch_size = int(_eval_get(config, "batch_size", 256))
    keep = int(_eval_get(config, "kid_reference_size", 10000))
    stats, kept = evaluation.FeatureStats(), []
    it = datasets.eval_iterator(source, batch_size)
    for batch in tqdm.tqdm(it, total=-(-len(source) // batch_size), desc="fid_stats",
                           disable=not run_lib.is_main_process()):
        images = batch["image"][batch["mask"]]
        feats, _ = evaluation.network_features(net, _net_images(net, images))
        stats.update(feats)
        if sum(len(k) for k in kept) < keep:
            kept.append(feats)
    path = stats_path(config, workdir)
    if run_lib.is_main_process():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        evaluation.save_statistics(path, stats.mean, stats.cov, net, stats.n,
                                   features=np.concatenate(kept)[:keep])
    return path


# ---------------------------------------------------------------------------------------------
# Per-checkpoint metrics
# ---------------------------------------------------------------------------------------------


def _score_fn(config, exp, params):
    return mutils.get_score_fn(exp.sde, exp.model, {"params": params},
                               bool(config.training.continuous))


def _test_source(config):
    d = config.data
    split = _eval_get(config, "bpd_dataset", "test")
    return datasets.get_dataset(d.dataset, split, d.image_size, d.num_channels,
                                d.get("data_dir", None))


def test_loss(config, exp, params, source) -> float:
    """Mean training objective of the EMA network on the test split (fixed randomness)."""
    loss_fn = run_lib.get_loss_fn(config, exp, train=False)
    scaler = datasets.get_data_scaler(config.data.centered)
    run = jax.jit(loss_fn)
    total, count = 0.0, 0
    key = jax.random.PRNGKey(config.seed)
    for i, batch in enumerate(datasets.eval_iterator(source, int(config.eval.batch_size))):
        per = np.asarray(run(jax.random.fold_in(key, i), params, scaler(batch["image"])))
        total += float(per[batch["mask"]].sum())
        count += int(batch["mask"].sum())
    return total / count


def bits_per_dim(config, exp, params, source) -> float:
    """Bits/dim of the test split through the probability-flow ODE, uniform dequantisation
    repeated `eval.bpd_repeats` times (Hutchinson-Skilling trace, Rademacher probes)."""
    import tqdm

    e = config.eval
    ll = likelihood.get_likelihood_fn(exp.sde, e.get("hutchinson", "rademacher"),
                                      e.get("rtol", 1e-5), e.get("atol", 1e-5))
    run = jax.jit(lambda p, rng, x: ll(rng, _score_fn(config, exp, p), x)[0])
    scaler = datasets.get_data_scaler(config.data.centered)
    bpds = []
    repeats, bs = int(e.get("bpd_repeats", 1)), int(e.batch_size)
    bar = tqdm.tqdm(total=repeats * -(-len(source) // bs), desc="bits/dim",
                    disable=not run_lib.is_main_process())
    for r in range(repeats):
        it = datasets.eval_iterator(source, bs, uniform_dequantization=True, seed=r)
        for i, batch in enumerate(it):
            bar.update(1)
            logp = run(params, jax.random.PRNGKey(1000 * r + i), scaler(batch["image"]))
            bpd = likelihood.bits_per_dim(logp, exp.shape, config.data.centered)
            bpds.append(np.asarray(bpd)[batch["mask"]])
            bar.set_postfix(bpd=f"{np.mean(np.concatenate(bpds)):.4f}")
    bar.close()
    return float(np.mean(np.concatenate(bpds)))


def _sample_features(config, exp, params, net, step: int, workdir: str, generator=None):
    """Features and logits of `eval.num_samples` samples, generated in rounds that are saved
    as they finish, so an interrupted evaluation resumes where it stopped."""
    import tqdm

    n, bs = int(config.eval.num_samples), int(config.eval.batch_size)
    part_dir = os.path.join(workdir, "eval", f"partial_{step}")
    os.makedirs(part_dir, exist_ok=True)
    # one compiled sampler for every round (and, passed in, every checkpoint of a sweep)
    generator = generator or run_lib.get_generator(config, exp, bs)
    inverse = datasets.get_data_inverse_scaler(config.data.centered)
    key = jax.random.fold_in(run_lib._key(config, STREAM_EVAL), step)
    feats, logits, first = [], [], None
    for r in tqdm.tqdm(range(-(-n // bs)), desc=f"sampling step {step}",
                       disable=not run_lib.is_main_process()):
        path = os.path.join(part_dir, f"round_{r}.npz")
        if not os.path.exists(path):
            x, _ = run_lib.generate(config, exp, params, jax.random.fold_in(key, r),
                                    min(bs, n - r * bs), generator=generator)
            f, lg = evaluation.network_features(net, _net_images(net, inverse(x)))
            np.savez(path + ".tmp.npz", features=f, logits=lg, images=np.asarray(inverse(x)))
            os.replace(path + ".tmp.npz", path)
        with np.load(path) as data:
            feats.append(data["features"])
            logits.append(data["logits"])
            first = data["images"] if first is None else first
    return np.concatenate(feats), np.concatenate(logits), first, part_dir


def reference_stats(config, workdir: str, net):
    """(mu, sigma, reference features or None) of `net` for the configured dataset."""
    ref_path = stats_path(config, workdir)
    if not os.path.exists(ref_path):
        raise ConfigError(f"eval.stats_path: {ref_path} does not exist; compute it first with "
                          "--mode fid_stats")
    mu, sigma = evaluation.load_statistics(ref_path, net)
    return mu, sigma, evaluation.load_reference_features(ref_path)


def sample_metrics(config, exp, params, net, ref, step: int, workdir: str,
                   generator=None) -> dict:
    """FID / KID / IS (or the digits proxies) of samples against the reference statistics.
    `generator`: a compiled sampler of eval.batch_size from run_lib.get_generator, to reuse."""
    mu, sigma, ref_feats = ref
    feats, logits, images, part_dir = _sample_features(config, exp, params, net, step, workdir,
                                                       generator)
    names = evaluation.metric_names(net)
    stats = evaluation.FeatureStats().update(feats)
    out = {names["frechet_distance"]: evaluation.frechet_distance(stats.mean, stats.cov, mu,
                                                                    sigma)}
    splits = int(_eval_get(config, "is_splits", 10))
    out[names["inception_score"]] = evaluation.inception_score(logits, min(splits, len(logits)))[0]
    if ref_feats is not None:
        subset = min(int(_eval_get(config, "kid_subset_size", 1000)), len(feats), len(ref_feats))
        subsets = int(_eval_get(config, "kid_subsets", 100))
        out[names["kid"]] = evaluation.kid(feats, ref_feats, subset, subsets)[0]
    out["num_samples"] = len(feats)
    visualize.save_image_grid(os.path.join(workdir, "eval", f"samples_{step}.png"),
                              images[:64], scale=max(1, 64 // exp.shape[0]))
    shutil.rmtree(part_dir, ignore_errors=True)
    return {k: v if k == "num_samples" else float(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# Checkpoint sweep
# ---------------------------------------------------------------------------------------------


def _wait_for_checkpoint(config, workdir: str, step: int) -> None:
    """Block until WORKDIR has a checkpoint at `step` while training can still write it."""
    timeout = float(_eval_get(config, "wait_timeout", 0))
    deadline = time.time() + timeout
    while True:
        steps = checkpointing.available_steps(workdir)
        if step in steps:
            return
        done = steps and max(steps) >= config.training.n_iters
        if done or time.time() >= deadline:
            raise ConfigError(
                f"eval.begin_ckpt/eval.end_ckpt: no checkpoint at step {step} in "
                f"{checkpointing.checkpoint_dir(workdir)} (available: {sorted(steps)}); "
                "checkpoint k is step k * training.snapshot_freq"
            )
        time.sleep(float(_eval_get(config, "poll_seconds", 30)))


def _write_csv(path: str, rows: list) -> None:
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "step", k))
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(path + ".tmp", path)


def evaluate(config, workdir: str) -> dict:
    """Toy data: distances and NLL of the latest checkpoint. Images: sweep checkpoints
    eval.begin_ckpt..eval.end_ckpt (step = k * training.snapshot_freq) and write
    eval/metrics_<step>.json and eval/metrics.csv; finished steps are not recomputed. Text runs:
    prompt faithfulness and the guidance sweep (`text_eval.evaluate`). With sampling.task, the
    task's metrics (`tasks.evaluate`)."""
    import pipeline
    import text_eval

    pipeline.reject_mode(config, "eval")
    import tasks

    if tasks.task_of(config) in tasks.IMAGE_TASKS:
        return tasks.evaluate(config, workdir)
    import class_lib  # sampling.task='class': offline classifier accuracy, fd_digits

    if class_lib.handles(config):
        return class_lib.evaluate(config, workdir)
    if pipeline.is_text_run(config):
        return text_eval.evaluate(config, workdir)
    exp = run_lib.build(config)
    if not exp.images:
        return run_lib.evaluate(config, workdir)
    e = config.eval
    begin, end = int(e.begin_ckpt), int(e.end_ckpt)
    require(1 <= begin <= end, "eval.begin_ckpt", f"need 1 <= begin_ckpt <= end_ckpt, got "
            f"{begin}, {end}")
    net = feature_network(config) if e.enable_sampling else None
    ref = reference_stats(config, workdir, net) if e.enable_sampling else None
    source = _test_source(config) if (e.enable_loss or e.enable_bpd) else None
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    generator = run_lib.get_generator(config, exp, int(e.batch_size)) if e.enable_sampling \
        else None  # compiled at its first call, then shared by all checkpoints
    rows = []
    for k in range(begin, end + 1):
        step = k * int(config.training.snapshot_freq)
        path = os.path.join(out_dir, f"metrics_{step}.json")
        if os.path.exists(path):
            with open(path) as f:
                rows.append(json.load(f))
            continue
        _wait_for_checkpoint(config, workdir, step)
        params, _ = run_lib.load_ema(config, exp, workdir, step)
        res = {"step": step}
        if e.enable_loss:
            res["test_loss"] = test_loss(config, exp, params, source)
        if e.enable_bpd:
            res["bpd"] = bits_per_dim(config, exp, params, source)
        if e.enable_sampling:
            res.update(sample_metrics(config, exp, params, net, ref, step, workdir, generator))
        if run_lib.is_main_process():
            with open(path + ".tmp", "w") as f:
                json.dump(res, f, indent=2)
            os.replace(path + ".tmp", path)
        rows.append(res)
        print(json.dumps(res))
    if run_lib.is_main_process():
        _write_csv(os.path.join(out_dir, "metrics.csv"), rows)
    return {"results": rows}


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def results_table(result: dict) -> str:
    """`evaluate`'s result as a markdown table for the terminal.

    Args:
      result: toy data: one dict of metrics (one row per metric); images: {"results": rows},
        one dict per checkpoint (one row per checkpoint, one column per metric).

    Returns:
      the table's lines joined by newlines.
    """
    if "results" in result:
        rows = result["results"]
        keys = list(dict.fromkeys(k for r in rows for k in r))
        cells = [[_cell(r.get(k)) for k in keys] for r in rows]
    else:
        keys = ["metric", "value"]
        cells = [[k, _cell(v)] for k, v in result.items()]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    def line(row):  # first column (metric name or step) left-aligned, numbers right-aligned
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                         strict=True)]
        return "| " + " | ".join(cells) + " |"

    rule = "|:" + "-" * (widths[0] + 1) + "|" + "".join("-" * (w + 1) + ":|" for w in widths[1:])
    return "\n".join([line(keys), rule, *map(line, cells)])


# ---------------------------------------------------------------------------------------------
# Sampler ablation (Song et al. 2021, Table 1) and quality vs NFE
# ---------------------------------------------------------------------------------------------

ABLATION_ROWS = {  # name -> (predictor, probability_flow)
    "ancestral sampling": ("ancestral_sampling", False),
    "reverse diffusion": ("reverse_diffusion", False),
    "probability flow": ("reverse_diffusion", True),
}


FAST_PREFIX = "fast: "  # sampler label of the fast-solver rows
FAST_NFE = (5, 10, 15, 20, 35, 50)


def _ablation_cells(n: int):
    """Column name -> (steps, use predictor, use corrector)."""
    return {f"P{n}": (n, True, False), f"P{2 * n}": (2 * n, True, False),
            f"C{2 * n}": (2 * n, False, True), f"PC{n}": (n, True, True)}


def _sde_with_steps(config, steps: int) -> sde_lib.SDE:
    return sde_lib.get_sde(run_lib.override(config, {"model.num_scales": steps}))


def _quality_fn(config, exp, workdir):
    """(name, fn(samples in data space) -> lower-is-better distance) for the ablation."""
    if not exp.images:
        data = datasets.sample_toy(config.data.dataset, jax.random.PRNGKey(config.seed + 1),
                                   int(config.ablation.num_samples))
        return "energy_distance", lambda x: float(evaluation.energy_distance(x, data))
    net = feature_network(config)
    mu, sigma, _ = reference_stats(config, workdir, net)

    def fd(x):
        feats, _ = evaluation.network_features(net, _net_images(net, x))
        stats = evaluation.FeatureStats().update(feats)
        return evaluation.frechet_distance(stats.mean, stats.cov, mu, sigma)

    return evaluation.metric_names(net)["frechet_distance"], fd


def ablate(config, workdir: str) -> list:
    """Table 1 of the SDE paper for the latest checkpoint: for each predictor, the columns
    P{N}, P{2N}, C{2N}, PC{N} (N = ablation.num_scales), plus probability-flow ODE solves at
    several tolerances; markdown table printed, CSV and a quality-vs-NFE PNG in WORKDIR/eval."""
    import pipeline

    pipeline.reject_mode(config, "ablate")
    if pipeline.is_text_run(config):
        raise ConfigError("--mode ablate: for unconditional score models; a text run's sweep is "
                          "--mode eval (eval.guidance_scales)")
    exp = run_lib.build(config)
    a = config.ablation
    params, step = run_lib.load_ema(config, exp, workdir)
    name, quality = _quality_fn(config, exp, workdir)
    inverse = datasets.get_data_inverse_scaler(config.data.get("centered", False))
    to_data = (lambda x: np.clip(inverse(x), 0, 1)) if exp.images else (lambda x: x)
    n, num = int(a.num_scales), int(a.num_samples)
    rows = []

    def run(label, column, make_sampler):
        try:
            x, nfe = run_lib.generate(config, exp, params, jax.random.PRNGKey(config.seed), num,
                                      make_sampler=make_sampler)
        except ConfigError as err:  # e.g. ancestral sampling is not defined for sub-VP
            rows.append({"sampler": label, "column": column, "nfe": None, name: None,
                         "note": str(err)})
            print(f"{label:20s} {column:8s} n/a: {err}", flush=True)
            return
        if not np.all(np.isfinite(x)):
            rows.append({"sampler": label, "column": column, "nfe": nfe, name: None,
                         "note": "non-finite samples (the sampler diverged)"})
            print(f"{label:20s} {column:8s} n/a: non-finite samples", flush=True)
            return
        rows.append({"sampler": label, "column": column, "nfe": nfe, name: quality(to_data(x))})
        print(f"{label:20s} {column:8s} nfe={nfe:6d} {name}={rows[-1][name]:.5g}", flush=True)

    done = {}  # sampler settings -> its row: the corrector-only column does not depend on
    for label, (predictor, pf) in ABLATION_ROWS.items():  # the predictor, so it runs once
        for column, (steps, use_p, use_c) in _ablation_cells(n).items():
            sde = _sde_with_steps(config, steps)
            p = predictor if use_p else "none"
            c = "langevin" if use_c else "none"
            flow = pf and p != "none"
            if (steps, p, c, flow) in done:
                rows.append(dict(done[(steps, p, c, flow)], sampler=label))
                continue
            make = lambda shape, sde=sde, p=p, c=c, flow=flow: sampling.get_pc_sampler(
                sde, shape, p, c, a.snr, a.n_steps_each, flow, True)
            run(label, column, make)
            done[(steps, p, c, flow)] = rows[-1]
    for tol in a.ode_tolerances:
        make = lambda shape, tol=tol: sampling.get_ode_sampler(exp.sde, shape, tol, tol)
        run("ODE (dopri5)", f"tol={tol:g}", make)
    for method in a.get("fast_methods", ()):  # fast solvers at each NFE budget
        for k in a.get("fast_nfe", FAST_NFE):
            make = lambda shape, method=method, k=int(k): sampling.get_fast_sampler(
                exp.sde, shape, method, steps=k)
            run(f"{FAST_PREFIX}{method}", f"NFE{int(k)}", make)
    return _write_ablation(workdir, step, name, n, rows)


def _write_ablation(workdir, step, name, n, rows):
    table = ablation_table(rows, name, n)
    print(table)
    if not run_lib.is_main_process():
        return rows
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    _write_csv(os.path.join(out_dir, f"ablation_{step}.csv"), rows)
    with open(os.path.join(out_dir, f"ablation_{step}.md"), "w") as f:
        f.write(table + "\n")
    plot_quality_vs_nfe(os.path.join(out_dir, f"ablation_{step}.png"), rows, name)
    return rows


def ablation_table(rows, name: str, n: int) -> str:
    """Markdown in the layout of the SDE paper's Table 1 (lower is better)."""
    cols = list(_ablation_cells(n))
    lines = [f"| predictor ({name}) | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for label in ABLATION_ROWS:
        cells = {r["column"]: r for r in rows if r["sampler"] == label}
        fmt = [f"{cells[c][name]:.4g}" if cells[c][name] is not None else "n/a" for c in cols]
        lines.append(f"| {label} | " + " | ".join(fmt) + " |")
    ode = [r for r in rows if r["sampler"].startswith("ODE") and r[name] is not None]
    for r in ode:
        lines.append(f"| probability-flow ODE, {r['column']} | {r[name]:.4g} (NFE {r['nfe']}) |"
                     + " |" * (len(cols) - 1))
    fast = [r for r in rows if r["sampler"].startswith(FAST_PREFIX)]
    if fast:
        nfes = list(dict.fromkeys(r["column"] for r in fast))
        lines += ["", f"| fast sampler ({name}) | " + " | ".join(nfes) + " |",
                  "|---|" + "---:|" * len(nfes)]
        for label in dict.fromkeys(r["sampler"] for r in fast):
            cells = {r["column"]: r for r in fast if r["sampler"] == label}
            fmt = [f"{cells[c][name]:.4g}" if c in cells and cells[c][name] is not None
                   else "n/a" for c in nfes]
            lines.append(f"| {label[len(FAST_PREFIX):]} | " + " | ".join(fmt) + " |")
    return "\n".join(lines)


def plot_quality_vs_nfe(path: str, rows, name: str) -> None:
    """Sample quality against the number of score evaluations (both axes logarithmic): per
    predictor a line through its predictor-only columns and a square for predictor-corrector;
    one cross for the corrector-only column (the same sampler in every row); the ODE solves as
    a line over tolerances."""
    plt = visualize.plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ok = [r for r in rows if r[name] is not None and r["nfe"] is not None]
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    corrector_only = None
    for label in dict.fromkeys(r["sampler"] for r in ok):
        mine = [r for r in ok if r["sampler"] == label]
        color = next(colors)
        if label.startswith("ODE") or label.startswith(FAST_PREFIX):
            line = sorted(mine, key=lambda r: r["nfe"])
        else:
            line = sorted((r for r in mine if r["column"].startswith("P")
                           and not r["column"].startswith("PC")), key=lambda r: r["nfe"])
        ax.plot([r["nfe"] for r in line], [r[name] for r in line], "o-", color=color,
                label=label)
        for r in mine:
            if r["column"].startswith("PC"):
                ax.plot(r["nfe"], r[name], "s", color=color, markersize=7, mfc="none")
            elif r["column"].startswith("C"):
                corrector_only = r
                continue
            ax.annotate(r["column"], (r["nfe"], r[name]), fontsize=7,
                        textcoords="offset points", xytext=(4, 3), color=color)
    if corrector_only is not None:
        ax.plot(corrector_only["nfe"], corrector_only[name], "kx", markersize=9,
                label="corrector only (Langevin)")
        ax.annotate(corrector_only["column"], (corrector_only["nfe"], corrector_only[name]),
                    fontsize=7, textcoords="offset points", xytext=(4, 3))
    ax.plot([], [], "s", color="grey", mfc="none", label="predictor-corrector")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("NFE (score evaluations per sample)")
    ax.set_ylabel(f"{name} (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
