"""Evaluation from the CLI: fid_stats -> eval round trip on a tiny digits run, resumable
sweeps, clear errors, and the sampler ablation table on toy data."""

import csv
import json
import os

import numpy as np
import pytest

import eval_lib
import evaluation
import run_lib
from tests import digits_tiny
from tests.test_train import tiny_config
from utils import ConfigError


def digits_config(tmp_path):
    c = digits_tiny.get_config()
    c.data.image_size = 16
    c.model.attn_resolutions = (16,)
    c.eval.begin_ckpt = 1
    c.eval.end_ckpt = 1
    c.eval.batch_size = 64
    c.eval.num_samples = 24
    c.eval.enable_sampling = True
    c.eval.enable_loss = True
    c.eval.enable_bpd = False  # an ODE solve through a 4-step network is stiff and slow
    c.eval.bpd_repeats = 1
    c.eval.rtol = 1e-3
    c.eval.atol = 1e-3
    c.eval.stats_path = str(tmp_path / "stats" / "digits.npz")
    c.eval.kid_subset_size = 16
    c.eval.is_splits = 2
    return c


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits_eval")
    wd = str(root / "run")
    c = digits_config(root)
    run_lib.train(c, wd)
    return c, wd


def test_fid_stats_then_eval_round_trip(digits_run):
    c, wd = digits_run
    path = eval_lib.fid_stats(c, wd)
    net = evaluation.load_digits_classifier()
    mu, sigma = evaluation.load_statistics(path, net)
    assert mu.shape == (net.feature_dim,) and sigma.shape == (net.feature_dim,) * 2
    with np.load(path) as f:
        assert int(f["num_samples"]) == 1500  # the whole train split, no remainder dropped
    out = eval_lib.evaluate(c, wd)["results"]
    assert len(out) == 1 and out[0]["step"] == c.training.snapshot_freq
    res = out[0]
    for key in ("fd_digits", "kid_digits", "cis_digits", "test_loss"):
        assert np.isfinite(res[key]), key
    assert "fid" not in res  # the proxy is never reported as FID
    assert 1 <= res["cis_digits"] <= 10
    metrics = os.path.join(wd, "eval", f"metrics_{res['step']}.json")
    with open(metrics) as f:
        assert json.load(f) == res
    with open(os.path.join(wd, "eval", "metrics.csv")) as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [res["step"]]
    # A second sweep finds the finished step and does not recompute it.
    mtime = os.path.getmtime(metrics)
    assert eval_lib.evaluate(c, wd)["results"] == out
    assert os.path.getmtime(metrics) == mtime


def test_eval_errors_are_named(digits_run, tmp_path):
    c, wd = digits_run
    c2 = digits_config(tmp_path)
    c2.eval.begin_ckpt = c2.eval.end_ckpt = 5
    c2.eval.stats_path = c.eval.stats_path
    with pytest.raises(ConfigError, match="no checkpoint at step 20"):
        eval_lib.evaluate(c2, wd)
    c3 = digits_config(tmp_path)  # stats of another feature network
    os.makedirs(os.path.dirname(c3.eval.stats_path), exist_ok=True)
    evaluation.save_statistics(c3.eval.stats_path, np.zeros(64), np.eye(64), "other-net:0")
    c3.eval.enable_loss = c3.eval.enable_bpd = False
    with pytest.raises(ConfigError, match="statistics of feature network 'other-net:0'"):
        eval_lib.evaluate(c3, str(tmp_path / "fresh_wd_has_no_results"))
    c4 = digits_config(tmp_path)
    c4.eval.stats_path = str(tmp_path / "missing.npz")
    with pytest.raises(ConfigError, match="--mode fid_stats"):
        eval_lib.reference_stats(c4, wd, evaluation.load_digits_classifier())


def test_ablation_table_on_toy_data(tmp_path):
    c = tiny_config(100, model__ema_rate=0.9)
    run_lib.train(c, str(tmp_path))
    c.ablation.num_scales = 100  # DDPM's discretisation needs beta_max / N < 1
    c.ablation.num_samples = 128
    c.ablation.ode_tolerances = (1e-3,)
    c.ablation.fast_methods = ("dpm_solver++",)
    c.ablation.fast_nfe = (5, 10)
    rows = eval_lib.ablate(c, str(tmp_path))
    cells = {(r["sampler"], r["column"]): r for r in rows}
    assert cells[("fast: dpm_solver++", "NFE10")]["nfe"] == 10
    assert cells[("reverse diffusion", "P100")]["nfe"] == 100
    assert cells[("reverse diffusion", "P200")]["nfe"] == 200
    assert cells[("reverse diffusion", "C200")]["nfe"] == 200
    assert cells[("ancestral sampling", "PC100")]["nfe"] == 200
    assert all(np.isfinite(r["energy_distance"]) and r["energy_distance"] > 0 for r in rows)
    table = open(tmp_path / "eval" / "ablation_100.md").read()
    header = "| predictor (energy_distance) | P100 | P200 | C200 | PC100 |"
    assert table.splitlines()[0] == header
    assert "| fast sampler (energy_distance) | NFE5 | NFE10 |" in table
    assert "| dpm_solver++ | " in table
    assert (tmp_path / "eval" / "ablation_100.png").exists()
    assert (tmp_path / "eval" / "ablation_100.csv").exists()
    # the corrector-only column is the same sampler in every row: computed once, reported thrice
    c_cells = [cells[(label, "C200")] for label in eval_lib.ABLATION_ROWS]
    assert len({r["energy_distance"] for r in c_cells}) == 1
    # probability-flow rows are not the reverse-diffusion rows
    assert (cells[("probability flow", "PC100")]["energy_distance"]
            != cells[("reverse diffusion", "PC100")]["energy_distance"])
    # Too few steps for DDPM's grid: those cells say why, the ODE rows still run.
    c.ablation.num_scales = 10
    rows = eval_lib.ablate(c, str(tmp_path))
    for r in rows:
        if r["sampler"].startswith(("ODE", eval_lib.FAST_PREFIX)):
            assert np.isfinite(r["energy_distance"])
        else:
            assert r["energy_distance"] is None and "beta_max / N < 1" in r["note"], r

