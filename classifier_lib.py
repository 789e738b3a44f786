"""The noise-conditional classifier run of classifier guidance (Song et al. 2021, Sec. 5 and
App. I.1; Dhariwal & Nichol 2021): its training parts (cross-entropy on data perturbed by the
run's SDE), its test accuracy at several noise levels, the `classifier.json` that records what
it was trained for, and loading it (`Classifier`) for the score runs it guides.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import class_lib
import datasets
import input_pipeline
import losses
import models
import run_lib
import sde_lib
from models import classifier as classifier_mod
from utils import ConfigError, bcast, require

INFO_FILE = "classifier.json"  # in the classifier's workdir: SDE, image shape, classes, accuracy
TRAIN_COMMAND = "python main.py --mode train --config configs/digits/classifier.py"
ACCURACY_TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)  # fractions of T where test accuracy is measured
SDE_FIELDS = ("sigma_min", "sigma_max", "beta_0", "beta_1", "sigma_data")  # marginal parameters


def is_classifier_run(config) -> bool:
    return "classifier" in config


def reject_mode(config, mode: str) -> None:
    """ConfigError for the modes a classifier run does not have."""
    if is_classifier_run(config):
        raise ConfigError(f"--mode {mode}: a classifier run has no samples; --mode train writes "
                          f"its test accuracy per noise level to WORKDIR/{INFO_FILE}; guide a "
                          "score run with --config.sampling.classifier_workdir=WORKDIR")


def build_classifier(config) -> classifier_mod.NoiseClassifier:
    """The NoiseClassifier of config.classifier (image size and channels from config.data)."""
    cls = classifier_mod.NoiseClassifier
    kwargs = models.section_kwargs(cls, config.classifier)
    kwargs.update(image_size=config.data.image_size, num_channels=config.data.num_channels)
    return cls(**kwargs)


def sde_record(sde) -> dict:
    """{'name': training.sde, and the parameters that set the SDE's marginals}."""
    name = next(k for k, v in sde_lib.SDES.items() if type(sde) is v)
    return {"name": name, **{f: float(getattr(sde, f)) for f in SDE_FIELDS if hasattr(sde, f)}}


def _same_sde(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and a["name"] == b["name"] and all(
        np.isclose(a[k], b[k], rtol=1e-6) for k in a if k != "name")


def params_fn(config, net):
    """() -> initial classifier parameters."""
    s, c = config.data.image_size, config.data.num_channels
    key = run_lib._key(config, run_lib.STREAM_INIT)
    return lambda: net.init({"params": key, "dropout": key}, jnp.zeros((1, s, s, c)),
                            jnp.zeros((1,)))["params"]


# ---------------------------------------------------------------------------------------------
# Training and test accuracy per noise level
# ---------------------------------------------------------------------------------------------


def accuracy_fn(net, sde, centered: bool, tables: dict, batch_size: int = 500):
    """params -> [{'t', 'log_snr', 'accuracy'}] on labelled `tables`, one entry per
    ACCURACY_TIMES (fixed noise, so checkpoints compare)."""
    scaler = datasets.get_data_scaler(centered)
    times = [sde.eps if f == 0 else f * sde.T for f in ACCURACY_TIMES]

    @jax.jit
    def hits(params, x, y, t, key):
        x = scaler(x.astype(jnp.float32) / 255.0)
        t = jnp.full((x.shape[0],), t, jnp.float32)
        mean, std = sde.marginal_prob(x, t)
        x_t = mean + bcast(std, x) * jax.random.normal(key, x.shape)
        logits = classifier_mod.noisy_logits(net, {"params": params}, sde, x_t, t)
        return jnp.argmax(logits, axis=-1) == y

    def accuracy(params):
        rows = []
        for i, t in enumerate(times):
            got = [hits(params, tables["x"][s:s + batch_size],
                        tables["class_labels"][s:s + batch_size], t,
                        jax.random.fold_in(jax.random.PRNGKey(0), 1000 * i + s))
                   for s in range(0, len(tables["x"]), batch_size)]
            lam = float(sde_lib.log_snr(sde, jnp.asarray(t, jnp.float32)))
            rows.append({"t": float(t), "log_snr": lam,
                         "accuracy": float(np.mean(np.concatenate([np.asarray(g) for g in got])))})
        return rows

    return accuracy


def write_info(workdir: str, config, sde, net, step: int, accuracy: list) -> str:
    """WORKDIR/classifier.json: what the classifier was trained for and its test accuracy."""
    info = {"sde": sde_record(sde), "num_classes": int(net.num_classes),
            "image_shape": [net.image_size, net.image_size, net.num_channels],
            "centered": bool(config.data.get("centered", False)), "step": int(step),
            "test_accuracy": accuracy}
    path = os.path.join(workdir, INFO_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(info, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


def get_parts(config, workdir: str) -> run_lib.RunParts:
    """The train loop's parts for a classifier run."""
    run_lib.validate(config)
    net, sde = build_classifier(config), sde_lib.get_sde(config)
    net.check((1, config.data.image_size, config.data.image_size, config.data.num_channels))
    d = config.data
    train = run_lib._image_source(config)
    require(train.num_classes == net.num_classes, "classifier.num_classes",
            f"{net.num_classes} does not match the {train.num_classes} classes of "
            f"data.dataset={d.dataset!r}")
    tables = class_lib.labelled_tables(train)
    test = class_lib.labelled_tables(datasets.get_dataset(d.dataset, "test", d.image_size,
                                                          d.num_channels, d.get("data_dir")))
    loss_fn = class_lib.with_images(losses.get_classifier_loss_fn(sde, net, True), config)
    optimizer = run_lib.get_optimizer(config)
    step_fn = losses.get_step_fn(loss_fn, optimizer, config.model.ema_rate,
                                 bool(config.model.get("ema_warmup", False)))
    mesh = run_lib.make_mesh()
    batches = lambda start: input_pipeline.table_batches(
        tables, config.training.batch_size, config.seed, mesh)
    accuracy = accuracy_fn(net, sde, bool(d.get("centered", False)), test)

    def snapshot(params, step, writer):
        rows = accuracy(params)
        if run_lib.is_main_process():
            write_info(workdir, config, sde, net, step, rows)
            for r in rows:
                writer.add_scalar(f"test_accuracy/t={r['t']:.3g}", r["accuracy"], step)
        print(json.dumps({"step": int(step), "test_accuracy": rows}))

    return run_lib.RunParts(params_fn(config, net), optimizer, step_fn, batches, snapshot, mesh)


# ---------------------------------------------------------------------------------------------
# Loading a trained classifier for guidance
# ---------------------------------------------------------------------------------------------


class Classifier(NamedTuple):
    """A trained noise-conditional classifier: net, params (EMA), sde, info (classifier.json),
    workdir."""

    net: classifier_mod.NoiseClassifier
    params: dict
    sde: sde_lib.SDE
    info: dict
    workdir: str

    @property
    def num_classes(self) -> int:
        return int(self.info["num_classes"])

    def log_prob_fn(self, params=None):
        """(x, t) -> [B, K] log p_t(k | x) (traceable; `params` default: the loaded ones)."""
        return classifier_mod.get_log_prob_fn(self.net, {"params": self.params if params is None
                                                         else params}, self.sde)


def _read(workdir: str, key: str) -> tuple:
    """(config, info) of a classifier run, or a ConfigError naming `key`."""
    path = os.path.join(workdir, "config.json")
    require(os.path.exists(path), key, f"{workdir!r}: no run there (no {path}); train one: "
            f"{TRAIN_COMMAND} --workdir {workdir}")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    require("classifier" in config, key, f"{workdir} is not a classifier run (its config has "
            "no classifier section)")
    info_path = os.path.join(workdir, INFO_FILE)
    require(os.path.exists(info_path), key, f"{workdir} has no {INFO_FILE}: train it to its "
            f"first snapshot ({TRAIN_COMMAND} --workdir {workdir})")
    with open(info_path) as f:
        return config, json.load(f)


def load(workdir: str, sde, shape, centered: bool,
         key: str = "sampling.classifier_workdir") -> Classifier:
    """The classifier of `workdir` for a score run of `sde`, image `shape` and data scaling;
    ConfigError naming `key` when it was trained for anything else."""
    config, info = _read(workdir, key)
    want = sde_record(sde)
    require(_same_sde(info["sde"], want), key, f"{workdir} was trained for the SDE "
            f"{info['sde']}, this run uses {want} (training.sde, model.beta_* / sigma_*)")
    require(tuple(info["image_shape"]) == tuple(shape), key, f"{workdir} was trained on images "
            f"of shape {tuple(info['image_shape'])}, this run's are {tuple(shape)} "
            "(data.image_size, data.num_channels)")
    require(bool(info["centered"]) == bool(centered), key, f"{workdir} was trained with "
            f"data.centered={info['centered']}, this run has {centered}")
    net = build_classifier(config)
    params, _ = run_lib.restore_ema(params_fn(config, net), run_lib.get_optimizer(config),
                                    run_lib.make_mesh(), workdir)
    return Classifier(net, run_lib.fetch_tree(params), sde, info, workdir)
