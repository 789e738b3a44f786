"""Controllable generation from the CLI (`sampling.task`): inpainting, colourisation and
image-to-image on a trained image run's inputs, with their metrics for `--mode eval`.

The samplers are controllable.py's; this module reads inputs and masks, runs them over the
run's EMA network in compiled batches, and writes the npz, the input | mask | result grid and
the metrics (masked-region MSE / PSNR against the ground truth, the Fréchet distance in the
feature network's space).
"""

from __future__ import annotations

import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import controllable
import datasets
import run_lib
import visualize
from fast_sampling import METHODS as FAST_METHODS
from models import utils as mutils
from utils import ConfigError, choose, require

TASKS = ("none", "class", "inpaint", "colorize", "img2img")
IMAGE_TASKS = ("inpaint", "colorize", "img2img")


def task_of(config) -> str:
    """The validated `sampling.task` ('none' when the config has no such key)."""
    return choose("sampling.task", config.sampling.get("task", "none"), TASKS)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _check_images(x, shape, where: str) -> np.ndarray:
    """float32 [N, H, W, C] in [0, 1] of the run's `shape`, or one ConfigError line."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.ndim == 3 and shape[-1] == 1:
        x = x[..., None]
    require(x.ndim == 4 and x.shape[1:] == tuple(shape), "sampling.input",
            f"{where}: images of shape {x.shape[1:]} do not match the run's {tuple(shape)}")
    require(bool(np.all(np.isfinite(x))) and x.min() >= 0.0 and x.max() <= 1.0,
            "sampling.input", f"{where}: images must lie in [0, 1] (or be uint8), got "
            f"[{x.min():.3g}, {x.max():.3g}]")
    return x


def load_inputs(config, shape, num: int) -> np.ndarray:
    """The first `num` input images, float32 [num, H, W, C] in [0, 1].

    `sampling.input`: 'test' (the run's dataset, test split), a folder of PNG files (sorted by
    name; resized and centre-cropped to the run's size), or an .npz with key 'samples' or
    'images' (floats in [0, 1] or uint8).
    """
    src = str(config.sampling.get("input", "test"))
    if src == "test":
        d = config.data
        source = datasets.get_dataset(d.dataset, "test", d.image_size, d.num_channels,
                                      d.get("data_dir", None))
        x = np.stack([source[i][0] for i in range(min(num, len(source)))])
        return _check_images(x, shape, f"the {d.dataset} test split")
    if src.endswith(".npz"):
        if not os.path.isfile(src):
            raise ConfigError(f"sampling.input: no such file {src}")
        with np.load(src) as data:
            key = next((k for k in ("samples", "images") if k in data.files), None)
            if key is None:
                raise ConfigError(f"sampling.input: {src} has no 'samples' or 'images' array "
                                  f"(keys: {data.files})")
            return _check_images(data[key][:num], shape, src)
    if os.path.isdir(src):
        files = sorted(glob.glob(os.path.join(src, "*.png")))[:num]
        if not files:
            raise ConfigError(f"sampling.input: no .png files in {src}")
        from PIL import Image

        images = []
        for f in files:
            with Image.open(f) as img:
                images.append(datasets._fit_image(img, shape[0], shape[-1]))
        return _check_images(np.stack(images), shape, src)
    raise ConfigError(f"sampling.input={src!r}: give 'test', a folder of PNGs or an .npz file")


def mask_name(config, task: str) -> str:
    """`sampling.mask`, or the task's default when empty: inpainting 'centre_square';
    img2img none (the whole image may change); colourisation has no mask."""
    name = str(config.sampling.get("mask", "") or "")
    return name or ("centre_square" if task == "inpaint" else "")


def _masks(config, shape, num: int) -> np.ndarray:
    """[num, H, W, C] masks (1 = known) from `sampling.mask`; random_pixels differ per image;
    all ones where the task has no mask."""
    name = mask_name(config, task_of(config))
    if not name:
        return np.ones((num,) + tuple(shape), np.float32)
    rng = jax.random.PRNGKey(int(config.seed) + 7)
    if name == "random_pixels":
        return np.stack([controllable.get_mask(name, shape, jax.random.fold_in(rng, i))
                         for i in range(num)])
    return np.broadcast_to(controllable.get_mask(name, shape), (num,) + tuple(shape)).copy()


# ---------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------


def sampler_kwargs(config) -> tuple[str, dict]:
    """(method, keyword arguments of that sampler) from config.sampling, for controllable.py."""
    s = config.sampling
    method = choose("sampling.method", s.method, controllable.METHODS)
    if method == "pc":
        kw = dict(predictor=s.predictor, corrector=s.corrector, snr=s.snr,
                  n_steps=s.n_steps_each, probability_flow=s.probability_flow,
                  denoise=s.noise_removal)
        if s.get("resample_times", 1) != 1:  # RePaint
            kw.update(jump_length=s.get("jump_length", 10), resample_times=s.resample_times)
        return method, kw
    if method == "ode":
        return method, dict(rtol=s.rtol, atol=s.atol, method=s.ode_method)
    spec = FAST_METHODS[method]
    kw = dict(steps=s.get("steps", 20), order=s.get("order", None),
              schedule=s.get("schedule", "logsnr"), t_end=s.get("t_end", None),
              rho=s.get("rho", 7.0))
    kw.update({k: s[k] for k in spec.fields if k in s})
    return method, kw


def _task_sampler(task, sde, y, mask, strength, method, kw):
    if task == "inpaint":
        return controllable.get_inpaint_sampler(sde, y, mask, method, **kw)
    if task == "colorize":
        return controllable.get_colorize_sampler(sde, y.mean(-1), y.shape, method, **kw)
    return controllable.get_sdedit_sampler(sde, y, strength, method, mask, **kw)


def _check_task(config, task, exp):
    require(exp.images, "sampling.task", f"{task!r} needs an image run, not data.dataset="
            f"{config.data.dataset!r}")
    if task == "colorize":
        require(exp.shape[-1] == 3, "sampling.task", "'colorize' needs RGB data "
                f"(data.num_channels=3); this run has {exp.shape[-1]} channel(s)")
    strength = float(config.sampling.get("strength", 0.5))
    if task == "img2img":
        require(0.0 <= strength <= 1.0, "sampling.strength",
                f"must be in [0, 1] (0: the input, 1: unconditional), got {strength}")
    return strength


def run_task(config, exp, params, images, masks, rng):
    """Results of `sampling.task` on `images` [N, H, W, C] in [0, 1] with `masks` (1 = known),
    in batches of `sampling.batch_size` through one compiled program: (results [N, ...] in
    [0, 1], nfe per sample)."""
    task = task_of(config)
    strength = _check_task(config, task, exp)
    method, kw = sampler_kwargs(config)
    scaler = datasets.get_data_scaler(config.data.get("centered", False))
    inverse = datasets.get_data_inverse_scaler(config.data.get("centered", False))
    continuous = bool(config.training.continuous)
    bs = min(int(config.sampling.batch_size), len(images))
    use_mask = task == "inpaint" or (task == "img2img" and bool(mask_name(config, task)))
    # Build once outside jit too: bad settings fail here with their one line.
    _task_sampler(task, exp.sde, jnp.zeros((bs,) + exp.shape), masks[:bs] if use_mask else None,
                  strength, method, kw)

    @jax.jit
    def batch(key, params, y, m):
        score_fn = mutils.get_score_fn(exp.sde, exp.model, {"params": params}, continuous)
        sampler = _task_sampler(task, exp.sde, y, m if use_mask else None, strength, method, kw)
        return sampler(key, score_fn)

    out, nfe = [], 0
    for i in range(0, len(images), bs):
        y, m = images[i:i + bs], masks[i:i + bs]
        pad = bs - len(y)
        y = np.concatenate([y, y[:1].repeat(pad, 0)]) if pad else y
        m = np.concatenate([m, m[:1].repeat(pad, 0)]) if pad else m
        x, nfe = batch(jax.random.fold_in(rng, i), params, scaler(jnp.asarray(y)),
                       jnp.asarray(m))
        x = inverse(x)
        # colourisation keeps the input's grey exactly; other tasks clip to the image range
        x = controllable.project_to_grey(x, y.mean(-1)) if task == "colorize" else \
            jnp.clip(x, 0.0, 1.0)
        out.append(np.asarray(x)[: bs - pad])
    return np.concatenate(out).astype(np.float32), int(nfe)


# ---------------------------------------------------------------------------------------------
# --mode sample / --mode eval
# ---------------------------------------------------------------------------------------------


def _shown_masks(task, images, masks):
    """The middle column of the grid: the mask (white = known) or the grey input."""
    if task == "colorize":
        return images.mean(-1, keepdims=True).repeat(images.shape[-1], -1)
    return masks


def _write(config, workdir, step, task, images, masks, results, nfe, extra=None) -> str:
    out_dir = os.path.join(workdir, "samples")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{task}_{step}.npz")
    np.savez(path + ".tmp.npz", samples=results, inputs=images, masks=masks,
             task=task, method=config.sampling.method, nfe=nfe, **(extra or {}))
    os.replace(path + ".tmp.npz", path)
    k = min(len(images), 16)
    rows = np.stack([images[:k], _shown_masks(task, images[:k], masks[:k]), results[:k]], 1)
    visualize.save_image_grid(path[:-4] + ".png", rows.reshape((-1,) + images.shape[1:]),
                              ncol=3, scale=max(1, 64 // images.shape[1]))
    return path


def _prepare(config, workdir):
    """(task, image shape, step, run) with run(images, masks, rng) -> (results, nfe, extra
    arrays to save); text-to-image runs go through text_tasks (prompt-steered, latent space)."""
    import pipeline

    if pipeline.is_text_run(config):
        import text_tasks

        return text_tasks.prepare(config, workdir)
    task = task_of(config)
    exp = run_lib.build(config)
    _check_task(config, task, exp)
    params, step = run_lib.load_ema(config, exp, workdir)
    return task, exp.shape, step, lambda images, masks, rng: (
        *run_task(config, exp, params, images, masks, rng), {})


def sample(config, workdir: str) -> str:
    """--mode sample with sampling.task: results of the first sampling.num_samples inputs;
    writes samples/<task>_<step>.npz (samples, inputs, masks) and a PNG of input | mask | result
    rows; returns the npz path."""
    task, shape, step, run = _prepare(config, workdir)
    num = int(config.sampling.num_samples)
    images = load_inputs(config, shape, num)
    masks = _masks(config, shape, len(images))
    rng = jax.random.fold_in(run_lib._key(config, run_lib.STREAM_SAMPLE), step)
    results, nfe, extra = run(images, masks, rng)
    return _write(config, workdir, step, task, images, masks, results, nfe, extra)


def region_metrics(results, truth, masks) -> dict:
    """MSE and PSNR (dB, peak 1) over the generated coordinates (mask 0), per image averaged."""
    gen = 1.0 - masks
    count = np.maximum(gen.reshape(len(gen), -1).sum(-1), 1.0)
    mse = (((results - truth) ** 2) * gen).reshape(len(gen), -1).sum(-1) / count
    return {"masked_mse": float(mse.mean()),
            "masked_psnr": float(np.mean(10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))))}


def evaluate(config, workdir: str) -> dict:
    """--mode eval with sampling.task on the test split (the ground truth): masked-region MSE /
    PSNR (colourisation and img2img: over all pixels) and the Fréchet distance of the results
    in the feature network's space; eval/<task>_<step>.json."""
    import eval_lib
    import evaluation

    require(str(config.sampling.get("input", "test")) == "test", "sampling.input",
            "--mode eval measures against the ground truth of the test split; use 'test'")
    task, shape, step, run = _prepare(config, workdir)
    images = load_inputs(config, shape, int(config.eval.num_samples))
    masks = _masks(config, shape, len(images))
    rng = jax.random.fold_in(run_lib._key(config, run_lib.STREAM_EVAL), step)
    results, nfe, extra = run(images, masks, rng)
    region = masks if task == "inpaint" or (task == "img2img" and mask_name(config, task)) \
        else np.zeros_like(masks)
    out = {"step": step, "task": task, "method": config.sampling.method, "nfe": nfe,
           "num_samples": len(results), **region_metrics(results, images, region)}
    if os.path.exists(eval_lib.stats_path(config, workdir)):
        net = eval_lib.feature_network(config)
        mu, sigma, _ = eval_lib.reference_stats(config, workdir, net)
        feats, _ = evaluation.network_features(net, eval_lib._net_images(net, results))
        stats = evaluation.FeatureStats().update(feats)
        name = evaluation.metric_names(net)["frechet_distance"]
        out[name] = float(evaluation.frechet_distance(stats.mean, stats.cov, mu, sigma))
    else:
        print(f"note: no reference statistics at {eval_lib.stats_path(config, workdir)} "
              "(--mode fid_stats makes them): the Fréchet distance is left out")
    if run_lib.is_main_process():
        os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
        with open(os.path.join(workdir, "eval", f"{task}_{step}.json"), "w") as f:
            json.dump(out, f, indent=1)
    _write(config, workdir, step, task, images, masks, results, nfe, extra)
    return out


__all__ = ["TASKS", "task_of", "load_inputs", "run_task", "sample", "evaluate",
           "region_metrics", "sampler_kwargs", "mask_name"]
