"""Image training: mocked CIFAR-10 and embedded digits through main.py, resume, sample mode,
bfloat16 compute, and config errors that stop before anything is written.

The runs are subprocesses (tests/image_runs.py) started together so they share the CPUs.
"""

import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from digits_tiny import get_config
from image_runs import (
    check,
    finish,
    finish_reference,
    losses,
    read_metrics,
    start,
    start_reference,
    train_args,
)
from PIL import Image

import checkpointing
import run_lib
from utils import ConfigError


def _killed_after_step_2(reference: str, workdir: str) -> None:
    """The workdir a run killed after its step-2 checkpoint leaves: the checkpoint of step 2
    and metrics lines up to step 4 (logged after the checkpoint, so dropped on resume)."""
    os.makedirs(os.path.join(workdir, "checkpoints"))
    shutil.copytree(os.path.join(reference, "checkpoints", "2"),
                    os.path.join(workdir, "checkpoints", "2"))
    shutil.copy(os.path.join(reference, "metrics.jsonl"), workdir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Workdirs of: mocked CIFAR-10; digits uninterrupted (reference); resumed; bfloat16."""
    root = tmp_path_factory.getbasetemp()
    wd = {k: str(tmp_path_factory.mktemp(k)) for k in ("cifar10", "resumed", "bf16")}
    wd["reference"], reference = start_reference(tmp_path_factory)
    cifar = start([wd["cifar10"]], root, script="tests/mock_cifar10_train.py")
    finish_reference(reference)  # the runs below reuse its compiled programs
    _killed_after_step_2(wd["reference"], wd["resumed"])
    resumed = start(train_args(wd["resumed"]), root)
    bf16 = start(train_args(wd["bf16"], "--config.training.compute_dtype=bfloat16",
                            "--config.training.n_iters=2"), root)
    check(finish(resumed), "resumed run")
    check(finish(cifar), "mocked CIFAR-10 run")
    check(finish(bf16), "bfloat16 run")
    return wd


def test_mock_cifar10_fills_the_workdir(runs):
    wd = runs["cifar10"]
    recs = read_metrics(wd)
    assert [r["step"] for r in recs] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["images_per_sec"] > 0 for r in recs)
    assert checkpointing.require_checkpoint(wd) == 2
    with np.load(os.path.join(wd, "samples", "samples_2.npz")) as f:
        x = f["samples"]
    assert x.shape == (8, 8, 8, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    with Image.open(os.path.join(wd, "samples", "samples_2.png")) as png:
        assert png.size == ((3 * 9 + 1) * 8,) * 2  # 3x3 grid of 8x8 images, upscaled 8x
    assert os.listdir(os.path.join(wd, "tb"))
    with open(os.path.join(wd, "config.json")) as f:
        assert json.load(f)["data"]["dataset"] == "cifar10"


def test_digits_run_and_resume_after_a_kill_log_the_same_losses(runs):
    ref = read_metrics(runs["reference"])
    assert [r["step"] for r in ref] == [1, 2, 3, 4]
    assert all(r["images_per_sec"] == pytest.approx(8 * r["steps_per_sec"]) for r in ref)
    assert [r["step"] for r in read_metrics(runs["resumed"])] == [1, 2, 3, 4]
    np.testing.assert_allclose(losses(runs["resumed"]), losses(runs["reference"]), rtol=1e-6)
    assert checkpointing.require_checkpoint(runs["resumed"]) == 4


def test_bfloat16_loss_is_finite_and_close_to_float32(runs):
    bf16, f32 = losses(runs["bf16"]), losses(runs["reference"])[:2]
    assert np.all(np.isfinite(bf16))
    np.testing.assert_allclose(bf16, f32, rtol=0.03)
    assert bf16 != f32


def test_sample_mode_writes_the_latest_checkpoints_samples(runs, tmp_path_factory):
    path = os.path.join(runs["resumed"], "samples", "samples_4.npz")
    with np.load(path) as f:
        at_the_end_of_training = f["samples"]
    os.remove(path)
    _, out, _ = check(finish(start(["--mode=sample", *train_args(runs["resumed"])],
                                   tmp_path_factory.getbasetemp())), "sample mode")
    assert out.strip().endswith("samples_4.npz")
    with np.load(path) as f:
        np.testing.assert_array_equal(f["samples"], at_the_end_of_training)


def test_bfloat16_model_computes_in_bfloat16():
    """Every convolution of the loss runs on bf16 operands; loss and gradients are float32."""
    config = get_config()
    config.training.compute_dtype = "bfloat16"
    exp = run_lib.build(config)
    loss_fn = run_lib.get_loss_fn(config, exp)
    params = jax.eval_shape(lambda: run_lib.init_params(config, exp))
    batch = jax.ShapeDtypeStruct((8,) + exp.shape, jnp.float32)
    key = jax.random.PRNGKey(0)
    loss = lambda p, b: jnp.mean(loss_fn(key, p, b))
    hlo = jax.jit(jax.value_and_grad(loss)).lower(params, batch).as_text()
    convs = [line for line in hlo.splitlines() if "stablehlo.convolution" in line]
    assert len(convs) > 10 and all("xf32>" not in line.split(":")[-1] for line in convs)
    out, grads = jax.eval_shape(jax.value_and_grad(loss), params, batch)
    assert out.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"data.dataset": "imagenet"}, "data.dataset='imagenet' is not valid; choose one of: "),
        ({"data.image_size": 0}, "data.image_size: must be a positive integer"),
        ({"data.num_channels": 2}, "data.num_channels: must be 1 or 3"),
        ({"model.ch_mult": (1, 2), "data.image_size": 7}, "data.image_size=7 is not divisible"),
        ({"model.attn_resolutions": (5,)}, "model.attn_resolutions=(5,) do not occur"),
        ({"training.compute_dtype": "float16"}, "training.compute_dtype='float16' is not valid"),
        ({"model.name": "unet9"}, "model.name='unet9' is not valid"),
        ({"data.dataset": "cifar10", "data.data_dir": "/nonexistent"},
         "data.data_dir: /nonexistent does not exist"),
    ],
)
def test_bad_image_configs_stop_before_writing(tmp_path, overrides, match):
    config = get_config()
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=re.escape(match)):
        run_lib.train(config, str(workdir))
    assert not workdir.exists()


def test_image_eval_mode_is_not_available_yet(tmp_path):
    with pytest.raises(ConfigError, match="--mode eval: not available yet for image datasets"):
        run_lib.evaluate(get_config(), str(tmp_path))
