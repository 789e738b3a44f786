"""The toy train / sample / eval loop: loss goes down, resume is exact, the workdir contract."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import checkpointing
import run_lib
from configs.default_toy import get_default_configs
from utils import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.model.nf=32", "--config.model.num_res_blocks=1", "--config.training.batch_size=64",
    "--config.training.n_jitted_steps=50", "--config.training.log_freq=50",
    "--config.training.snapshot_freq=100000", "--config.training.snapshot_freq_for_preemption=100",
    "--config.model.num_scales=50", "--config.sampling.num_samples=64",
    "--config.eval.num_samples=64", "--config.eval.num_test=16",
    "--config.model.input_octaves=0",  # the plain MLP also where the config file encodes x
]


def tiny_config(n_iters=200, **overrides):
    c = get_default_configs()
    for flag in TINY:
        key, value = flag[len("--config."):].split("=")
        sec, name = key.split(".")
        c[sec][name] = type(c[sec][name])(value)
    c.training.n_iters = n_iters
    for k, v in overrides.items():
        sec, name = k.split("__")
        c[sec][name] = v
    return c


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def run_main(args, **kw):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                          text=True, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An uninterrupted 300-step run (shared by several tests)."""
    wd = str(tmp_path_factory.mktemp("uninterrupted"))
    run_lib.train(tiny_config(300), wd)
    return wd


def test_training_lowers_the_loss_and_fills_the_workdir(trained):
    recs = read_metrics(trained)
    assert [r["step"] for r in recs] == list(range(50, 301, 50))
    assert recs[-1]["loss"] < 0.8 * recs[0]["loss"]
    assert checkpointing.require_checkpoint(trained) == 300
    with np.load(os.path.join(trained, "samples", "samples_300.npz")) as f:
        assert f["samples"].shape == (64, 2) and f["samples"].dtype == np.float32
    assert os.path.exists(os.path.join(trained, "samples", "samples_300.png"))
    assert os.listdir(os.path.join(trained, "tb"))
    with open(os.path.join(trained, "config.json")) as f:
        assert json.load(f)["training"]["n_iters"] == 300


def test_resume_in_process_equals_uninterrupted(trained, tmp_path):
    wd = str(tmp_path)
    run_lib.train(tiny_config(100), wd)
    run_lib.train(tiny_config(300), wd)
    resumed, full = read_metrics(wd), read_metrics(trained)
    assert [r["step"] for r in resumed] == [r["step"] for r in full]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in full])


def test_killed_run_resumes_exactly(trained, tmp_path):
    """SIGKILL a training process right after its first checkpoint, then resume to the end.

    The killed run has the same config as the uninterrupted one (the cosine schedule depends
    on n_iters), so every logged loss must match."""
    wd = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--config=configs/toy/vp_checkerboard.py", f"--workdir={wd}",
         *TINY, "--config.training.n_iters=300"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        ckpt = checkpointing.checkpoint_dir(wd)
        while time.time() < deadline:
            if os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt)):
                break
            time.sleep(0.02)
        else:
            pytest.fail("no checkpoint within 240 s")
        still_running = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert still_running, "the run finished before it could be killed"
    killed_at = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
    assert killed_at < 300, killed_at
    run_lib.train(tiny_config(300), wd)
    recs = read_metrics(wd)
    assert [r["step"] for r in recs] == list(range(50, 301, 50))
    assert [r["loss"] for r in recs] == pytest.approx([r["loss"] for r in read_metrics(trained)])


def test_sample_and_eval_modes(trained):
    path = run_lib.sample(tiny_config(300), trained)
    assert path.endswith("samples_300.npz") and os.path.exists(path)
    res = run_lib.evaluate(tiny_config(300), trained)
    with open(os.path.join(trained, "eval", "metrics_300.json")) as f:
        assert json.load(f) == res
    assert res["energy_distance"] > 0 and np.isfinite(res["nll_nats"])


def test_nan_loss_stops_and_keeps_the_last_checkpoint(trained, tmp_path):
    wd = str(tmp_path)
    run_lib.train(tiny_config(100), wd)
    with pytest.raises(run_lib.DivergenceError, match="last good checkpoint: step 100"):
        run_lib.train(tiny_config(300, optim__lr=1e30, optim__grad_clip=-1.0,
                                  optim__warmup=0), wd)
    assert checkpointing.require_checkpoint(wd) == 100
    run_lib.sample(tiny_config(100), wd)  # the kept checkpoint still restores


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(training__sde="ddpm"), "training.sde='ddpm' is not valid; choose one of: vesde"),
        (dict(training__sde="vesde", model__sigma_min=5.0, model__sigma_max=1.0),
         "model.sigma_min: must be < model.sigma_max"),
        (dict(model__beta_min=-0.1), "model.beta_min: must be >= 0"),
        (dict(model__num_scales=0), "model.num_scales: must be >= 1"),
        (dict(sampling__snr=0.0), "sampling.snr must be > 0"),
        (dict(training__batch_size=0), "training.batch_size: must be >= 1"),
        (dict(sampling__predictor="leapfrog"), "sampling.predictor='leapfrog' is not valid"),
        (dict(sampling__corrector="hmc"), "sampling.corrector='hmc' is not valid"),
        (dict(sampling__method="dpm"), "sampling.method='dpm' is not valid"),
        (dict(data__dataset="spirals"), "data.dataset='spirals' is not valid"),
        (dict(model__name="unet9"), "model.name='unet9' is not valid"),
        (dict(training__method="ism"), "training.method='ism' is not valid"),
    ],
)
def test_bad_config_values_are_named(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        run_lib.train(tiny_config(50, **overrides), str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    r = run_main(["--config=configs/toy/vp_checkerboard.py", f"--workdir={tmp_path}",
                  "--config.training.sde=ddpm"])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: training.sde='ddpm'")
    r = run_main(["--config=configs/toy/vp_checkerboard.py", f"--workdir={tmp_path}/none",
                  "--mode=sample"])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no checkpoints" in r.stderr.strip().splitlines()[-1]


def test_training_on_the_mixture_learns_its_exact_score(tmp_path):
    """After a short run on 'gmm' the EMA network's score is close to the closed form."""
    import jax
    import jax.numpy as jnp

    import datasets
    from models import utils as mutils

    c = tiny_config(1500, data__dataset="gmm", model__nf=64, model__num_res_blocks=2,
                    model__ema_rate=0.99,
                    training__batch_size=256, training__n_jitted_steps=250,
                    training__log_freq=250, training__snapshot_freq_for_preemption=1500)
    run_lib.train(c, str(tmp_path))
    exp = run_lib.build(c)
    params, _ = run_lib._load_ema(c, exp, str(tmp_path))
    learned = mutils.get_score_fn(exp.sde, exp.model, {"params": params})
    mix = datasets.toy_mixture("gmm")
    exact = mix.score_fn(exp.sde)
    x0 = mix.sample(jax.random.PRNGKey(5), 4000)
    for t_val, tol in ((0.1, 0.1), (0.5, 0.05)):
        t = jnp.full((4000,), t_val)
        mean, std = exp.sde.marginal_prob(x0, t)
        xt = mean + std[:, None] * jax.random.normal(jax.random.PRNGKey(6), x0.shape)
        err = jnp.mean(jnp.sum((learned(xt, t) - exact(xt, t)) ** 2, 1))
        rel = float(err / jnp.mean(jnp.sum(exact(xt, t) ** 2, 1)))
        assert rel < tol, (t_val, rel)
