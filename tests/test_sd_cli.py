"""--mode sample on a pretrained Stable Diffusion directory (sd_pipeline.py) with the tiny SD 1.x
and 2.x checkpoints of tests/data/sd_tiny at 32x32: PNGs with their settings, seeds per image,
negative prompts as the unconditional half of guidance, img2img and inpainting in latent space,
and bad input stopping with one line before anything is written.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

import run_lib
import sd_pipeline
from configs.sd import sd15
from models import pretrained
from tests import image_runs
from utils import ConfigError

DATA = os.path.join(os.path.dirname(__file__), "data", "sd_tiny")
SD1, SD2 = os.path.join(DATA, "sd1"), os.path.join(DATA, "sd2")
BASE = {"pretrained.path": SD1, "data.image_size": 32, "sampling.steps": 4,
        "sampling.batch_size": 2, "sampling.prompts": "a red fox;a blue car",
        "sampling.negative_prompts": "blurry"}


def _config(family=sd15, **updates):
    updates = {k.replace("__", "."): v for k, v in updates.items()}
    return run_lib.override(family.get_config(), {**BASE, **updates})


def _sample(workdir, family=sd15, **updates) -> dict:
    path = run_lib.sample(_config(family, **updates), str(workdir))
    with np.load(path) as f:
        return dict(f)


def _picture() -> np.ndarray:
    """A smooth 32x32 RGB input image in [0, 1] (uint8 steps)."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    return np.round(np.stack([xx, yy, 0.5 * (xx + yy)], -1) * 255) / 255.0


CLI = ["--mode=sample", "--config.data.image_size=32", "--config.sampling.steps=4",
       "--config.sampling.prompts=a red fox;a blue car",
       "--config.sampling.negative_prompts=blurry", "--config.sampling.batch_size=2"]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """main.py runs in subprocesses, started first so that they compile beside the in-process
    tests: {name: (workdir, process)}."""
    root = tmp_path_factory.mktemp("sd_cli")
    picture = str(root / "input.npz")
    np.savez(picture, images=np.round(_picture() * 255).astype(np.uint8)[None])
    sd1 = ["--config=configs/sd/sd15.py", f"--config.pretrained.path={SD1}"]
    runs = {
        "bfloat16": [*sd1, "--config.pretrained.dtype=bfloat16"],
        "sd2": ["--config=configs/sd/sd21.py", f"--config.pretrained.path={SD2}"],
        "inpaint": [*sd1, "--config.sampling.task=inpaint", f"--config.sampling.input={picture}"],
        "img2img": [*sd1, "--config.sampling.task=img2img", f"--config.sampling.input={picture}",
                    "--config.sampling.strength=0.5", "--config.sampling.mask=left_half"],
        "bad_guidance": [*sd1, "--config.sampling.guidance_scale=-2"],
    }
    # bfloat16 on two devices: each batch of two is split over them
    return {name: (root / name, image_runs.start([*extra, *CLI, f"--workdir={root / name}"],
                                                 root, devices=2 if name == "bfloat16" else 1))
            for name, extra in runs.items()}


@pytest.fixture(scope="module")
def base(tmp_path_factory, cli):
    workdir = tmp_path_factory.mktemp("sd_base")
    return workdir, _sample(workdir)


def test_pngs_settings_and_npz(base):
    workdir, out = base
    assert out["samples"].shape == (2, 32, 32, 3) and out["samples"].dtype == np.float32
    assert 0.0 <= out["samples"].min() and out["samples"].max() <= 1.0
    assert out["samples"].std() > 1e-3
    assert list(out["prompts"]) == ["a red fox", "a blue car"]
    assert list(out["negative_prompts"]) == ["blurry", "blurry"]
    assert list(out["seeds"]) == [0, 1]
    from PIL import Image

    for i, prompt in enumerate(["a red fox", "a blue car"]):
        stem = os.path.join(workdir, "samples", f"sd_{i:04d}")
        with open(stem + ".json") as f:
            settings = json.load(f)
        assert settings["prompt"] == prompt and settings["negative_prompt"] == "blurry"
        assert settings["seed"] == i and settings["guidance_scale"] == 7.5
        assert settings["steps"] == 4 and settings["method"] == "dpm_solver++"
        png = np.asarray(Image.open(stem + ".png"))
        assert png.shape == (32, 32, 3)
        np.testing.assert_array_equal(png, np.round(out["samples"][i] * 255).astype(np.uint8))


def test_image_depends_on_its_seed_only(base, tmp_path):
    _, out = base
    # image 1 of the base run (seed 0 + 1) again, first in its batch
    again = _sample(tmp_path, sampling__seed=1, sampling__prompts="a blue car;a red fox")
    assert list(again["seeds"]) == [1, 2]
    np.testing.assert_allclose(again["samples"][0], out["samples"][1], atol=1e-5)
    assert np.abs(out["samples"][0] - out["samples"][1]).max() > 1e-2


def test_negative_prompt_is_the_unconditional_half(base, tmp_path):
    _, out = base
    other = _sample(tmp_path / "neg", sampling__negative_prompts="a green tree")
    assert np.abs(other["samples"] - out["samples"]).max() > 1e-3
    # w = 0: the negative prompt alone decides the image; w = 1 differs
    w0 = [_sample(tmp_path / f"w0{i}", sampling__guidance_scale=0.0, sampling__prompts=p)
          for i, p in enumerate(["a red fox;a red fox", "a cat;a dog"])]
    np.testing.assert_allclose(w0[0]["samples"], w0[1]["samples"], atol=1e-5)
    w1 = _sample(tmp_path / "w1", sampling__guidance_scale=1.0,
                 sampling__prompts="a red fox;a red fox")
    assert np.abs(w1["samples"] - w0[0]["samples"]).max() > 1e-3


def test_float16_is_finite_and_close_to_float32(base, tmp_path):
    """pretrained.dtype=float16 (weights and compute): the base run's images, finite, within
    float16 rounding. float16 keeps 11 significant bits (unit roundoff 2^-11), bfloat16 8
    (2^-8), so the bfloat16 run's bound (mean |difference| < 0.05 of [0, 1] pixels) shrinks 8x:
    0.05 / 8; measured 0.0021 (bfloat16: 0.015), max 0.023. On CPU the attention itself runs
    in float32 (models/ldm_layers.attention: XLA:CPU has no float16 dot with float32 output)."""
    _, out = base
    half = _sample(tmp_path, pretrained__dtype="float16")["samples"]
    assert half.shape == out["samples"].shape and np.all(np.isfinite(half))
    assert 0 < np.abs(half - out["samples"]).mean() < 0.05 / 8


def test_img2img_strength_zero_is_the_vae_round_trip(tmp_path):
    path = str(tmp_path / "input.npz")
    image = _picture()
    np.savez(path, images=np.round(image * 255).astype(np.uint8)[None])
    out = _sample(tmp_path, sampling__task="img2img", sampling__input=path,
                  sampling__strength=0.0)
    assert out["samples"].shape == (2, 32, 32, 3)  # one input for both prompts
    sd = pretrained.load_stable_diffusion(SD1)
    v = {"params": sd.params["vae"]}
    z = sd.vae.apply(v, jnp.asarray(2.0 * image[None] - 1.0, jnp.float32),
                     method=sd.vae.encode).mean
    trip = np.clip((np.asarray(sd.vae.apply(v, z, method=sd.vae.decode)) + 1.0) / 2.0, 0, 1)
    np.testing.assert_allclose(out["samples"], np.repeat(trip, 2, 0), atol=1e-5)
    np.testing.assert_allclose(out["inputs"][0], image, atol=1e-6)


def test_latent_mask_covers_every_unknown_pixel():
    pixel = np.ones((1, 8, 8, 3), np.float32)
    pixel[0, 3, 4, 1] = 0.0  # one unknown pixel: its whole 2x2 latent cell is generated
    latent = sd_pipeline.latent_masks(pixel, 2)
    assert latent.shape == (1, 4, 4, 1) and latent.sum() == 15 and latent[0, 1, 2, 0] == 0


BAD = [
    ({"pretrained.path": ""}, "pretrained.path"),
    ({"pretrained.path": "/nonexistent/sd"}, "pretrained.path"),
    ({"sampling.guidance_scale": -1.0}, "sampling.guidance_scale"),
    ({"sampling.prompts": " ; "}, "sampling.prompts"),
    ({"sampling.negative_prompts": "x;y;z"}, "sampling.negative_prompts"),
    ({"data.image_size": 36}, "data.image_size"),
    ({"pretrained.dtype": "int8"}, "pretrained.dtype"),
    ({"sampling.task": "img2img"}, "sampling.input"),
    ({"sampling.method": "nope"}, "sampling.method"),
    ({"sampling.timesteps": "karras"}, "sampling.timesteps"),
    ({"sampling.timesteps": "diffusers", "sampling.method": "edm_heun"}, "sampling.timesteps"),
    ({"sampling.timesteps": "diffusers", "sampling.task": "img2img"}, "sampling.timesteps"),
    ({"pretrained.vae_tile": -8}, "pretrained.vae_tile"),
]


@pytest.mark.parametrize("updates,key", BAD)
def test_bad_input_is_one_line_and_writes_nothing(updates, key, tmp_path):
    config = run_lib.override(sd15.get_config(), {**BASE, **updates})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        run_lib.sample(config, str(tmp_path / "w"))
    assert "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("mode", ["eval"])  # --mode train fine-tunes: test_sd_finetune.py
def test_other_modes_are_rejected(mode, tmp_path):
    import eval_lib

    run = {"train": run_lib.train, "eval": eval_lib.evaluate}[mode]
    with pytest.raises(ConfigError, match=f"--mode {mode}"):
        run(_config(), str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


def _finished(cli, name):
    workdir, proc = cli[name]
    return workdir, image_runs.finish(proc)


def test_cli_bfloat16_two_devices_sd2_inpaint_img2img(base, cli):
    _, out = base
    results = {}
    for name in ("bfloat16", "sd2", "inpaint", "img2img"):
        workdir, result = _finished(cli, name)
        _, stdout, _ = image_runs.check(result, name)
        with np.load(stdout.strip().split()[-1]) as f:
            results[name] = dict(f)
        stem = "sd" if name in ("bfloat16", "sd2") else name
        assert os.path.exists(os.path.join(workdir, "samples", f"{stem}_0000.png"))
    half = results["bfloat16"]["samples"]
    assert half.shape == out["samples"].shape
    assert 0 < np.abs(half - out["samples"]).mean() < 0.05  # bfloat16 rounding, same images
    for i in range(2):  # each image stayed with its prompt and seed across the devices
        own, other = (np.abs(half[i] - out["samples"][j]).mean() for j in (i, 1 - i))
        assert own < 0.5 * other
    v = results["sd2"]["samples"]  # v-prediction, 2.x tokenizer and text encoder
    assert v.shape == (2, 32, 32, 3) and np.all(np.isfinite(v)) and v.std() > 1e-3
    fill = results["inpaint"]
    assert fill["samples"].shape == (2, 32, 32, 3) and fill["inputs"].shape == (2, 32, 32, 3)
    assert np.abs(fill["samples"] - out["samples"]).max() > 1e-2
    with open(os.path.join(cli["inpaint"][0], "samples", "inpaint_0000.json")) as f:
        assert json.load(f)["mask"] == "centre_square"
    edit = results["img2img"]  # SDEdit at strength 0.5 of the left half only
    assert edit["samples"].shape == (2, 32, 32, 3)
    assert np.abs(edit["samples"] - fill["samples"]).max() > 1e-2
    with open(os.path.join(cli["img2img"][0], "samples", "img2img_0001.json")) as f:
        settings = json.load(f)
    assert settings["strength"] == 0.5 and settings["mask"] == "left_half"
    assert settings["prompt"] == "a blue car" and settings["seed"] == 1


def test_cli_error_is_one_line(cli):
    workdir, (rc, _, err) = _finished(cli, "bad_guidance")
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert rc == 1 and len(lines) == 1 and "sampling.guidance_scale" in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert not os.path.exists(workdir)
