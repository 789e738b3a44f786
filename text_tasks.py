"""`sampling.task` (inpaint, img2img) on text-to-image runs: the same replacement and SDEdit
samplers as tasks.py (controllable.py), in the run's model space, steered by prompts with
classifier-free guidance. For latent runs the input is encoded with the frozen autoencoder
(posterior mean, scaled) and the pixel mask is carried to the latent grid, where a latent cell
is known only when every pixel it covers is (latent diffusion's inpainting by replacement);
Stable Diffusion's img2img is SDEdit on those latents.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import autoencoder_lib
import pipeline
import tasks
from models import utils as mutils
from utils import require

TEXT_TASKS = ("inpaint", "img2img")


def pixel_shape(config) -> tuple:
    s = int(config.data.image_size)
    return (s, s, int(config.data.num_channels))


def latent_masks(masks: np.ndarray, shape: tuple) -> np.ndarray:
    """Pixel masks [n, H, W, C] (1 = known) on a model grid `shape` (h, w, c): [n, h, w, c];
    a cell is known only when every pixel it covers is."""
    n, hh, ww, _ = masks.shape
    h, w, c = shape
    require(hh % h == 0 and ww % w == 0, "sampling.mask",
            f"a {hh}x{ww} mask does not tile the {h}x{w} latent grid")
    blocks = masks.min(-1).reshape(n, h, hh // h, w, ww // w).min((2, 4))
    return np.broadcast_to(blocks[..., None], (n, h, w, c)).astype(np.float32)


def prompts_for(config, num: int) -> list[str]:
    """One prompt per input: sampling.prompts (one for all, or one per input) or, for the test
    split, each image's own caption."""
    given = [p.strip() for p in str(config.sampling.get("prompts", "")).split(";") if p.strip()]
    if not given and str(config.sampling.get("input", "test")) == "test":
        return list(autoencoder_lib.image_source(config, "test").captions[:num])
    require(len(given) in (1, num), "sampling.prompts",
            f"give one prompt for all {num} inputs or one per input ('a;b;...'), got "
            f"{len(given)}")
    return given * num if len(given) == 1 else given


def _encoder(run: pipeline.TextRun):
    """images [B, H, W, C] in [0, 1] -> model space (scaled posterior mean, or [-1, 1])."""
    if run.codec is None:
        return jax.jit(lambda x: 2.0 * x - 1.0)
    ae = run.codec.ae

    @jax.jit
    def encode(params, x):
        post = ae.apply({"params": params}, 2.0 * x - 1.0, method=ae.encode)
        return post.mean * run.codec.scale_factor

    return lambda x: encode(run.codec.params, x)


def run_text_task(config, run, params, images, masks, prompts, rng):
    """Results of sampling.task on `images` [N, H, W, C] in [0, 1] with pixel `masks` (1 =
    known) and one prompt each, guided at sampling.guidance_scale: (results [N, H, W, C] in
    [0, 1], nfe). Inpainting pastes the known pixels back after decoding."""
    task = tasks.task_of(config)
    require(task in TEXT_TASKS, "sampling.task",
            f"{task!r} is not defined for text runs; choose one of: {', '.join(TEXT_TASKS)}")
    strength = float(config.sampling.get("strength", 0.5))
    require(task != "img2img" or 0.0 <= strength <= 1.0, "sampling.strength",
            f"must be in [0, 1] (0: the input, 1: unconditional), got {strength}")
    w = pipeline.check_guidance(config.sampling.get("guidance_scale", 1.0),
                                "sampling.guidance_scale")
    method, kw = tasks.sampler_kwargs(config)
    use_mask = task == "inpaint" or bool(tasks.mask_name(config, task))
    bs = min(int(config.sampling.batch_size), len(images))
    model_masks = latent_masks(masks, run.shape) if use_mask else np.ones(
        (len(images),) + run.shape, np.float32)
    tasks._task_sampler(task, run.sde, jnp.zeros((bs,) + run.shape),
                        model_masks[:bs] if use_mask else None, strength, method, kw)
    encode = _encoder(run)
    embed = jax.jit(run.text.embed)
    null_ctx, null_mask = pipeline.prompt_context(run, embed, params, [pipeline.NULL_PROMPT])
    continuous = bool(config.training.continuous)
    codec_params = None if run.codec is None else run.codec.params

    @jax.jit
    def batch(key, params, y, m, ctx, mask, ae_params):
        score_fn = mutils.get_score_fn(run.sde, run.unet, {"params": params["unet"]},
                                       continuous, context=ctx, context_mask=mask,
                                       guidance_scale=jnp.float32(w), null_context=null_ctx,
                                       null_context_mask=null_mask,
                                       prediction_type=run.prediction_type)
        sampler = tasks._task_sampler(task, run.sde, y, m if use_mask else None, strength,
                                      method, kw)
        x, nfe = sampler(key, score_fn)
        codec = None if run.codec is None else run.codec._replace(params=ae_params)
        return run._replace(codec=codec).to_images(x), nfe

    out, nfe = [], 0
    for i in range(0, len(images), bs):
        y, m, p = images[i:i + bs], model_masks[i:i + bs], prompts[i:i + bs]
        pad = bs - len(y)
        if pad:
            y, m = (np.concatenate([a, a[:1].repeat(pad, 0)]) for a in (y, m))
            p = p + [p[0]] * pad
        ctx, mask = pipeline.prompt_context(run, embed, params, p)
        x, nfe = batch(jax.random.fold_in(rng, i), params, encode(jnp.asarray(y)),
                       jnp.asarray(m), ctx, mask, codec_params)
        out.append(np.asarray(x)[: bs - pad])
    results = np.concatenate(out).astype(np.float32)
    if task == "inpaint":
        results = masks * images + (1.0 - masks) * results
    return results, int(nfe)


def prepare(config, workdir: str):
    """tasks._prepare for a text run: (task, image shape, step, run(images, masks, rng) ->
    (results, nfe, {'prompts': ...}))."""
    task = tasks.task_of(config)
    require(task in TEXT_TASKS, "sampling.task",
            f"{task!r} is not defined for text runs; choose one of: {', '.join(TEXT_TASKS)}")
    run, params, step = pipeline.load(config, workdir)

    def compute(images, masks, rng):
        prompts = prompts_for(config, len(images))
        results, nfe = run_text_task(config, run, params, images, masks, prompts, rng)
        return results, nfe, {"prompts": np.asarray(prompts)}

    return task, pixel_shape(config), step, compute
