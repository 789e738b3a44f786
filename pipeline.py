"""Text-conditioned runs, in pixels or in the latent space of a trained autoencoder (Rombach et
al. 2022): how a captioned batch becomes model input (tokens, cached latents, caption dropout
for classifier-free guidance, Ho & Salimans 2021) and how prompts become images.
run_lib keeps the loops; this module supplies a text run's parts to them.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import autoencoder_lib
import datasets
import input_pipeline
import losses
import models
import precision
import run_lib
import sampling
import sde_lib
import visualize
from models import text_encoder as text_mod
from models import utils as mutils
from utils import ConfigError, choose, require

RUN_KINDS = ("score", "autoencoder", "text", "pretrained")
TEXT_ENCODERS = ("clip", "minilm")
NULL_PROMPT = ""  # the unconditional half of classifier-free guidance


def run_kind(config) -> str:
    """'pretrained' (a `pretrained` section: a Stable Diffusion checkpoint, `sd_pipeline`),
    'text' (a `text` section), 'autoencoder' (an `autoencoder` section) or 'score'."""
    if "pretrained" in config:
        return "pretrained"
    if "text" in config:
        return "text"
    return "autoencoder" if "autoencoder" in config else "score"


def get_parts(config, workdir: str) -> run_lib.RunParts:
    """Training parts of an autoencoder or a text run."""
    if run_kind(config) == "pretrained":  # fine-tuning a Stable Diffusion checkpoint
        import sd_finetune

        return sd_finetune.get_parts(config, workdir)
    if run_kind(config) == "autoencoder":
        return autoencoder_lib.get_parts(config, workdir)
    return text_parts(build(config), workdir)


# ---------------------------------------------------------------------------------------------
# Text encoders: trained jointly (CLIP-style, byte tokens) or frozen (MiniLM)
# ---------------------------------------------------------------------------------------------


class TextEncoder(NamedTuple):
    """name: 'clip' | 'minilm'. module: the Flax module. tokenize: list[str] -> (ids, mask)
    [B, L]. width: D of its token embeddings. frozen: MiniLM's parameters (None: trained)."""

    name: str
    module: object
    tokenize: callable
    width: int
    frozen: dict | None

    def embed(self, text_params, ids, mask):
        """Token embeddings [B, L, D] (traceable); text_params is ignored when frozen."""
        if self.frozen is None:
            return self.module.apply({"params": text_params}, ids, mask)[0]
        return self.module.apply({"params": self.frozen}, ids, mask).astype(jnp.float32)


def text_encoder(config) -> TextEncoder:
    """The configured text encoder (`text.encoder`), with its tokenizer."""
    t = config.text
    name = choose("text.encoder", t.get("encoder", "clip"), TEXT_ENCODERS)
    length = int(t.get("max_length", 77))
    if name == "clip":
        module = models.get_text_encoder(config)
        require(module.max_length >= length, "text.max_length",
                f"{length} exceeds the encoder's positions ({module.max_length})")
        return TextEncoder(name, module, models.get_tokenizer(config), module.width, None)
    module, params, tokenize = text_mod.load_minilm()
    return TextEncoder(name, module, lambda texts: tokenize(list(texts), length),
                       module.hidden_size, params)


# ---------------------------------------------------------------------------------------------
# The run: SDE, UNet, text encoder and (for latent runs) the frozen autoencoder
# ---------------------------------------------------------------------------------------------


class TextRun(NamedTuple):
    """config, sde, unet, text (TextEncoder), codec (autoencoder_lib.Codec or None: pixels),
    shape: one model-space example (h, w, c), mesh; prediction_type: what the UNet predicts
    ('epsilon', or 'v_prediction' for a fine-tuned Stable Diffusion 2.x checkpoint)."""

    config: object
    sde: sde_lib.SDE
    unet: object
    text: TextEncoder
    codec: autoencoder_lib.Codec | None
    shape: tuple
    mesh: jax.sharding.Mesh
    prediction_type: str = "epsilon"

    def to_images(self, x):
        """Model-space samples -> images in [0, 1] (decoded for latent runs; traceable)."""
        if self.codec is None:
            return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
        return self.codec.decode(x)


def build(config) -> TextRun:
    """Validate a text run's config and load its parts (the autoencoder of a latent run)."""
    run_lib.validate(config)
    require(0.0 <= float(config.training.get("cond_drop_prob", 0.1)) < 1.0,
            "training.cond_drop_prob", "must be in [0, 1)")
    check_guidance(config.sampling.get("guidance_scale", 1.0), "sampling.guidance_scale")
    ae_dir = config.get("latent", {}).get("autoencoder_workdir", "") if "latent" in config \
        else ""
    codec = autoencoder_lib.load(ae_dir) if ae_dir else None
    if codec is None:
        s, c = config.data.image_size, config.data.num_channels
        shape = (s, s, c)
    else:
        shape = tuple(codec.latent_shape)
    unet = models.get_model(config)
    out = int(getattr(unet, "out_channels", 0) or 0)
    require(out in (0, shape[-1]), "model.out_channels",
            f"{out} does not match the {'latent' if codec else 'image'} channels {shape[-1]} "
            f"({'latent.autoencoder_workdir=' + ae_dir if codec else 'data.num_channels'})")
    text = text_encoder(config)
    require(int(config.model.context_dim) == text.width, "model.context_dim",
            f"{config.model.context_dim} does not match the width {text.width} of "
            f"text.encoder={text.name!r}")
    sde = sde_lib.get_sde(config)
    sampling.get_sampler(config, sde, (1,) + shape)  # sampler settings fail before training
    return TextRun(config, sde, unet, text, codec, shape, run_lib.make_mesh())


def check_guidance(w, key: str) -> float:
    """A guidance scale >= 0, or a ConfigError naming `key`."""
    require(float(w) >= 0, key, f"must be >= 0 (0: unconditional, 1: conditional), got {w}")
    return float(w)


def make_params_fn(run: TextRun):
    """() -> initial {'unet', 'text' (trained encoders only)} parameters."""
    ids, mask = run.text.tokenize([NULL_PROMPT])

    def make():
        k_unet, k_text, k_drop = jax.random.split(run_lib._key(run.config, run_lib.STREAM_INIT),
                                                  3)
        ctx = jnp.zeros((1, ids.shape[1], run.text.width))
        unet = run.unet.init({"params": k_unet, "dropout": k_drop}, jnp.zeros((1,) + run.shape),
                             jnp.ones((1,)), context=ctx, context_mask=jnp.asarray(mask))
        params = {"unet": unet["params"]}
        if run.text.frozen is None:
            params["text"] = run.text.module.init(k_text, jnp.asarray(ids),
                                                  jnp.asarray(mask))["params"]
        return params

    return make


# ---------------------------------------------------------------------------------------------
# Training: tables of cached latents / pixels and captions, caption dropout in the loss
# ---------------------------------------------------------------------------------------------


def training_tables(run: TextRun, source: datasets.ImageSource) -> tuple[dict, dict]:
    """(per-example tables, per-caption lookups) for `input_pipeline.table_batches`.

    Examples: 'x' (posterior moments [N, h, w, 2c] of the frozen encoder, computed once, or
    uint8 pixels) and 'caption' (int32 index of its caption). Lookups by caption: 'ids' and
    'mask' (trained encoder) or 'context' (float16 MiniLM embeddings, computed once) and 'mask'.
    """
    require(source.captions is not None, "data.dataset",
            f"{source.name!r} has no captions; a text run needs captioned images "
            "('shapes', 'digits_captioned', or an image folder with metadata.jsonl)")
    images = autoencoder_lib.read_images(source, range(len(source)))
    if run.codec is None:
        x = images
    else:
        mean, logvar = autoencoder_lib.encode_moments(
            run.codec.ae, run.codec.params, autoencoder_lib.to_model_space(images))
        x = np.concatenate([mean, logvar], axis=-1)
    unique, caption = np.unique(np.asarray(source.captions, dtype=object), return_inverse=True)
    ids, mask = run.text.tokenize([str(c) for c in unique])
    lookups = {"mask": mask.astype(np.int32)}
    if run.text.frozen is None:
        lookups["ids"] = ids.astype(np.int32)
    else:
        from models import minilm

        hidden, _ = minilm.embed_captions(run.text.module, run.text.frozen,
                                          lambda texts, n: run.text.tokenize(texts),
                                          list(unique), ids.shape[1])
        lookups["context"] = hidden.astype(np.float16)
    return {"x": x, "caption": caption.astype(np.int32)}, lookups


def _null_condition(run: TextRun):
    """Token ids / embeddings of the empty prompt: (ids [1, L], mask [1, L], context or None)."""
    ids, mask = run.text.tokenize([NULL_PROMPT])
    ctx = None if run.text.frozen is None else run.text.embed(None, jnp.asarray(ids),
                                                              jnp.asarray(mask))
    return jnp.asarray(ids), jnp.asarray(mask), ctx


def get_text_loss_fn(run: TextRun, train: bool = True):
    """loss_fn(rng, params, batch) -> [B]: the configured score objective on (latent) x with
    the caption's tokens in context, the caption replaced by the empty prompt with probability
    training.cond_drop_prob."""
    t = run.config.training
    unet = precision.with_compute_dtype(run.unet, t.get("compute_dtype", "float32")
                                        if train else "float32")
    base = losses.get_loss_fn(run.sde, unet, train, t.method, t.continuous, t.reduce_mean,
                              t.likelihood_weighting, t.get("P_mean", -1.2), t.get("P_std", 1.2),
                              prediction_type=run.prediction_type)
    p_drop = float(t.get("cond_drop_prob", 0.1)) if train else 0.0
    null_ids, null_mask, null_ctx = _null_condition(run)
    scale = 1.0 if run.codec is None else run.codec.scale_factor

    def loss_fn(rng, params, batch):
        r_drop, r_z, r_loss = jax.random.split(rng, 3)
        x = batch["x"]
        if run.codec is None:
            x = x.astype(jnp.float32) / 127.5 - 1.0
        else:
            mean, logvar = jnp.split(x, 2, axis=-1)
            x = scale * (mean + jnp.exp(0.5 * logvar) * jax.random.normal(r_z, mean.shape))
        drop = jax.random.uniform(r_drop, (x.shape[0],)) < p_drop
        mask = jnp.where(drop[:, None], null_mask, batch["mask"])
        if run.text.frozen is None:
            ids = jnp.where(drop[:, None], null_ids, batch["ids"])
            ctx = run.text.embed(params["text"], ids, mask)
        else:
            ctx = jnp.where(drop[:, None, None], null_ctx, batch["context"].astype(jnp.float32))
        return base(r_loss, params["unet"], {"x": x, "context": ctx, "context_mask": mask})

    return loss_fn


def text_parts(run: TextRun, workdir: str) -> run_lib.RunParts:
    """The train loop's parts for a text run."""
    config = run.config
    source = autoencoder_lib.image_source(config, "train")
    tables, lookups = training_tables(run, source)
    optimizer = run_lib.get_optimizer(config)
    step_fn = losses.get_step_fn(get_text_loss_fn(run), optimizer, config.model.ema_rate,
                                 bool(config.model.get("ema_warmup", False)))
    batches = lambda start: input_pipeline.table_batches(
        tables, config.training.batch_size, config.seed, run.mesh, lookups=lookups,
        lookup_key="caption")
    prompts = snapshot_prompts(config)
    sampler = TextSampler(run, int(config.sampling.batch_size))
    w = float(config.sampling.get("guidance_scale", 1.0))

    def snapshot(params, step, writer):
        rng = jax.random.fold_in(run_lib._key(config, run_lib.STREAM_SAMPLE), step)
        images = sampler(rng, params, prompts, w)
        write_text_samples(workdir, step, images, prompts, w, writer)

    return run_lib.RunParts(make_params_fn(run), optimizer, step_fn, batches, snapshot,
                            run.mesh)


# ---------------------------------------------------------------------------------------------
# Sampling from prompts
# ---------------------------------------------------------------------------------------------


def prompt_context(run: TextRun, embed, params, prompts):
    """(context [n, L, D], mask [n, L]) of prompts: the run's tokenizer, then `embed` (the
    jitted run.text.embed) with the run's text parameters."""
    ids, mask = run.text.tokenize(list(prompts))
    ids, mask = jnp.asarray(ids), jnp.asarray(mask)
    return embed(params.get("text"), ids, mask), mask


class TextSampler:
    """Images from prompts with classifier-free guidance: a jitted generator of `batch_size`
    samples per call, compiled once and shared by every prompt list and guidance scale.

    Call as sampler(rng, params, prompts, guidance_scale) -> (images [len(prompts), H, W, C]
    in [0, 1]); batch i of the prompts uses fold_in(rng, i).
    """

    def __init__(self, run: TextRun, batch_size: int, make_sampler=None):
        self.run, self.batch_size = run, batch_size
        shape = (batch_size,) + run.shape
        sampler = make_sampler(shape) if make_sampler else sampling.get_sampler(
            run.config, run.sde, shape)
        continuous = bool(run.config.training.continuous)
        self.null_ids, self.null_mask, _ = _null_condition(run)
        replicated = NamedSharding(run.mesh, P())
        self._codec_params = None if run.codec is None else run.codec.params

        @jax.jit
        def generate(rng, params, ctx, mask, null_ctx, null_mask, w, ae_params):
            score_fn = mutils.get_score_fn(run.sde, run.unet, {"params": params["unet"]},
                                           continuous, context=ctx, context_mask=mask,
                                           guidance_scale=w, null_context=null_ctx,
                                           null_context_mask=null_mask,
                                           prediction_type=run.prediction_type)
            x, nfe = sampler(rng, score_fn)
            codec = None if run.codec is None else run.codec._replace(params=ae_params)
            images = run._replace(codec=codec).to_images(x)
            return jax.lax.with_sharding_constraint(images, replicated), nfe

        self._generate = generate
        self._embed = jax.jit(run.text.embed)
        self.nfe = None

    def context(self, params, prompts):
        """(context [n, L, D], mask [n, L]) of prompts under the run's text encoder."""
        return prompt_context(self.run, self._embed, params, prompts)

    def __call__(self, rng, params, prompts, guidance_scale) -> np.ndarray:
        prompts = list(prompts)
        require(len(prompts) > 0, "sampling.prompts", "the prompt list is empty")
        w = jnp.float32(check_guidance(guidance_scale, "sampling.guidance_scale"))
        null_ctx, null_mask = self.context(params, [NULL_PROMPT])
        out = []
        b = self.batch_size
        for i, start in enumerate(range(0, len(prompts), b)):
            chunk = prompts[start : start + b]
            padded = chunk + [chunk[-1]] * (b - len(chunk))
            ctx, mask = self.context(params, padded)
            x, nfe = self._generate(jax.random.fold_in(rng, i), params, ctx, mask, null_ctx,
                                    null_mask, w, self._codec_params)
            self.nfe = int(run_lib.fetch(nfe))
            out.append(run_lib.fetch(x)[: len(chunk)])
        return np.concatenate(out).astype(np.float32)


def parse_prompts(config) -> list[str]:
    """sampling.prompts ('a; b; ...') or the lines of sampling.prompts_file; ConfigError if
    neither gives a prompt."""
    s = config.sampling
    path = s.get("prompts_file", "")
    if path:
        require(os.path.exists(path), "sampling.prompts_file", f"{path} does not exist")
        with open(path) as f:
            prompts = [ln.strip() for ln in f if ln.strip()]
    else:
        prompts = [p.strip() for p in str(s.get("prompts", "")).split(";") if p.strip()]
    require(len(prompts) > 0, "sampling.prompts" if not path else "sampling.prompts_file",
            "no prompts: give --config.sampling.prompts='a red circle;a blue square' or a "
            "file of one prompt per line")
    return prompts


def snapshot_prompts(config) -> list[str]:
    """Prompts of the train-time sample grids: sampling.prompts if given, else the first
    sampling.num_samples distinct captions of the test split."""
    if str(config.sampling.get("prompts", "")).strip() or config.sampling.get("prompts_file"):
        return parse_prompts(config)
    captions = autoencoder_lib.image_source(config, "test").captions
    unique = list(dict.fromkeys(captions))
    return unique[: int(config.sampling.num_samples)]


def write_text_samples(workdir, step, images, prompts, guidance_scale, writer=None,
                       name: str | None = None) -> str:
    """samples/samples_<step>.npz (keys samples, prompts, guidance_scale) and a PNG grid with
    each image's prompt under it; returns the npz path."""
    out = os.path.join(workdir, "samples")
    path = os.path.join(out, f"{name or f'samples_{step}'}.npz")
    if not run_lib.is_main_process():
        return path
    os.makedirs(out, exist_ok=True)
    np.savez(path + ".tmp.npz", samples=images, prompts=np.asarray(prompts),
             guidance_scale=np.float32(guidance_scale))
    os.replace(path + ".tmp.npz", path)
    grid = visualize.save_labelled_grid(path[:-4] + ".png", images, prompts,
                                        scale=max(1, -(-run_lib.GRID_MIN_SIDE
                                                       // images.shape[1])) * 2)
    if writer is not None:
        writer.add_image("samples", grid, step, dataformats="HWC")
    return path


def load(config, workdir: str, step: int | None = None):
    """(run, EMA params, step) of a trained text run."""
    run = build(config)
    params, step = run_lib.restore_ema(make_params_fn(run), run_lib.get_optimizer(config),
                                       run.mesh, workdir, step)
    return run, params, step


def sample(config, workdir: str) -> str:
    """--mode sample for a text run: images of sampling.prompts (each sampling.samples_per_prompt
    times) at sampling.guidance_scale; returns the npz path."""
    prompts = parse_prompts(config)
    w = check_guidance(config.sampling.get("guidance_scale", 1.0), "sampling.guidance_scale")
    run, params, step = load(config, workdir)
    k = int(config.sampling.get("samples_per_prompt", 1))
    require(k >= 1, "sampling.samples_per_prompt", f"must be >= 1, got {k}")
    prompts = [p for p in prompts for _ in range(k)]
    sampler = TextSampler(run, min(int(config.sampling.batch_size), len(prompts)))
    images = sampler(run_lib._key(config, run_lib.STREAM_SAMPLE), params, prompts, w)
    return write_text_samples(workdir, step, images, prompts, w)


def is_text_run(config) -> bool:
    return run_kind(config) == "text"


def reject_mode(config, mode: str) -> None:
    """ConfigError for modes an autoencoder run or a pretrained checkpoint does not have."""
    if run_kind(config) == "pretrained" and mode != "sample":
        import sd_pipeline

        sd_pipeline.reject_mode(mode)
    if run_kind(config) == "autoencoder":
        raise ConfigError(f"--mode {mode}: an autoencoder run has reconstructions and PSNR "
                          "(written by --mode train), not samples")
