"""The persistent compilation cache (compile_cache.py): a second process running the same
config reads its programs from the cache and gives bit-identical samples; the directory comes
from --compile_cache_dir, else $SCORELAB_COMPILE_CACHE, else ~/.cache/scorelab/jax; 'off'
disables it.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [  # a tiny VP checkerboard run: 20 steps, 64 samples of a 25-step PC sampler
    "--config=configs/toy/vp_checkerboard.py",
    "--config.model.nf=16", "--config.model.num_res_blocks=1", "--config.training.batch_size=32",
    "--config.training.n_iters=20", "--config.training.n_jitted_steps=10",
    "--config.training.log_freq=10", "--config.training.snapshot_freq=20",
    "--config.training.snapshot_freq_for_preemption=20", "--config.model.num_scales=25",
    "--config.sampling.num_samples=64", "--config.sampling.batch_size=64",
]


def start_main(workdir, env_dir, *flags) -> subprocess.Popen:
    """Start training TINY in a fresh process with SCORELAB_COMPILE_CACHE=env_dir (XLA's
    backend optimisations off: compiles faster, same programs in every run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env[compile_cache.ENV_VAR] = str(env_dir)
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    proc = subprocess.Popen([sys.executable, "tests/cache_child.py", *TINY,
                             f"--workdir={workdir}", *flags], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.workdir = workdir
    return proc


def finish_main(proc: subprocess.Popen):
    """(compile seconds, cache hits, samples) of a run from `start_main`."""
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    line = next(ln for ln in out.splitlines() if ln.startswith("COMPILE "))
    cost = json.loads(line[len("COMPILE "):])
    with np.load(os.path.join(proc.workdir, "samples", "samples_20.npz")) as f:
        return cost["compile_s"], cost["hits"], f["samples"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Cold run (cache named by the environment); then, side by side, a warm run (the same
    cache named by the flag, the environment pointing elsewhere) and a run with the flag 'off'
    (the environment naming the full cache)."""
    tmp = tmp_path_factory.mktemp("cache")
    cache, elsewhere = tmp / "cache", tmp / "elsewhere"
    cold = finish_main(start_main(tmp / "cold", cache))
    entries = sorted(os.listdir(cache))
    warm = start_main(tmp / "warm", elsewhere, f"--compile_cache_dir={cache}")
    off = start_main(tmp / "off", cache, "--compile_cache_dir=off")
    evaluate = subprocess.Popen([sys.executable, "main.py", *TINY, f"--workdir={tmp / 'cold'}",
                                 "--mode=eval", "--config.eval.num_test=50"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    warm, off = finish_main(warm), finish_main(off)
    out, err = evaluate.communicate(timeout=300)
    assert evaluate.returncode == 0, err[-3000:]
    return dict(cold=cold, warm=warm, off=off, entries=entries, cache=cache,
                elsewhere=elsewhere, eval_stdout=out, eval_json=tmp / "cold" / "eval")


def test_cold_run_fills_the_cache_named_by_the_environment(runs):
    _, hits, _ = runs["cold"]
    assert hits == 0
    assert len(runs["entries"]) >= 3  # init, train step, sampler (at least)


def test_second_process_hits_the_cache_and_gives_identical_samples(runs):
    cold_s, _, cold_x = runs["cold"]
    warm_s, hits, warm_x = runs["warm"]
    assert hits >= 3
    assert warm_s < 0.5 * cold_s, (warm_s, cold_s)
    np.testing.assert_array_equal(warm_x, cold_x)
    assert not os.path.exists(runs["elsewhere"])  # the flag wins over the environment
    assert sorted(os.listdir(runs["cache"])) == runs["entries"]  # nothing new was compiled


def test_off_switch_disables_the_cache(runs):
    _, hits, off_x = runs["off"]
    assert hits == 0
    np.testing.assert_array_equal(off_x, runs["cold"][2])


def test_eval_mode_prints_a_table_of_its_metrics(runs):
    """--mode eval on the checkerboard: one "| name | value |" row per metric of
    eval/metrics_<step>.json, the in-square fraction among them."""
    with open(runs["eval_json"] / "metrics_20.json") as f:
        metrics = json.load(f)
    assert 0.0 <= metrics["in_squares"] <= 1.0
    lines = runs["eval_stdout"].strip().splitlines()[-(len(metrics) + 2):]
    assert [c.strip() for c in lines[0].split("|")] == ["", "metric", "value", ""]
    assert set(lines[1]) == {"|", ":", "-"}
    rows = {ln.split("|")[1].strip(): ln.split("|")[2].strip() for ln in lines[2:]}
    assert list(rows) == list(metrics)
    for name, value in metrics.items():
        assert float(rows[name]) == pytest.approx(value, rel=1e-4, abs=1e-12), name


def test_resolve_order(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compile_cache.resolve() == str(tmp_path / ".cache" / "scorelab" / "jax")
    monkeypatch.setenv(compile_cache.ENV_VAR, "rel/dir")
    assert compile_cache.resolve() == os.path.abspath("rel/dir")
    assert compile_cache.resolve(str(tmp_path / "flag")) == str(tmp_path / "flag")
    monkeypatch.setenv(compile_cache.ENV_VAR, "OFF")
    assert compile_cache.resolve() is None
    assert compile_cache.resolve(str(tmp_path / "flag")) == str(tmp_path / "flag")
    assert compile_cache.resolve("off") is None


def test_session_shares_one_cache_with_its_subprocesses():
    directory = os.environ[compile_cache.ENV_VAR]  # set by conftest.py, inherited by children
    assert jax.config.jax_compilation_cache_dir == os.path.abspath(directory)
    assert jax.config.jax_enable_compilation_cache


def test_unwritable_directory_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, "main.py", *TINY, f"--workdir={tmp_path / 'w'}",
                           f"--compile_cache_dir={blocker / 'sub'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: compile_cache_dir: cannot create {blocker / 'sub'} (Not a directory); "
        "give a writable directory or 'off'"]
