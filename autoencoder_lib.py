"""The autoencoder run of latent diffusion (Rombach et al. 2022, sec. 3.1): its training parts,
reconstruction grids and PSNR, the latent scale factor (1 / std of training latents), and
loading a trained autoencoder run (`Codec`) for the latent runs that name it.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import datasets
import input_pipeline
import losses
import models
import run_lib
import visualize
from models import autoencoder as autoencoder_mod
from utils import ConfigError, apply_in_batches, require

INFO_FILE = "autoencoder.json"  # in the autoencoder's workdir: scale factor, latent shape, PSNR
NUM_RECONSTRUCTIONS = 16  # test images shown in each reconstruction grid
SCALE_IMAGES = 2000  # training images whose latents set the scale factor
TRAIN_COMMAND = "python main.py --mode train --config configs/shapes/autoencoder_kl.py"


def image_source(config, split: str) -> datasets.ImageSource:
    """One split of the run's image data (`data.holdout` applies to shapes)."""
    d = config.data
    holdout = [tuple(p) for p in d.get("holdout", ())]
    return datasets.get_dataset(d.dataset, split, d.image_size, d.num_channels,
                                d.get("data_dir"), holdout=holdout)


def read_images(source: datasets.ImageSource, indices) -> np.ndarray:
    """uint8 images [n, H, W, C] of the given indices of `source`."""
    return np.stack([source[int(i)][0] for i in indices])


def to_model_space(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1], the autoencoder's input space."""
    return images_uint8.astype(np.float32) / 127.5 - 1.0


def to_unit(x) -> np.ndarray:
    """[-1, 1] model space -> float32 [0, 1], clipped."""
    return np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio (dB) of images in [0, 1], averaged over images."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2,
                  axis=tuple(range(1, np.ndim(a))))
    return float(np.mean(10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def discriminator(config):
    """The PatchGAN discriminator, or None when autoencoder.disc_weight is 0."""
    a = config.autoencoder
    if float(a.get("disc_weight", 0.0)) <= 0:
        return None
    return autoencoder_mod.PatchDiscriminator(ndf=int(a.get("disc_ndf", 64)),
                                              n_layers=int(a.get("disc_layers", 3)),
                                              norm_num_groups=int(a.get("disc_groups", 32)))


def params_fn(config, ae, disc):
    """() -> initial {'ae', 'logvar' (scalar, 0), 'disc' (when used)} parameters."""
    s = config.data.image_size
    x = jnp.zeros((1, s, s, config.data.num_channels))

    def make():
        k_ae, k_post, k_disc = jax.random.split(run_lib._key(config, run_lib.STREAM_INIT), 3)
        params = {"ae": ae.init({"params": k_ae, "posterior": k_post}, x)["params"],
                  "logvar": jnp.full((), config.autoencoder.get("logvar_init", 0.0), jnp.float32)}
        if disc is not None:
            params["disc"] = disc.init(k_disc, x)["params"]
        return params

    return make


def _check(config) -> None:
    t, a = config.training, config.autoencoder
    for key in ("batch_size", "n_iters", "log_freq", "snapshot_freq",
                "snapshot_freq_for_preemption", "n_jitted_steps"):
        require(int(t[key]) >= 1, f"training.{key}", f"must be >= 1, got {t[key]}")
    require(t.batch_size % jax.device_count() == 0, "training.batch_size",
            f"{t.batch_size} is not divisible by the {jax.device_count()} devices")
    require(float(a.get("kl_weight", 1e-6)) >= 0, "autoencoder.kl_weight", "must be >= 0")
    require(float(a.get("scale_factor", 0.0)) >= 0, "autoencoder.scale_factor",
            "must be > 0, or 0 to compute 1 / std of the training latents")
    require(config.data.dataset in datasets.IMAGE_DATASETS, "data.dataset",
            f"an autoencoder needs image data, one of {', '.join(datasets.IMAGE_DATASETS)}")


def get_parts(config, workdir: str) -> run_lib.RunParts:
    """Training parts of an autoencoder run (config with an `autoencoder` section)."""
    _check(config)
    a = config.autoencoder
    ae, disc = models.get_autoencoder(config), discriminator(config)
    source, test = image_source(config, "train"), image_source(config, "test")
    mesh = run_lib.make_mesh()
    optimizer = run_lib.get_optimizer(config)
    step_fn = losses.get_autoencoder_step_fn(
        ae, optimizer, config.model.ema_rate, a.get("rec_loss", "l1"),
        float(a.get("kl_weight", 1e-6)), disc, float(a.get("disc_weight", 0.0)),
        int(a.get("disc_start", 0)))
    batches = lambda start: input_pipeline.image_batches(
        source, config.training.batch_size, config.seed, start, mesh,
        datasets.get_data_scaler(True), bool(config.data.get("random_flip", False)), False)
    shown = to_model_space(read_images(test, range(min(NUM_RECONSTRUCTIONS, len(test)))))
    recon_fn = jax.jit(lambda p, x: ae.apply({"params": p["ae"]}, x, sample_posterior=False)[0])

    def snapshot(params, step, writer):
        recon = to_unit(run_lib.fetch(recon_fn(params, shown)))
        value = write_reconstructions(workdir, step, to_unit(shown), recon, writer)
        if writer is not None:
            writer.add_scalar("psnr", value, step)

    def finish(state, workdir):
        write_info(config, workdir, ae, state.ema_params, run_lib.fetch(state.step), source,
                   shown, recon_fn)

    return run_lib.RunParts(params_fn(config, ae, disc), optimizer, step_fn, batches, snapshot,
                            mesh, finish)


def write_reconstructions(workdir: str, step: int, images, recon, writer=None) -> float:
    """samples/reconstructions_<step>.png: originals (top) over reconstructions; returns PSNR."""
    value = psnr(images, recon)
    if not run_lib.is_main_process():
        return value
    out = os.path.join(workdir, "samples")
    os.makedirs(out, exist_ok=True)
    grid = visualize.save_image_grid(os.path.join(out, f"reconstructions_{step}.png"),
                                     np.concatenate([images, recon]), ncol=len(images),
                                     scale=2)
    if writer is not None:
        writer.add_image("reconstructions", grid, step, dataformats="HWC")
    return value


def encode_moments(ae, params_ae, images_model, batch_size: int = 250):
    """Posterior mean and logvar [n, h, w, c] of images in [-1, 1], in jitted batches."""
    fn = jax.jit(lambda x: (lambda q: (q.mean, q.logvar))(
        ae.apply({"params": params_ae}, x, method=ae.encode)))
    return apply_in_batches(fn, images_model, batch_size)


def write_info(config, workdir, ae, params, step, source, shown, recon_fn) -> dict:
    """Compute (or take autoencoder.scale_factor) the latent scale factor and write
    autoencoder.json with it, the latent shape and the test PSNR."""
    n = min(SCALE_IMAGES, len(source))
    x = to_model_space(read_images(source, range(n)))
    mean, logvar = encode_moments(ae, run_lib.fetch_tree(params["ae"]), x)
    z = mean + np.exp(0.5 * logvar) * np.random.default_rng(0).standard_normal(mean.shape)
    given = float(config.autoencoder.get("scale_factor", 0.0))
    info = {
        "scale_factor": given if given > 0 else float(1.0 / np.std(z)),
        "scale_factor_from": "config" if given > 0 else f"1/std of {n} training latents",
        "latent_shape": list(mean.shape[1:]),
        "psnr_test": psnr(to_unit(shown), to_unit(run_lib.fetch(recon_fn(params, shown)))),
        "step": int(step),
    }
    if run_lib.is_main_process():
        path = os.path.join(workdir, INFO_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(info, f, indent=2)
        os.replace(path + ".tmp", path)
    return info


class Codec(NamedTuple):
    """A trained autoencoder run, frozen: encode images to scaled latents and decode back.

    ae: the module. params: its EMA parameters. scale_factor: z = scale_factor * latent.
    latent_shape: (h, w, c). step: the checkpoint step. workdir: where it was read.
    """

    ae: object
    params: dict
    scale_factor: float
    latent_shape: tuple
    step: int
    workdir: str

    def decode(self, z):
        """Scaled latents [B, h, w, c] -> images [B, H, W, C] in [0, 1] (traceable)."""
        x = self.ae.apply({"params": self.params}, z / self.scale_factor, method=self.ae.decode)
        return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def read_run_config(workdir: str, key: str) -> ml_collections.ConfigDict:
    """The resolved config.json of a run, or a ConfigError naming `key`."""
    path = os.path.join(workdir or "", "config.json")
    if not workdir or not os.path.exists(path):
        raise ConfigError(f"{key}={workdir!r}: no run there (no {path}); train one first: "
                          f"{TRAIN_COMMAND} --workdir {workdir or 'WORKDIR'}")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def load(workdir: str, key: str = "latent.autoencoder_workdir") -> Codec:
    """The trained autoencoder of `workdir` (its config, latest checkpoint, autoencoder.json).

    Raises:
      ConfigError naming `key`: no run, not an autoencoder run, or not trained to the end.
    """
    config = read_run_config(workdir, key)
    require("autoencoder" in config, key, f"{workdir} is not an autoencoder run (its config "
            "has no autoencoder section)")
    info_path = os.path.join(workdir, INFO_FILE)
    require(os.path.exists(info_path), key, f"{workdir} has no {INFO_FILE}: its training has "
            f"not finished; finish it with {TRAIN_COMMAND} --workdir {workdir}")
    with open(info_path) as f:
        info = json.load(f)
    ae, disc = models.get_autoencoder(config), discriminator(config)
    params, step = run_lib.restore_ema(params_fn(config, ae, disc),
                                       run_lib.get_optimizer(config), run_lib.make_mesh(),
                                       workdir)
    return Codec(ae, run_lib.fetch_tree(params["ae"]), float(info["scale_factor"]),
                 tuple(info["latent_shape"]), int(step), workdir)
