"""`--mode train` fine-tunes a pretrained Stable Diffusion checkpoint (sd_finetune.py) on the tiny
checkpoints of tests/data/sd_tiny and a captioned 32x32 image folder: main.py trains and
checkpoints, a resumed run equals an uninterrupted one, `--mode sample` on the workdir samples
the fine-tuned EMA UNet (all main.py subprocesses, run side by side), the v-prediction objective
is the v regression, bad input is one line.
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


def _args(config_file, path, folder, workdir, mode="train", **updates) -> list:
    settings = {**TRAIN, **updates}
    return [f"--config={config_file}", f"--workdir={workdir}", f"--mode={mode}",
            f"--config.pretrained.path={path}", f"--config.data.data_dir={folder}",
            *[f"--config.{k.replace('__', '.')}={v}" for k, v in settings.items()
              if k != "data.data_dir"]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """main.py runs in subprocesses (XLA at its fast-compiling setting, one compilation cache),
    started side by side: the uninterrupted run ('full', 4 steps), the same run stopped after
    2 ('half'; the test resumes it) and the original checkpoint's samples ('orig'). Returns
    (root, folder, workdirs, processes), both dicts by name."""
    root = tmp_path_factory.mktemp("sd_finetune")
    folder = make_folder(root)
    workdirs = {name: root / name for name in ("full", "half", "orig")}
    procs = {
        "full": image_runs.start(_args("configs/sd/sd15.py", SD1, folder, workdirs["full"]),
                                 root),
        "half": image_runs.start(_args("configs/sd/sd15.py", SD1, folder, workdirs["half"],
                                       training__n_iters=2), root),
        "orig": image_runs.start(_args("configs/sd/sd15.py", SD1, folder, workdirs["orig"],
                                       "sample", pretrained__use_workdir=False), root),
    }
    yield root, folder, workdirs, procs
    for proc in procs.values():
        if proc.poll() is None:  # a test failed before waiting for it: stop the run
            image_runs.finish(proc, timeout=0)


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
    v_loss = pipeline.get_text_loss_fn(run, train=False)
    eps_loss = pipeline.get_text_loss_fn(run._replace(prediction_type="epsilon"), train=False)
    # one compiled call (op-by-op dispatch of the UNet is twice as slow)
    v, eps = jax.jit(lambda *a: (v_loss(*a), eps_loss(*a)))(rng, params, batch)
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


def test_resume_equals_uninterrupted_and_sample_uses_finetuned(runs):
    """The run stopped after 2 steps and resumed to 4 by a second process logs the
    uninterrupted run's losses; --mode sample on its workdir samples the fine-tuned EMA."""
    root, folder, workdirs, procs = runs
    finish = lambda name, what: image_runs.check(image_runs.finish(procs[name]), what)
    start = lambda workdir, *a, **kw: image_runs.start(
        _args("configs/sd/sd15.py", SD1, folder, workdir, *a, **kw), root)
    finish("half", "main.py --mode train (2 steps)")
    assert len(image_runs.losses(workdirs["half"])) == 2
    procs["resumed"] = start(workdirs["half"])
    finish("full", "main.py --mode train")
    # --mode sample: the workdir's fine-tuned EMA ('orig': use_workdir=False, the original)
    procs["sampled"] = start(workdirs["full"], "sample")
    full_losses = image_runs.losses(workdirs["full"])
    assert len(full_losses) == 4 and np.all(np.isfinite(full_losses))
    assert len(set(full_losses)) > 1
    assert os.listdir(os.path.join(workdirs["full"], "checkpoints"))
    # only the UNet is trained: the checkpoint holds no text encoder or VAE
    import sd_finetune

    run, sd = sd_finetune.build(_config(folder))
    ema, step = sd_finetune.finetuned_unet(_config(folder), sd.params["unet"], run.mesh,
                                           str(workdirs["full"]))
    assert step == 4
    changed = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), ema, sd.params["unet"])
    assert max(jax.tree.leaves(changed)) > 0
    finish("sampled", "main.py --mode sample (fine-tuned)")
    finish("orig", "main.py --mode sample (original)")
    with np.load(os.path.join(workdirs["full"], "samples", "samples_0.npz")) as a, \
            np.load(os.path.join(workdirs["orig"], "samples", "samples_0.npz")) as b:
        assert a["samples"].shape == b["samples"].shape == (1, 32, 32, 3)
        assert np.abs(a["samples"] - b["samples"]).max() > 1e-3
    for name, step in (("full", 4), ("orig", None)):
        with open(os.path.join(workdirs[name], "samples", "sd_0000.json")) as f:
            assert json.load(f)["finetuned_step"] == step
    finish("resumed", "main.py --mode train (resumed to 4 steps)")
    np.testing.assert_allclose(image_runs.losses(workdirs["half"]), full_losses, rtol=1e-5)
