"""Class-conditional runs and sampling a class (`sampling.task='class'`): classifier-free
guidance over classes (Ho & Salimans 2021) for a network with `model.num_classes`, classifier
guidance (Song et al. 2021, Sec. 5; Dhariwal & Nichol 2021) for an unconditional one with a
noise-conditional classifier run; labelled training batches with label dropout; and the
offline classifier's accuracy on the requested classes for `--mode eval`.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import datasets
import input_pipeline
import losses
import run_lib
import sampling
import visualize
from models import utils as mutils
from utils import ConfigError, require

EACH_CLASS = -1  # sampling.class_label: sample k gets class k mod K


def num_classes(config) -> int:
    """model.num_classes (0 when the config has no such key: an unconditional network)."""
    return int(config.model.get("num_classes", 0) or 0)


def is_class_run(config) -> bool:
    """A score run whose network is class-conditional."""
    other = any(k in config for k in ("text", "autoencoder", "classifier"))
    return num_classes(config) > 0 and not other


def handles(config) -> bool:
    """--mode sample / eval go here: sampling.task='class', a class-conditional run, or a
    classifier run (rejected with one line)."""
    task = str(config.sampling.get("task", "none"))
    return task == "class" or is_class_run(config) or "classifier" in config


# ---------------------------------------------------------------------------------------------
# Training: labelled batches, images prepared on device, label dropout
# ---------------------------------------------------------------------------------------------


def labelled_tables(source: datasets.ImageSource, key: str = "data.dataset") -> dict:
    """{'x': uint8 [N, H, W, C], 'class_labels': int32 [N]} of a labelled split, for
    `input_pipeline.table_batches`; ConfigError naming `key` for unlabelled data."""
    require(source.num_classes > 0, key, f"{source.name!r} has no class labels")
    items = [source[i] for i in range(len(source))]
    return {"x": np.stack([im for im, _ in items]),
            "class_labels": np.asarray([y for _, y in items], np.int32)}


def prepare_images(rng, x_uint8, centered: bool, random_flip: bool = False,
                   uniform_dequantization: bool = False):
    """uint8 images [B, H, W, C] -> model space (traceable), with the optional augmentations
    of `datasets.train_iterator`: uniform dequantisation (x + u) / 256 and horizontal flips."""
    f_rng, u_rng = jax.random.split(rng)
    x = x_uint8.astype(jnp.float32)
    x = (x + jax.random.uniform(u_rng, x.shape)) / 256.0 if uniform_dequantization else x / 255.0
    if random_flip:
        flip = jax.random.bernoulli(f_rng, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(flip, x[:, :, ::-1], x)
    return datasets.get_data_scaler(centered)(x)


def with_images(loss_fn, config):
    """loss_fn on uint8 batches {'x', 'class_labels'}: the images prepared first."""
    d = config.data

    def image_loss_fn(rng, params, batch):
        r_img, r_loss = jax.random.split(rng)
        x = prepare_images(r_img, batch["x"], d.get("centered", False),
                           d.get("random_flip", False), d.get("uniform_dequantization", False))
        return loss_fn(r_loss, params, {**batch, "x": x})

    return image_loss_fn


def class_parts(config, workdir: str) -> run_lib.RunParts:
    """The train loop's parts for a class-conditional score run (labels dropped to the null
    class with probability training.cond_drop_prob)."""
    exp = run_lib.build(config)
    k = num_classes(config)
    require(exp.images, "model.num_classes", "class-conditional runs need an image dataset")
    source = run_lib._image_source(config)
    require(source.num_classes == k, "model.num_classes",
            f"{k} does not match the {source.num_classes} classes of data.dataset="
            f"{config.data.dataset!r}")
    tables = labelled_tables(source)
    p_drop = float(config.training.get("cond_drop_prob", 0.1))
    loss_fn = losses.with_label_dropout(with_images(run_lib.get_loss_fn(config, exp), config),
                                        p_drop, k)
    optimizer = run_lib.get_optimizer(config)
    step_fn = losses.get_step_fn(loss_fn, optimizer, config.model.ema_rate,
                                 bool(config.model.get("ema_warmup", False)))
    batches = lambda start: input_pipeline.table_batches(tables, config.training.batch_size,
                                                         config.seed, exp.mesh)
    spec = guidance_spec(config, exp)
    labels = class_labels(config, spec.num_classes, int(config.sampling.num_samples))
    sampler = ClassSampler(config, exp, spec, min(int(config.sampling.batch_size), len(labels)))

    def snapshot(params, step, writer):
        rng = jax.random.fold_in(run_lib._key(config, run_lib.STREAM_SAMPLE), step)
        x = sampler(rng, params, labels)
        write_class_samples(workdir, f"samples_{step}", x, labels, spec, sampler.nfe, writer,
                            step)

    return run_lib.RunParts(lambda: run_lib.init_params(config, exp), optimizer, step_fn,
                            batches, snapshot, exp.mesh)


# ---------------------------------------------------------------------------------------------
# Guidance: what conditions the score, checked before anything runs
# ---------------------------------------------------------------------------------------------


class GuidanceSpec(NamedTuple):
    """How a run samples a class: num_classes K, guidance_scale (classifier-free, conditional
    networks), classifier (classifier_lib.Classifier or None) and classifier_scale."""

    num_classes: int
    guidance_scale: float
    classifier: object  # classifier_lib.Classifier or None
    classifier_scale: float


def _scale(config, key: str, default: float) -> float:
    w = float(config.sampling.get(key, default))
    require(w >= 0, f"sampling.{key}", f"must be >= 0 (0: unguided, 1: the conditional), got {w}")
    return w


def guidance_spec(config, exp) -> GuidanceSpec:
    """The run's class guidance; ConfigError (naming the key) for an unconditional run
    without a classifier, or a classifier of another SDE, image shape or class count."""
    k = num_classes(config)
    w = _scale(config, "guidance_scale", 1.0)
    cls_dir = str(config.sampling.get("classifier_workdir", "") or "")
    if k == 0:
        require(bool(cls_dir), "sampling.classifier_workdir",
                "sampling.task='class' on an unconditional run (model.num_classes=0) needs a "
                "noise-conditional classifier run: python main.py --mode train --config "
                "configs/digits/classifier.py --workdir CLS, then "
                "--config.sampling.classifier_workdir=CLS")
    classifier = None
    if cls_dir:
        import classifier_lib  # it builds on this module's labelled batches

        classifier = classifier_lib.load(cls_dir, exp.sde, exp.shape,
                                         bool(config.data.get("centered", False)))
        require(k in (0, classifier.num_classes), "sampling.classifier_workdir",
                f"the classifier has {classifier.num_classes} classes, the network "
                f"model.num_classes={k}")
        k = classifier.num_classes
    return GuidanceSpec(k, w, classifier, _scale(config, "classifier_scale", 1.0))


def class_labels(config, k: int, num: int) -> np.ndarray:
    """[num] int32 requested classes: sampling.class_label, or each class in turn for -1."""
    label = int(config.sampling.get("class_label", EACH_CLASS))
    if label == EACH_CLASS:
        return (np.arange(num) % k).astype(np.int32)
    require(0 <= label < k, "sampling.class_label",
            f"{label} is outside [0, {k}) (the run's classes), or -1 for each class in turn")
    return np.full((num,), label, np.int32)


def guided_score_fn(exp, spec: GuidanceSpec, params, cls_params, labels, continuous: bool):
    """score_fn(x, t) of the requested classes `labels` [B] (traceable)."""
    if spec.guidance_scale == 1.0 or num_classes_of(exp.model) == 0:
        cond = dict(class_labels=labels) if num_classes_of(exp.model) else {}
        score_fn = mutils.get_score_fn(exp.sde, exp.model, {"params": params}, continuous,
                                       **cond)
    else:
        score_fn = mutils.get_score_fn(
            exp.sde, exp.model, {"params": params}, continuous, class_labels=labels,
            guidance_scale=spec.guidance_scale, null_class_labels=spec.num_classes)
    if spec.classifier is None:
        return score_fn
    log_prob_fn = spec.classifier.log_prob_fn(cls_params)
    return mutils.classifier_guided_score_fn(score_fn, log_prob_fn, labels,
                                             spec.classifier_scale)


def num_classes_of(model) -> int:
    return int(getattr(model, "num_classes", 0) or 0)


class ClassSampler:
    """Samples of given classes in [0, 1]: one jitted program of `batch_size` samples, called
    as sampler(rng, params, labels [N]) -> [N, ...] float32; batch i uses fold_in(rng, i)."""

    def __init__(self, config, exp, spec: GuidanceSpec, batch_size: int):
        self.batch_size, self.nfe = batch_size, None
        sampler = sampling.get_sampler(config, exp.sde, (batch_size,) + exp.shape)
        continuous = bool(config.training.continuous)
        inverse = datasets.get_data_inverse_scaler(config.data.get("centered", False))
        self._cls_params = None if spec.classifier is None else spec.classifier.params

        @jax.jit
        def generate(rng, params, cls_params, labels):
            score_fn = guided_score_fn(exp, spec, params, cls_params, labels, continuous)
            x, nfe = sampler(rng, score_fn)
            return jnp.clip(inverse(x), 0.0, 1.0), nfe

        self._generate = generate

    def __call__(self, rng, params, labels) -> np.ndarray:
        out, b = [], self.batch_size
        for i, start in enumerate(range(0, len(labels), b)):
            chunk = labels[start:start + b]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], b - len(chunk))])
            x, nfe = self._generate(jax.random.fold_in(rng, i), params, self._cls_params,
                                    jnp.asarray(padded, jnp.int32))
            self.nfe = int(run_lib.fetch(nfe))
            out.append(run_lib.fetch(x)[: len(chunk)])
        return np.concatenate(out).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# --mode sample / --mode eval
# ---------------------------------------------------------------------------------------------


def write_class_samples(workdir, name, images, labels, spec, nfe, writer=None, step=0) -> str:
    """samples/<name>.npz (samples, labels, guidance_scale, classifier_scale, nfe) and a PNG
    grid with each image's class under it; returns the npz path."""
    out = os.path.join(workdir, "samples")
    path = os.path.join(out, f"{name}.npz")
    if not run_lib.is_main_process():
        return path
    os.makedirs(out, exist_ok=True)
    np.savez(path + ".tmp.npz", samples=images, labels=labels,
             guidance_scale=np.float32(spec.guidance_scale),
             classifier_scale=np.float32(spec.classifier_scale if spec.classifier else 0.0),
             nfe=np.int32(nfe or 0))
    os.replace(path + ".tmp.npz", path)
    k = min(len(images), 64)
    grid = visualize.save_labelled_grid(path[:-4] + ".png", images[:k],
                                        [str(y) for y in labels[:k]], ncol=min(k, 10),
                                        scale=max(1, -(-run_lib.GRID_MIN_SIDE
                                                       // images.shape[1])))
    if writer is not None:
        writer.add_image("samples", grid, step, dataformats="HWC")
    return path


def _prepare(config, workdir: str, num: int):
    """(exp, spec, labels, params, step), every check done before anything is written."""
    exp = run_lib.build(config)
    require(exp.images, "sampling.task", f"'class' needs an image run, not data.dataset="
            f"{config.data.dataset!r}")
    spec = guidance_spec(config, exp)
    labels = class_labels(config, spec.num_classes, num)
    params, step = run_lib.load_ema(config, exp, workdir)
    return exp, spec, labels, params, step


def sample(config, workdir: str) -> str:
    """--mode sample of a class: sampling.num_samples samples of sampling.class_label (-1:
    each class in turn) into samples/class_<step>.npz and its PNG; returns the npz path."""
    num = int(config.sampling.num_samples)
    exp, spec, labels, params, step = _prepare(config, workdir, num)
    sampler = ClassSampler(config, exp, spec, min(int(config.sampling.batch_size), num))
    rng = jax.random.fold_in(run_lib._key(config, run_lib.STREAM_SAMPLE), step)
    x = sampler(rng, params, labels)
    return write_class_samples(workdir, f"class_{step}", x, labels, spec, sampler.nfe)


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> dict:
    """{'class_accuracy': mean [argmax logits == label], 'class_accuracy_<k>': per class}."""
    hit = np.argmax(np.asarray(logits), axis=-1) == np.asarray(labels)
    out = {"class_accuracy": float(hit.mean())}
    for k in np.unique(labels):
        out[f"class_accuracy_{int(k)}"] = float(hit[labels == k].mean())
    return out


def evaluate(config, workdir: str) -> dict:
    """--mode eval of a class: the offline classifier's accuracy on eval.num_samples samples
    of the requested classes, and the Fréchet distance in its feature space when the reference
    statistics exist; eval/class_<step>.json."""
    import classifier_lib
    import eval_lib
    import evaluation

    classifier_lib.reject_mode(config, "eval")
    num = int(config.eval.num_samples)
    exp, spec, labels, params, step = _prepare(config, workdir, num)
    net = eval_lib.feature_network(config)
    sampler = ClassSampler(config, exp, spec, min(int(config.eval.batch_size), num))
    x = sampler(jax.random.fold_in(run_lib._key(config, run_lib.STREAM_EVAL), step), params,
                labels)
    feats, logits = evaluation.network_features(net, eval_lib._net_images(net, x))
    if logits.shape[-1] != spec.num_classes:
        raise ConfigError(f"data.dataset={config.data.dataset!r}: the offline classifier has "
                          f"{logits.shape[-1]} classes, the run {spec.num_classes}")
    out = {"step": step, "task": "class", "num_samples": len(x), "nfe": sampler.nfe,
           "guidance_scale": spec.guidance_scale,
           "classifier_scale": spec.classifier_scale if spec.classifier else 0.0,
           **class_accuracy(logits, labels)}
    if os.path.exists(eval_lib.stats_path(config, workdir)):
        mu, sigma, _ = eval_lib.reference_stats(config, workdir, net)
        stats = evaluation.FeatureStats().update(feats)
        name = evaluation.metric_names(net)["frechet_distance"]
        out[name] = float(evaluation.frechet_distance(stats.mean, stats.cov, mu, sigma))
    if run_lib.is_main_process():
        os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
        with open(os.path.join(workdir, "eval", f"class_{step}.json"), "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps(out))
    return out
