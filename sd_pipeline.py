"""Stable Diffusion 1.x / 2.x (Rombach et al. 2022) from a pretrained diffusers-layout directory
through the CLI: prompts and negative prompts -> CLIP context -> latents sampled with
classifier-free guidance (Ho & Salimans 2021) -> VAE decode / scale_factor; SDEdit img2img
(Meng et al. 2022) and inpainting by replacement in latent space; optionally the checkpoint
scheduler's own discrete timesteps (sampling.timesteps='diffusers') and a tiled VAE for large
images (pretrained.vae_tile, models/vae_tiling.py). run_lib dispatches `--mode sample` here for
a config with a `pretrained` section (`pipeline.run_kind`).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import controllable
import fast_sampling
import pipeline
import precision
import run_lib
import sampling
import tasks
import text_tasks
from models import pretrained, vae_tiling
from models import utils as mutils
from utils import ConfigError, choose, require

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
TASKS = ("none", "img2img", "inpaint")
# sampling.timesteps: '' the solver's own time grid; 'diffusers' the checkpoint scheduler's
TIMESTEPS = ("", "diffusers")
# methods that take one grid step per score evaluation, as diffusers' schedulers do
SCHEDULER_METHODS = ("ddim", "dpm_solver++", "unipc")
# sampling fields that are data of one call, not settings of the compiled sampler
REQUEST_FIELDS = ("prompts", "prompts_file", "negative_prompts", "samples_per_prompt", "seed",
                  "guidance_scale", "input")


# ---------------------------------------------------------------------------------------------
# What to sample: prompts, negative prompts, seeds, guidance (checked before any loading)
# ---------------------------------------------------------------------------------------------


class Request(NamedTuple):
    """One entry per image: prompts, negatives (the unconditional half), seeds; and the task,
    guidance scale w, image_size, the checkpoint path, compute dtype name and the VAE's
    (tile, overlap) in latent pixels (0, 0: untiled)."""

    prompts: list
    negatives: list
    seeds: list
    task: str
    guidance_scale: float
    image_size: int
    path: str
    dtype: str
    vae_tiling: tuple = (0, 0)


def negative_prompts(text: str, num_prompts: int) -> list[str]:
    """The negative prompt of each of `num_prompts` prompts from 'a; b; ...': none (the empty
    prompt for all), one for all, or one per prompt; ConfigError otherwise."""
    negatives = [p.strip() for p in str(text or "").split(";") if p.strip()]
    require(len(negatives) <= num_prompts, "sampling.negative_prompts",
            f"{len(negatives)} negative prompts for {num_prompts} prompt(s); give one for all "
            "or one per prompt")
    if not negatives:
        return [pipeline.NULL_PROMPT] * num_prompts
    if len(negatives) == 1:
        return negatives * num_prompts
    require(len(negatives) == num_prompts, "sampling.negative_prompts",
            f"{len(negatives)} negative prompts for {num_prompts} prompts; give one for all or "
            "one per prompt")
    return negatives


def read_request(config) -> Request:
    """The validated request of a pretrained run's config (one ConfigError line otherwise)."""
    p, s = config.pretrained, config.sampling
    path = str(p.get("path", "") or "")
    require(bool(path), "pretrained.path", "no checkpoint: give a Stable Diffusion directory "
            "in diffusers' layout, --config.pretrained.path=DIR")
    require(os.path.isdir(path), "pretrained.path", f"{path} is not a directory")
    dtype = choose("pretrained.dtype", str(p.get("dtype", "float32")), DTYPES)
    tiling = vae_tiling.check_tiling(p.get("vae_tile", 0), p.get("vae_tile_overlap", -1))
    task = choose("sampling.task", str(s.get("task", "none")), TASKS)
    check_timesteps(config, task)
    prompts = pipeline.parse_prompts(config)
    negatives = negative_prompts(s.get("negative_prompts", ""), len(prompts))
    w = pipeline.check_guidance(s.get("guidance_scale", 7.5), "sampling.guidance_scale")
    k = int(s.get("samples_per_prompt", 1))
    require(k >= 1, "sampling.samples_per_prompt", f"must be >= 1, got {k}")
    require(int(s.get("batch_size", 1)) >= 1, "sampling.batch_size", "must be >= 1")
    size = config.data.image_size
    require(isinstance(size, int) and size > 0, "data.image_size",
            f"must be a positive integer, got {size!r}")
    prompts = [q for q in prompts for _ in range(k)]
    negatives = [q for q in negatives for _ in range(k)]
    seed = int(s.get("seed", config.get("seed", 0)))
    seeds = [seed + i for i in range(len(prompts))]
    return Request(prompts, negatives, seeds, task, w, size, path, dtype, tiling)


def check_timesteps(config, task: str) -> str:
    """sampling.timesteps after the checks that need no checkpoint."""
    s = config.sampling
    kind = choose("sampling.timesteps", str(s.get("timesteps", "") or ""), TIMESTEPS)
    if kind == "diffusers":
        method = str(s.method)
        require(method in SCHEDULER_METHODS and (method != "dpm_solver++" or
                                                 bool(s.get("multistep", True))),
                "sampling.timesteps", f"'diffusers' needs sampling.method one of "
                f"{', '.join(SCHEDULER_METHODS)} (multistep: one step per UNet evaluation), "
                f"got {method!r}")
        require(task != "img2img", "sampling.timesteps",
                "'diffusers' is for sampling.task 'none' or 'inpaint' (img2img starts at "
                "sampling.strength on the solver's own grid)")
    return kind


# ---------------------------------------------------------------------------------------------
# The checkpoint
# ---------------------------------------------------------------------------------------------


def scheduler_times(path: str, steps: int) -> np.ndarray:
    """The time grid [steps + 1] of the checkpoint scheduler's discrete timesteps for `steps`
    steps (fast_sampling.discrete_times of pretrained.scheduler_timesteps)."""
    where = os.path.join(path, "scheduler", "scheduler_config.json")
    cfg = pretrained._json(where)
    try:
        timesteps, final = pretrained.scheduler_timesteps(cfg, int(steps), where)
    except ConfigError as e:
        raise ConfigError(f"sampling.timesteps='diffusers': {e}") from None
    sde, _ = pretrained.sde_from_scheduler(cfg, where)
    return fast_sampling.discrete_times(sde, timesteps, final)


def downsampling(path: str) -> tuple[int, int]:
    """(the autoencoder's, the UNet's) downsampling factors, read from the configs only."""
    unet_cfg, vae_cfg, _ = pretrained._components(path)
    return (2 ** (len(vae_cfg["block_out_channels"]) - 1),
            2 ** (len(unet_cfg["block_out_channels"]) - 1))


class SDRun(NamedTuple):
    """A loaded checkpoint ready to sample: sd (pretrained.StableDiffusion), unet (the module
    or a precision.CastModel computing in dtype), prediction_type, latent_shape (h, w, c), mesh;
    embed: jitted (params, ids) -> context; generators: the compiled ones by their settings;
    path: the checkpoint directory."""

    sd: pretrained.StableDiffusion
    unet: object
    dtype: object
    prediction_type: str
    latent_shape: tuple
    mesh: jax.sharding.Mesh
    embed: object
    generators: dict
    path: str = ""


# The last checkpoint loaded in this process, kept for the next --mode sample call (in-process
# callers sampling again skip the load and the compilation): {key: SDRun}.
_LOADED: dict = {}


def _checkpoint_key(request: Request, prediction: str) -> tuple:
    """What a loaded run depends on, including when its weights files last changed."""
    stamps = []
    for part in ("unet", "vae", "text_encoder", "scheduler"):
        folder = os.path.join(request.path, part)
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        stamps.append(tuple((n, os.path.getmtime(os.path.join(folder, n))) for n in names))
    return (os.path.abspath(request.path), request.dtype, prediction, request.image_size,
            tuple(stamps))


def load(config, request: Request) -> SDRun:
    """The checkpoint at request.path, after the size check (before the weights are read)."""
    f_vae, f_unet = downsampling(request.path)
    require(request.image_size % (f_vae * f_unet) == 0, "data.image_size",
            f"{request.image_size} is not divisible by {f_vae * f_unet} (the autoencoder's "
            f"{f_vae}x times the UNet's {f_unet}x downsampling)")
    prediction = str(config.pretrained.get("prediction_type", "") or "")
    if prediction:
        choose("pretrained.prediction_type", prediction, mutils.PREDICTION_TYPES)
    key = _checkpoint_key(request, prediction)
    if key in _LOADED:
        return _LOADED[key]
    _LOADED.clear()
    dtype = DTYPES[request.dtype]
    sd = pretrained.load_stable_diffusion(request.path, dtype)
    unet = sd.unet if dtype == jnp.float32 else precision.CastModel(sd.unet, dtype)
    side = request.image_size // f_vae
    embed = jax.jit(lambda p, ids: sd.text_encoder.apply({"params": p}, ids)[0].astype(
        jnp.float32))
    run = SDRun(sd, unet, dtype, prediction or sd.prediction_type,
                (side, side, sd.vae.embed_dim), run_lib.make_mesh(), embed, {}, request.path)
    _LOADED[key] = run
    return run


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def _task_sampler(config, run: SDRun, task: str, y, m):
    """sampler(rng, score_fn) -> (x [B, h, w, c], nfe) for the task on latents y with the
    latent mask m (1 = known; img2img without sampling.mask: None); on the checkpoint
    scheduler's timesteps with sampling.timesteps='diffusers'."""
    diffusers = check_timesteps(config, task) == "diffusers"
    if task == "none" and not diffusers:
        return sampling.get_sampler(config, run.sd.sde, y.shape)
    method, kw = tasks.sampler_kwargs(config)
    if diffusers:
        kw["times"] = scheduler_times(run.path, kw["steps"])
        require(kw["times"][-1] > 0 or method != "unipc", "sampling.timesteps",
                "'diffusers' timesteps of this checkpoint end at sigma = 0, where "
                "sampling.method='unipc' cannot step; choose 'ddim' or 'dpm_solver++'")
    if task == "none":
        return fast_sampling.get_fast_sampler(run.sd.sde, y.shape, method, **kw)
    if task == "inpaint":
        return controllable.get_inpaint_sampler(run.sd.sde, y, m, method, **kw)
    strength = float(config.sampling.get("strength", 0.75))
    return controllable.get_sdedit_sampler(run.sd.sde, y, strength, method, m, **kw)


def vae_factor(run: SDRun) -> int:
    """Image pixels per latent pixel (the autoencoder's downsampling)."""
    return 2 ** (len(run.sd.vae.ch_mult) - 1)


def make_generator(config, run: SDRun, task: str, use_mask: bool, tiling: tuple = (0, 0)):
    """A jitted (keys [b], ctx [b, L, D], null_ctx [b, L, D], w, y [b, h, w, c], m) -> (images
    [b, H, W, 3] in [0, 1], nfe): each image from its own key (vmapped one-image samplers, so
    an image depends on its seed only), its batch split over the devices when it divides;
    tiling: the VAE decode's (tile, overlap) in latent pixels ((0, 0): one pass)."""
    sd = run.sd
    one_shape = (1,) + run.latent_shape
    # bad sampler settings fail here, outside jit, with their one line
    _task_sampler(config, run, task, jnp.zeros(one_shape), jnp.ones(one_shape) if use_mask
                  else None)
    replicated = NamedSharding(run.mesh, P())

    def one(key, ctx, null_ctx, w, y, m, unet_params):
        score_fn = mutils.get_score_fn(sd.sde, run.unet, {"params": unet_params}, True,
                                       context=ctx[None], guidance_scale=w,
                                       null_context=null_ctx,
                                       prediction_type=run.prediction_type)
        sampler = _task_sampler(config, run, task, y[None], m[None] if use_mask else None)
        x, nfe = sampler(key, score_fn)
        return x[0], nfe

    @jax.jit
    def generate(keys, ctx, null_ctx, w, y, m, params):
        z, nfe = jax.vmap(one, in_axes=(0, 0, 0, None, 0, 0, None))(
            keys, ctx, null_ctx, w, y, m, params["unet"])
        decode = lambda z: sd.vae.apply({"params": params["vae"]}, z, method=sd.vae.decode)
        images = vae_tiling.tiled(decode, (z / sd.scale_factor).astype(run.dtype), *tiling, 1,
                                  vae_factor(run)).astype(jnp.float32)
        images = jnp.clip((images + 1.0) / 2.0, 0.0, 1.0)
        return jax.lax.with_sharding_constraint(images, replicated), jnp.max(nfe)

    return generate


def encode_prompts(run: SDRun, prompts: list[str]) -> jnp.ndarray:
    """CLIP context [n, L, D] (float32) of prompts."""
    ids = jnp.asarray(run.sd.tokenizer(list(prompts)))
    return run.embed(run.sd.params["text_encoder"], ids)


def encode_images(run: SDRun, images: np.ndarray, tiling: tuple = (0, 0)) -> np.ndarray:
    """Latents [n, h, w, c] = scale_factor * posterior mean of images [n, H, W, 3] in [0, 1];
    tiling: (tile, overlap) in latent pixels ((0, 0): one pass)."""
    sd = run.sd

    @jax.jit
    def encode(params, x):
        mean = lambda x: sd.vae.apply({"params": params}, x, method=sd.vae.encode).mean
        z = vae_tiling.tiled(mean, (2.0 * x - 1.0).astype(run.dtype), *tiling, vae_factor(run),
                             1)
        return z.astype(jnp.float32) * sd.scale_factor

    return np.asarray(encode(sd.params["vae"], jnp.asarray(images)))


def latent_masks(masks: np.ndarray, factor: int) -> np.ndarray:
    """Pixel masks [n, H, W, C] (1 = known) on the latent grid [n, H / f, W / f, 1]: a latent
    cell is known only when every pixel it covers is (text_tasks.latent_masks)."""
    _, h, w, _ = masks.shape
    return text_tasks.latent_masks(masks, (h // factor, w // factor, 1))


def task_inputs(config, run: SDRun, request: Request):
    """(pixel inputs [n, H, W, 3] or None, latents y [n, h, w, c], latent masks [n, h, w, c])
    of the request's images (sampling.input: a folder of PNGs or an .npz; one image for all
    prompts or one per prompt)."""
    n, size = len(request.prompts), request.image_size
    shape = (n,) + run.latent_shape
    if request.task == "none":
        return None, np.zeros(shape, np.float32), np.ones(shape, np.float32)
    src = str(config.sampling.get("input", "") or "")
    require(bool(src) and src != "test", "sampling.input",
            f"sampling.task={request.task!r} needs input images: a folder of PNGs or an .npz")
    images = tasks.load_inputs(config, (size, size, 3), n)
    require(len(images) in (1, n), "sampling.input",
            f"{len(images)} images for {n} samples; give one image for all or one per sample")
    latents = encode_images(run, images, request.vae_tiling)  # [1 or n, h, w, c]
    images = np.broadcast_to(images, (n,) + images.shape[1:]).copy()
    pixel = tasks._masks(config, (size, size, 3), n)  # all ones when the task has no mask
    masks = latent_masks(pixel, size // run.latent_shape[0])
    return (images, np.broadcast_to(latents, shape).copy(),
            np.broadcast_to(masks, shape).astype(np.float32))


def generate_images(config, run: SDRun, request: Request, y, m, params=None
                    ) -> tuple[np.ndarray, int]:
    """Images [n, H, W, 3] in [0, 1] of the request, in compiled batches of
    sampling.batch_size (the last padded), and the nfe per image; params: the checkpoint's
    {'unet', 'vae', 'text_encoder'} when None (a fine-tuned UNet otherwise)."""
    params = run.sd.params if params is None else params
    n = len(request.prompts)
    b = min(int(config.sampling.get("batch_size", 1)), n)
    use_mask = request.task == "inpaint" or (request.task == "img2img" and
                                               bool(tasks.mask_name(config, request.task)))
    settings = {k: v for k, v in config.sampling.items() if k not in REQUEST_FIELDS}
    key = (request.task, b, use_mask, request.vae_tiling,
           json.dumps(settings, sort_keys=True, default=str))
    if key not in run.generators:
        run.generators[key] = make_generator(config, run, request.task, use_mask,
                                             request.vae_tiling)
    generate = run.generators[key]
    both = encode_prompts(run, request.prompts + request.negatives)
    ctx, null_ctx = both[:n], both[n:]
    keys = jnp.stack([jax.random.PRNGKey(s) for s in request.seeds])
    split = NamedSharding(run.mesh, P("data")) if b % run.mesh.size == 0 else \
        NamedSharding(run.mesh, P())
    w = jnp.float32(request.guidance_scale)
    out, nfe = [], 0
    for start in range(0, n, b):
        idx = np.minimum(np.arange(start, start + b), n - 1)  # the last batch repeats its end
        batch = [jax.device_put(jnp.asarray(a)[idx], split) for a in (keys, ctx, null_ctx, y, m)]
        images, nfe = generate(*batch[:3], w, *batch[3:], params)
        out.append(run_lib.fetch(images)[: min(b, n - start)])
    return np.concatenate(out).astype(np.float32), int(run_lib.fetch(nfe))


# ---------------------------------------------------------------------------------------------
# --mode sample
# ---------------------------------------------------------------------------------------------


def _settings(config, request: Request, i: int, nfe: int, finetuned: int | None = None
              ) -> dict:
    s = config.sampling
    out = {"prompt": request.prompts[i], "negative_prompt": request.negatives[i],
           "seed": request.seeds[i], "guidance_scale": request.guidance_scale,
           "method": str(s.method), "steps": int(s.get("steps", 0) or 0), "nfe": nfe,
           "timesteps": str(s.get("timesteps", "") or ""), "vae_tile": request.vae_tiling[0],
           "image_size": request.image_size, "dtype": request.dtype,
           "checkpoint": os.path.abspath(request.path), "task": request.task,
           "finetuned_step": finetuned}
    if request.task != "none":
        out["input"] = str(s.get("input", ""))
        out["mask"] = tasks.mask_name(config, request.task)
        if request.task == "img2img":
            out["strength"] = float(s.get("strength", 0.75))
    return out


def write(config, workdir: str, request: Request, images, inputs, nfe: int,
          finetuned: int | None = None) -> str:
    """samples/<task>_<i>.png with <task>_<i>.json (its settings) beside each, and
    samples/samples_0.npz (or <task>_0.npz); returns the npz path."""
    from PIL import Image

    out = os.path.join(workdir, "samples")
    stem = "sd" if request.task == "none" else request.task
    path = os.path.join(out, "samples_0.npz" if request.task == "none" else f"{stem}_0.npz")
    if not run_lib.is_main_process():
        return path
    os.makedirs(out, exist_ok=True)
    for i, image in enumerate(images):
        name = os.path.join(out, f"{stem}_{i:04d}")
        Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(name + ".png")
        with open(name + ".json", "w") as f:
            json.dump(_settings(config, request, i, nfe, finetuned), f, indent=1)
    extra = {} if inputs is None else {"inputs": inputs}
    np.savez(path + ".tmp.npz", samples=images, prompts=np.asarray(request.prompts),
             negative_prompts=np.asarray(request.negatives), seeds=np.asarray(request.seeds),
             guidance_scale=np.float32(request.guidance_scale), nfe=nfe, **extra)
    os.replace(path + ".tmp.npz", path)
    return path


def sample(config, workdir: str) -> str:
    """--mode sample of a pretrained Stable Diffusion checkpoint: every check, then the
    checkpoint, then the images; returns the npz path. When workdir holds checkpoints of a
    fine-tuning run (`--mode train`, sd_finetune.py), the UNet is its latest EMA
    (pretrained.use_workdir=False samples the original checkpoint)."""
    import sd_finetune

    request = read_request(config)
    run = load(config, request)
    unet, step = sd_finetune.finetuned_unet(config, run.sd.params["unet"], run.mesh, workdir)
    params = None if unet is None else {**run.sd.params, "unet": unet}
    inputs, y, m = task_inputs(config, run, request)
    images, nfe = generate_images(config, run, request, jnp.asarray(y), jnp.asarray(m), params)
    return write(config, workdir, request, images, inputs, nfe, step)


def reject_mode(mode: str) -> None:
    """ConfigError for the modes a pretrained checkpoint does not have."""
    raise ConfigError(f"--mode {mode}: a pretrained Stable Diffusion run (pretrained.path) "
                      "trains (fine-tunes) and samples; it has no --mode " + mode)
