"""`sampling.task` from the CLI (tasks.py): inpainting and image-to-image on a tiny trained
digits run — inputs, masks, outputs, metrics and the one-line errors."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

import tasks
from tests import digits_tiny
from tests.image_runs import check, finish, finish_reference, start, start_reference, train_args
from utils import ConfigError


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A copy of the session's tiny trained digits run (checkpoint at step 4)."""
    ref, proc = start_reference(tmp_path_factory)
    finish_reference(proc)
    wd = str(tmp_path_factory.mktemp("tasks") / "run")
    shutil.copytree(ref, wd, ignore=shutil.ignore_patterns("samples", "tb", "eval"))
    return wd


def _config(**sampling):
    config = digits_tiny.get_config()
    config.sampling.num_samples = 6
    config.sampling.batch_size = 4  # 6 inputs: one full batch and one padded batch
    config.sampling.update(sampling)
    return config


def test_inpaint_keeps_the_known_pixels_through_the_cli(workdir, tmp_path_factory):
    result = check(finish(start(train_args(workdir, "--mode=sample",
                                           "--config.sampling.task=inpaint",
                                           "--config.sampling.mask=left_half",
                                           "--config.sampling.num_samples=6"),
                                tmp_path_factory.getbasetemp())), "inpaint")
    path = os.path.join(workdir, "samples", "inpaint_4.npz")
    assert path in result[1]
    with np.load(path) as d:
        x, y, m = d["samples"], d["inputs"], d["masks"]
        assert str(d["task"]) == "inpaint" and int(d["nfe"]) == 50
    assert x.shape == y.shape == m.shape == (6, 8, 8, 1)
    assert np.all(m[:, :, :4] == 0) and np.all(m[:, :, 4:] == 1)  # left half generated
    np.testing.assert_allclose(x * m, y * m, atol=1e-6)  # known pixels exactly
    assert np.abs((x - y) * (1 - m)).mean() > 1e-2  # the rest is generated, not copied
    assert os.path.exists(path[:-4] + ".png")


def test_fast_sampler_inpainting_and_img2img(workdir):
    cfg = _config(task="inpaint", mask="centre_square", method="dpm_solver++", steps=6)
    path = tasks.sample(cfg, workdir)
    with np.load(path) as d:
        x, y, m = d["samples"], d["inputs"], d["masks"]
        assert int(d["nfe"]) == 6
    np.testing.assert_allclose(x * m, y * m, atol=1e-6)
    assert m[:, 2:6, 2:6].max() == 0 and m.sum() == 6 * (64 - 16)

    # strength 0 returns the input; with a mask, strength 1 keeps the known pixels
    with np.load(tasks.sample(_config(task="img2img", strength=0.0), workdir)) as d:
        np.testing.assert_allclose(d["samples"], d["inputs"], atol=1e-6)
    with np.load(tasks.sample(_config(task="img2img", strength=1.0, mask="left_half"),
                              workdir)) as d:
        x, y, m = d["samples"], d["inputs"], d["masks"]
    np.testing.assert_allclose(x * m, y * m, atol=1e-6)
    assert np.abs((x - y) * (1 - m)).mean() > 1e-2

    # RePaint through the same path: more evaluations, the known pixels still exact
    cfg = _config(task="inpaint", mask="left_half", resample_times=2, jump_length=5)
    with np.load(tasks.sample(cfg, workdir)) as d:
        x, y, m = d["samples"], d["inputs"], d["masks"]
        assert int(d["nfe"]) > 50
    np.testing.assert_allclose(x * m, y * m, atol=1e-6)


def test_inputs_from_npz_and_png_folder(workdir, tmp_path):
    cfg = _config()
    test = tasks.load_inputs(cfg, (8, 8, 1), 3)
    assert test.shape == (3, 8, 8, 1) and test.dtype == np.float32
    np.savez(tmp_path / "in.npz", images=(test * 255).round().astype(np.uint8))
    got = tasks.load_inputs(_config(input=str(tmp_path / "in.npz")), (8, 8, 1), 3)
    np.testing.assert_allclose(got, test, atol=0.5 / 255)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(test):
        Image.fromarray((img[..., 0] * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    got = tasks.load_inputs(_config(input=str(folder)), (8, 8, 1), 3)
    np.testing.assert_allclose(got, test, atol=0.5 / 255)


def test_region_metrics_against_hand_computation():
    truth = np.zeros((2, 4, 4, 1), np.float32)
    masks = np.ones_like(truth)
    masks[:, :, :2] = 0.0  # half of each image generated
    results = truth.copy()
    results[0, :, :2] = 0.1  # error 0.1 on every generated pixel of image 0
    results[1, :, :2] = 0.01
    results[:, :, 2:] = 0.7  # errors in the known region are not counted
    out = tasks.region_metrics(results, truth, masks)
    np.testing.assert_allclose(out["masked_mse"], (0.01 + 0.0001) / 2, rtol=1e-5)
    np.testing.assert_allclose(out["masked_psnr"], (20.0 + 40.0) / 2, rtol=1e-4)


@pytest.mark.parametrize("overrides, key", [
    ({"task": "deblur"}, "sampling.task"),
    ({"task": "inpaint", "mask": "top_half"}, "sampling.mask"),
    ({"task": "img2img", "strength": 1.5}, "sampling.strength"),
    ({"task": "colorize"}, "sampling.task"),
    ({"task": "inpaint", "input": "/nonexistent/images.npz"}, "sampling.input"),
    ({"task": "inpaint", "input": "WRONG_NPZ"}, "sampling.input"),
    ({"task": "inpaint", "mask": "WRONG_PNG"}, "sampling.mask"),
    ({"task": "inpaint", "method": "pc", "resample_times": 0}, "sampling.resample_times"),
])
def test_bad_input_is_one_line_and_writes_nothing(workdir, tmp_path, overrides, key):
    if overrides.get("input") == "WRONG_NPZ":
        np.savez(tmp_path / "rgb.npz", samples=np.zeros((2, 8, 8, 3), np.float32))
        overrides["input"] = str(tmp_path / "rgb.npz")
    if overrides.get("mask") == "WRONG_PNG":
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "mask.png")
        overrides["mask"] = str(tmp_path / "mask.png")
    samples = os.path.join(workdir, "samples")
    before = sorted(os.listdir(samples)) if os.path.isdir(samples) else []
    with pytest.raises(ConfigError) as err:
        tasks.sample(_config(**overrides), workdir)
    assert key in str(err.value) and "\n" not in str(err.value)
    after = sorted(os.listdir(samples)) if os.path.isdir(samples) else []
    assert after == before
