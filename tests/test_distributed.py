"""Data-parallel training on several devices and hosts logs the losses of one device.

4 forced CPU devices in one process (two steps per jitted call), and 2 processes of 2 CPU
devices each joined by jax.distributed over localhost (gloo collectives), train
tests/digits_tiny.py with the global batch of the 1-device reference run.
"""

import os

import numpy as np
import pytest
from image_runs import (
    check,
    finish,
    finish_reference,
    free_port,
    losses,
    read_metrics,
    start,
    start_reference,
    train_args,
)

import checkpointing


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    wd = {k: str(tmp_path_factory.mktemp(k)) for k in ("four_devices", "two_hosts", "batch6")}
    address = f"127.0.0.1:{free_port()}"
    hosts = [  # process 0 configured by flags, process 1 by the environment
        start([*train_args(wd["two_hosts"]), f"--coordinator_address={address}",
               "--num_processes=2", "--process_id=0"], root, devices=2),
        start(train_args(wd["two_hosts"]), root, devices=2, extra_env={
            "JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}),
    ]
    # Two steps per jitted call (under lax.scan), one log line per call.
    four = start(train_args(wd["four_devices"], "--config.training.n_jitted_steps=2",
                            "--config.training.log_freq=2"), root, devices=4)
    batch6 = start(train_args(wd["batch6"], "--config.training.batch_size=6"), root, devices=4)
    wd["reference"], reference = start_reference(tmp_path_factory)
    results = {"batch6": finish(batch6), "four_devices": finish(four)}
    results["two_hosts"] = [finish(h) for h in hosts]
    finish_reference(reference)
    return wd, results


def test_four_devices_log_the_losses_of_one(runs):
    wd, results = runs
    check(results["four_devices"], "4-device run")
    assert [r["step"] for r in read_metrics(wd["four_devices"])] == [2, 4]
    pair_means = np.mean(np.reshape(losses(wd["reference"]), (2, 2)), axis=1)
    np.testing.assert_allclose(losses(wd["four_devices"]), pair_means, rtol=1e-5)
    assert checkpointing.require_checkpoint(wd["four_devices"]) == 4


def test_two_processes_of_two_devices_log_the_losses_of_one(runs):
    wd, results = runs
    for p, result in enumerate(results["two_hosts"]):
        check(result, f"process {p} of 2")
    recs = read_metrics(wd["two_hosts"])  # written by process 0 only: one line per step
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    np.testing.assert_allclose(losses(wd["two_hosts"]), losses(wd["reference"]), rtol=1e-5)
    assert checkpointing.require_checkpoint(wd["two_hosts"]) == 4
    for name in ("config.json", "tb", "samples/samples_4.npz", "samples/samples_4.png"):
        assert os.path.exists(os.path.join(wd["two_hosts"], name)), name
    with np.load(os.path.join(wd["two_hosts"], "samples", "samples_4.npz")) as f:
        assert f["samples"].shape == (8, 8, 8, 1)


def test_batch_not_divisible_by_the_devices_is_one_line(runs):
    wd, results = runs
    rc, _, err = results["batch6"]
    assert rc == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: training.batch_size: 6 is not divisible by the 4 devices")
    assert not os.path.exists(wd["batch6"]) or not os.listdir(wd["batch6"])
