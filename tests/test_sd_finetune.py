"""`--mode train` fine-tunes a pretrained Stable Diffusion checkpoint (sd_finetune.py) on the tiny
checkpoints of tests/data/sd_tiny and a captioned 32x32 image folder: main.py trains and
checkpoints, a resumed run equals an uninterrupted one, `--mode sample` on the workdir samples
the fine-tuned EMA UNet, the v-prediction objective is the v regression, bad input is one line.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import losses
import run_lib
import sde_lib
from configs.sd import sd15, sd21
from tests import image_runs
from utils import ConfigError

DATA = os.path.join(os.path.dirname(__file__), "data", "sd_tiny")
SD1, SD2 = os.path.join(DATA, "sd1"), os.path.join(DATA, "sd2")
CAPTIONS = ["a red square", "a blue square", "a green stripe", "a yellow corner"]
TRAIN = {"data.image_size": 32, "data.dataset": "image_folder", "training.batch_size": 2,
         "training.n_iters": 4, "training.log_freq": 1, "training.snapshot_freq": 100,
         "training.snapshot_freq_for_preemption": 2, "optim.lr": 1e-3, "model.ema_rate": 0.5,
         "sampling.steps": 2, "sampling.prompts": "a red square",
         "sampling.negative_prompts": "", "sampling.guidance_scale": 2.0}


def make_folder(root) -> str:
    """Four 32x32 RGB PNGs with their captions in metadata.jsonl."""
    folder = os.path.join(str(root), "images")
    os.makedirs(folder, exist_ok=True)
    colours = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (230, 220, 20)]
    with open(os.path.join(folder, "metadata.jsonl"), "w") as f:
        for i, (colour, caption) in enumerate(zip(colours, CAPTIONS, strict=True)):
            image = np.full((32, 32, 3), 128, np.uint8)
            image[4 + 4 * i : 20 + 4 * i, 6:26] = colour
            Image.fromarray(image).save(os.path.join(folder, f"{i}.png"))
            f.write(json.dumps({"file_name": f"{i}.png", "text": caption}) + "\n")
    return folder


def _config(folder, family=sd15, path=SD1, **updates):
    return run_lib.override(family.get_config(), {**TRAIN, "pretrained.path": path,
                                                  "data.data_dir": folder, **updates})


def _args(config_file, path, folder, workdir) -> list:
    return [f"--config={config_file}", f"--workdir={workdir}", "--mode=train",
            f"--config.pretrained.path={path}", f"--config.data.data_dir={folder}",
            *[f"--config.{k}={v}" for k, v in TRAIN.items() if k != "data.data_dir"]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted main.py run (started first: it compiles beside the in-process tests)
    and its image folder: (folder, workdir, process)."""
    root = tmp_path_factory.mktemp("sd_finetune")
    folder = make_folder(root)
    workdir = root / "full"
    proc = image_runs.start(_args("configs/sd/sd15.py", SD1, folder, workdir), root)
    yield folder, workdir, proc
    if proc.poll() is None:  # a test before `full` failed: stop the run
        image_runs.finish(proc, timeout=0)


@pytest.fixture(scope="module")
def full(runs):
    folder, workdir, proc = runs
    image_runs.check(image_runs.finish(proc), "main.py --mode train")
    return folder, workdir


def test_v_loss_is_the_v_regression():
    """On one data point x0 the exact v(x_t, i) = sqrt(abar) eps - sqrt(1 - abar) x0 is known:
    the v objective is 0 there and |delta|^2 off it by delta; the epsilon objective of the same
    network is not 0 (so the v target, not eps, is what is regressed)."""
    sde = sde_lib.VPSDE(0.85, 12.0, 1000, schedule="scaled_linear", eps=1e-3)
    x0 = jnp.full((4, 2, 2, 1), 0.7)

    class ExactV:
        def __init__(self, delta):
            self.delta = delta

        def apply(self, variables, x, labels, train=False, rngs=None):
            i = labels.astype(jnp.int32)
            a = sde.sqrt_alphas_cumprod[i][:, None, None, None]
            s = sde.sqrt_1m_alphas_cumprod[i][:, None, None, None]
            eps = (x - a * x0) / s
            return a * eps - s * x0 + self.delta

    rng = jax.random.PRNGKey(3)
    exact = losses.get_ddpm_loss_fn(sde, ExactV(0.0), False, True, "v_prediction")
    off = losses.get_ddpm_loss_fn(sde, ExactV(0.25), False, True, "v_prediction")
    as_eps = losses.get_ddpm_loss_fn(sde, ExactV(0.0), False, True, "epsilon")
    assert float(jnp.max(exact(rng, {}, x0))) < 1e-8
    np.testing.assert_allclose(off(rng, {}, x0), 0.0625, rtol=1e-4)
    assert float(jnp.min(as_eps(rng, {}, x0))) > 1e-3
    with pytest.raises(ConfigError, match="discrete DDPM loss"):
        losses.get_loss_fn(sde, ExactV(0.0), True, "dsm", True, prediction_type="v_prediction")


def test_resume_equals_uninterrupted_and_sample_uses_finetuned(full, tmp_path):
    folder, workdir = full
    full_losses = image_runs.losses(workdir)
    assert len(full_losses) == 4 and np.all(np.isfinite(full_losses))
    assert len(set(full_losses)) > 1
    assert os.listdir(os.path.join(workdir, "checkpoints"))
    # the same run stopped after 2 steps and resumed to 4, in-process
    half = tmp_path / "half"
    run_lib.train(_config(folder, **{"training.n_iters": 2}), str(half))
    run_lib.train(_config(folder), str(half))
    np.testing.assert_allclose(image_runs.losses(half), full_losses, rtol=1e-5)
    # only the UNet is trained: the checkpoint holds no text encoder or VAE
    import sd_finetune

    run, sd = sd_finetune.build(_config(folder))
    ema, step = sd_finetune.finetuned_unet(_config(folder), sd.params["unet"], run.mesh,
                                           str(workdir))
    assert step == 4
    changed = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), ema, sd.params["unet"])
    assert max(jax.tree.leaves(changed)) > 0
    # --mode sample: the workdir's fine-tuned EMA, or the original with use_workdir=False
    sampled = run_lib.sample(_config(folder), str(workdir))
    original = run_lib.sample(_config(folder, **{"pretrained.use_workdir": False}),
                              str(tmp_path / "orig"))
    with np.load(sampled) as a, np.load(original) as b:
        assert np.abs(a["samples"] - b["samples"]).max() > 1e-3
    with open(os.path.join(workdir, "samples", "sd_0000.json")) as f:
        assert json.load(f)["finetuned_step"] == 4


def test_v_prediction_checkpoint_objective(tmp_path):
    """The 2.x checkpoint trains its v output: its run carries 'v_prediction' and the text loss
    on a cached batch is finite and differs from the epsilon objective of the same UNet."""
    import pipeline
    import sd_finetune

    config = _config(make_folder(tmp_path), sd21, SD2, **{"training.cond_drop_prob": 0.0})
    run, sd = sd_finetune.build(config)
    assert run.prediction_type == "v_prediction"
    source = pipeline.autoencoder_lib.image_source(config, "train")
    tables, lookups = pipeline.training_tables(run, source)
    batch = {"x": jnp.asarray(tables["x"][:2]), **{k: jnp.asarray(v[tables["caption"][:2]])
                                                    for k, v in lookups.items()}}
    rng, params = jax.random.PRNGKey(0), {"unet": sd.params["unet"]}
    v = pipeline.get_text_loss_fn(run, train=False)(rng, params, batch)
    eps = pipeline.get_text_loss_fn(run._replace(prediction_type="epsilon"), train=False)(
        rng, params, batch)
    assert np.all(np.isfinite(v)) and not np.allclose(v, eps)


@pytest.mark.parametrize("updates, key", [
    ({"data.dataset": ""}, "data.dataset"),
    ({"data.dataset": "digits"}, "data.dataset"),  # no captions
    ({"data.image_size": 36}, "data.image_size"),
    ({"pretrained.path": ""}, "pretrained.path"),
    ({"training.cond_drop_prob": 1.0}, "training.cond_drop_prob"),
])
def test_bad_input_is_one_line(updates, key, tmp_path):
    with pytest.raises(ConfigError) as e:
        run_lib.train(_config(make_folder(tmp_path), **updates), str(tmp_path / "w"))
    assert key in str(e.value) and "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "w")
