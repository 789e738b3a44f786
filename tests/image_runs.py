"""Helpers of the image-training tests: run main.py (or a helper script) in subprocesses with
forced CPU devices, a fast-compiling XLA and a compilation cache shared between the runs of one
pytest session, and read what the runs logged.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile

import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "tests/digits_tiny.py"  # a tiny DDPM++ on 8x8 digits, 4 steps of batch 8
TIMEOUT = 600


def env(tmp_root, devices: int = 1) -> dict:
    """Environment of a test subprocess: `devices` CPU devices; XLA's backend optimisations off
    (compiles about 4x faster; these tests check plumbing, not speed); a shared jit cache."""
    e = dict(os.environ)
    e["XLA_FLAGS"] = ("--xla_backend_optimization_level=0 "
                      f"--xla_force_host_platform_device_count={devices}")
    e["JAX_PLATFORMS"] = "cpu"
    # main.py reads the session's $SCORELAB_COMPILE_CACHE (conftest.py); helper scripts this.
    e["JAX_COMPILATION_CACHE_DIR"] = (compile_cache.resolve()
                                      or os.path.join(str(tmp_root), "jax_cache"))
    e["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    e["PYTHONPATH"] = ROOT
    return e


def start(args, tmp_root, devices: int = 1, script: str = "main.py",
          extra_env: dict | None = None) -> subprocess.Popen:
    """Start `python script *args` in the repository root (output to temporary files, so a
    chatty process never blocks on a full pipe while the tests wait for another one)."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, script, *args], cwd=ROOT,
                            env={**env(tmp_root, devices), **(extra_env or {})},
                            stdout=out, stderr=err, text=True)
    proc.logs = (out, err)
    return proc


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT):
    """Wait for `proc`: (returncode, stdout, stderr); killed after `timeout` seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    texts = []
    for f in proc.logs:
        f.seek(0)
        texts.append(f.read())
        f.close()
    return proc.returncode, *texts


def train_args(workdir, *overrides) -> list:
    return [f"--config={CONFIG}", f"--workdir={workdir}", *overrides]


def check(result, what: str = "run"):
    rc, out, err = result
    assert rc == 0, f"{what} failed (exit {rc}):\n{err[-4000:]}"
    return result


def read_metrics(workdir) -> list:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def losses(workdir) -> list:
    return [r["loss"] for r in read_metrics(workdir)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_reference(tmp_path_factory):
    """Start the uninterrupted 1-device run of CONFIG that the test modules of one session share.

    Returns:
      (workdir, process), process None when an earlier module already made the run.
    """
    root = tmp_path_factory.getbasetemp()
    workdir = os.path.join(root, "digits_reference")
    if os.path.exists(os.path.join(workdir, "samples", "samples_4.npz")):
        return workdir, None
    return workdir, start(train_args(workdir), root)


def finish_reference(proc) -> None:
    if proc is not None:
        check(finish(proc), "reference run")
