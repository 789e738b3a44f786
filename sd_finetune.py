"""Fine-tuning a pretrained Stable Diffusion 1.x / 2.x checkpoint (Rombach et al. 2022) on
captioned images with the text run's machinery (`pipeline.text_parts`): the checkpoint becomes a
`pipeline.TextRun` whose UNet is trained from the checkpoint's weights while its CLIP text
encoder and VAE stay frozen (captions embedded once, images encoded once to posterior moments),
with the checkpoint's own objective (epsilon or v prediction, discrete DDPM timesteps), caption
dropout to the empty prompt, EMA, the device mesh and orbax checkpoints of the train loop.
run_lib dispatches `--mode train` of a config with a `pretrained` section here; `--mode sample`
on the same workdir then samples its latest EMA UNet (`sd_pipeline.sample`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

import autoencoder_lib
import checkpointing
import pipeline
import run_lib
import sampling
import sd_pipeline
from models import pretrained
from models import utils as mutils
from utils import choose, require


class FrozenCLIP:
    """The checkpoint's CLIP text transformer seen as a frozen encoder of `pipeline.TextEncoder`:
    apply({'params': p}, ids [B, L], mask [B, L]) -> last hidden state [B, L, D] (float32).
    Stable Diffusion conditions on all 77 positions, so the mask is all ones and unused."""

    def __init__(self, module, hidden_size: int):
        self.module, self.hidden_size = module, hidden_size

    def apply(self, variables, ids, mask=None):
        del mask  # the causal CLIP transformer reads every position, padding included
        return self.module.apply(variables, ids)[0].astype(jnp.float32)


def text_encoder(sd: pretrained.StableDiffusion) -> pipeline.TextEncoder:
    """The checkpoint's tokenizer and CLIP encoder, frozen at its weights."""

    def tokenize(texts):
        ids = np.asarray(sd.tokenizer(list(texts)), np.int32)
        return ids, np.ones_like(ids)

    ids, _ = tokenize([pipeline.NULL_PROMPT])
    width = jax.eval_shape(lambda p: sd.text_encoder.apply({"params": p}, ids)[0],
                           sd.params["text_encoder"]).shape[-1]
    module = FrozenCLIP(sd.text_encoder, int(width))
    return pipeline.TextEncoder("sd_clip", module, tokenize, int(width),
                                sd.params["text_encoder"])


def build(config) -> tuple[pipeline.TextRun, pretrained.StableDiffusion]:
    """(the text run of the checkpoint at pretrained.path, the loaded checkpoint), after every
    check that needs no weights."""
    path = str(config.pretrained.get("path", "") or "")
    require(bool(path), "pretrained.path", "no checkpoint: give a Stable Diffusion directory "
            "in diffusers' layout, --config.pretrained.path=DIR")
    require(os.path.isdir(path), "pretrained.path", f"{path} is not a directory")
    require(str(config.data.get("dataset", "") or "") != "", "data.dataset",
            "fine-tuning needs captioned images: --config.data.dataset=image_folder "
            "--config.data.data_dir=DIR (images + metadata.jsonl)")
    run_lib.validate(config)
    require(0.0 <= float(config.training.get("cond_drop_prob", 0.1)) < 1.0,
            "training.cond_drop_prob", "must be in [0, 1)")
    require(int(config.data.num_channels) == 3, "data.num_channels",
            f"Stable Diffusion's autoencoder reads RGB, got {config.data.num_channels}")
    pipeline.check_guidance(config.sampling.get("guidance_scale", 7.5), "sampling.guidance_scale")
    size = config.data.image_size
    require(isinstance(size, int) and size > 0, "data.image_size",
            f"must be a positive integer, got {size!r}")
    f_vae, f_unet = sd_pipeline.downsampling(path)
    require(size % (f_vae * f_unet) == 0, "data.image_size",
            f"{size} is not divisible by {f_vae * f_unet} (the autoencoder's {f_vae}x times the "
            f"UNet's {f_unet}x downsampling)")
    prediction = str(config.pretrained.get("prediction_type", "") or "")
    if prediction:
        choose("pretrained.prediction_type", prediction, mutils.PREDICTION_TYPES)
    # float32 master weights whatever pretrained.dtype; training.compute_dtype runs bf16
    sd = pretrained.load_stable_diffusion(path, jnp.float32)
    side = size // f_vae
    shape = (side, side, int(sd.vae.embed_dim))
    codec = autoencoder_lib.Codec(sd.vae, sd.params["vae"], float(sd.scale_factor), shape, 0,
                                  path)
    sampling.get_sampler(config, sd.sde, (1,) + shape)  # sampler settings fail before training
    run = pipeline.TextRun(config, sd.sde, sd.unet, text_encoder(sd), codec, shape,
                           run_lib.make_mesh(), prediction or sd.prediction_type)
    return run, sd


def get_parts(config, workdir: str) -> run_lib.RunParts:
    """The train loop's parts: those of a latent text run, starting from the checkpoint's UNet
    (the only trained parameters: {'unet': ...})."""
    run, sd = build(config)
    parts = pipeline.text_parts(run, workdir)
    unet = sd.params["unet"]
    # the checkpoint enters the initialiser as an argument (make_params only gives its shapes
    # to eval_shape), so an 860M-parameter UNet is not compiled in as constants
    return parts._replace(make_params=lambda: {"unet": unet}, initial_params={"unet": unet})


def finetuned_unet(config, unet_params, mesh, workdir: str):
    """(EMA UNet parameters, step) of the latest checkpoint of a fine-tuning run in `workdir`,
    cast to the dtype of `unet_params` (the checkpoint's, whose tree they share); (None, None)
    when workdir holds no checkpoint or pretrained.use_workdir is False."""
    if not bool(config.pretrained.get("use_workdir", True)):
        return None, None
    folder = checkpointing.checkpoint_dir(workdir)
    if not os.path.isdir(folder) or not os.listdir(folder):
        return None, None
    ema, step = run_lib.restore_ema(
        lambda: {"unet": jax.tree.map(lambda a: a.astype(jnp.float32), unet_params)},
        run_lib.get_optimizer(config), mesh, workdir)
    ema = jax.tree.map(lambda e, a: e.astype(a.dtype), ema["unet"], unet_params)
    return ema, int(step)
