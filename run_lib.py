"""Train / sample / evaluate loops over a workdir (checkpoints, metrics, samples, TensorBoard).

The only module besides the factories that reads a whole ConfigDict; everything below it takes
explicit arguments. Training is data-parallel over every device of every host: one jitted,
buffer-donating step sees batches split over the mesh's 'data' axis and replicated parameters.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import checkpointing
import datasets
import evaluation
import input_pipeline
import likelihood
import losses
import models
import precision
import sampling
import sde_lib
import visualize
from models import utils as mutils
from utils import ConfigError, choose, require

# Independent random streams derived from config.seed.
STREAM_DATA, STREAM_TRAIN, STREAM_INIT, STREAM_SAMPLE, STREAM_EVAL, STREAM_TEST = range(6)

GRID_MIN_SIDE = 64  # sample grids upscale each image to at least this many pixels


class DivergenceError(ConfigError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def _key(config, stream: int):
    return jax.random.fold_in(jax.random.PRNGKey(config.seed), stream)


def is_main_process() -> bool:
    return jax.process_index() == 0


def fetch(x) -> np.ndarray:
    """A replicated array as numpy, also when it spans the devices of several hosts."""
    return np.asarray(x if x.is_fully_addressable else x.addressable_data(0))


def fetch_tree(tree):
    """`fetch` applied to every array of a pytree."""
    return jax.tree.map(fetch, tree)


# ---------------------------------------------------------------------------------------------
# Validation and construction
# ---------------------------------------------------------------------------------------------


def validate(config) -> None:
    """Stop early, with the config key named, on impossible values."""
    t = config.training
    for key in ("batch_size", "n_iters", "n_jitted_steps", "log_freq", "snapshot_freq",
                "snapshot_freq_for_preemption"):
        require(int(t[key]) >= 1, f"training.{key}", f"must be >= 1, got {t[key]}")
    n_dev = jax.device_count()
    require(t.batch_size % n_dev == 0, "training.batch_size",
            f"{t.batch_size} is not divisible by the {n_dev} devices")
    choose("training.compute_dtype", t.get("compute_dtype", "float32"), precision.COMPUTE_DTYPES)
    require(0 <= config.model.ema_rate < 1, "model.ema_rate",
            f"must be in [0, 1), got {config.model.ema_rate}")
    require(config.optim.lr > 0, "optim.lr", f"must be > 0, got {config.optim.lr}")
    require(config.sampling.num_samples >= 1, "sampling.num_samples",
            f"must be >= 1, got {config.sampling.num_samples}")
    choose("data.dataset", config.data.dataset, [*datasets.TOY, *datasets.IMAGE_DATASETS])


class Experiment(NamedTuple):
    sde: sde_lib.SDE
    model: object
    shape: tuple  # one example's shape: (D,) or (H, W, C)
    mesh: jax.sharding.Mesh
    images: bool


def _data_shape(config) -> tuple:
    d = config.data
    if d.dataset in datasets.TOY:
        require(int(d.dim) == 2, "data.dim", f"the embedded toy sets are 2-D, got {d.dim}")
        return (2,)
    require(isinstance(d.image_size, int) and d.image_size > 0, "data.image_size",
            f"must be a positive integer, got {d.image_size!r}")
    require(d.num_channels in (1, 3), "data.num_channels", f"must be 1 or 3, got {d.num_channels}")
    return (d.image_size, d.image_size, d.num_channels)


def make_mesh() -> jax.sharding.Mesh:
    """All devices on one 'data' axis (Auto: XLA propagates the batch sharding through the
    sharding-agnostic networks)."""
    return jax.make_mesh((jax.device_count(),), ("data",), (jax.sharding.AxisType.Auto,))


def build(config) -> Experiment:
    """SDE, model, data shape and device mesh from the config, after validation."""
    validate(config)
    sde = sde_lib.get_sde(config)
    model = models.get_model(config)
    shape = _data_shape(config)
    mesh = make_mesh()
    # Fail on sampler settings before any training happens.
    sampling.get_sampler(config, sde, (1,) + shape)
    return Experiment(sde, model, shape, mesh, config.data.dataset in datasets.IMAGE_DATASETS)


def override(config, updates: dict):
    """A copy of `config` with dotted fields replaced, e.g. {"sampling.batch_size": 64}."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for key, value in updates.items():
            *path, name = key.split(".")
            node = config
            for part in path:
                node = node[part]
            node[name] = value
    return config


def init_params(config, exp: Experiment):
    x = jnp.zeros((1,) + exp.shape)
    labels = jnp.ones((1,))
    # class-conditional networks (model.num_classes > 0) create their class embedding
    cond = {"class_labels": jnp.zeros((1,), jnp.int32)} if getattr(exp.model, "num_classes",
                                                                   0) else {}
    k_params, k_drop = jax.random.split(_key(config, STREAM_INIT))
    return exp.model.init({"params": k_params, "dropout": k_drop}, x, labels, train=False,
                          **cond)["params"]


def init_state(make_params, optimizer, mesh, params=None) -> losses.TrainState:
    """The step-0 train state, replicated over the mesh (one jitted call on every host).

    Args:
      make_params: () -> the initial parameter tree (traced under jit).
      optimizer: the optax transformation. mesh: the device mesh.
      params: given initial parameters (e.g. a pretrained checkpoint's), passed to the jitted
        call as an argument so they are not compiled in as constants; None: make_params().
    """
    def make(given):  # strong types, as the train step returns (else its second call recompiles)
        state = losses.init_train_state(make_params() if given is None else given, optimizer)
        return jax.tree.map(lambda a: jax.lax.convert_element_type(a, a.dtype), state)

    return jax.jit(make, out_shardings=NamedSharding(mesh, P()))(params)


def restore_ema(make_params, optimizer, mesh, workdir: str, step: int | None = None):
    """EMA parameters (replicated over the mesh) and step of checkpoint `step` of `workdir`
    (the latest when None) for a run whose parameters `make_params()` builds; ConfigError if
    there is none."""
    checkpointing.require_checkpoint(workdir)
    abstract = jax.eval_shape(lambda: losses.init_train_state(make_params(), optimizer))
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=NamedSharding(mesh, P())),
        abstract,
    )
    manager = checkpointing.get_manager(workdir, read_only=True)
    try:
        require(step is None or step in manager.all_steps(), "checkpoint",
                f"no step {step} in {checkpointing.checkpoint_dir(workdir)}; it holds "
                f"{sorted(manager.all_steps())}")
        state, step = checkpointing.restore(manager, abstract, step)
    finally:
        manager.close()
    return state.ema_params, step


def get_optimizer(config):
    o = config.optim
    return losses.get_optimizer(o.lr, o.beta1, o.eps, o.warmup, o.grad_clip, o.weight_decay,
                                o.optimizer, o.get("schedule", "constant"),
                                config.training.n_iters)


def get_loss_fn(config, exp: Experiment, train: bool = True):
    """The configured objective; when training, the network runs in `training.compute_dtype`
    (evaluation stays float32)."""
    t = config.training
    model = precision.with_compute_dtype(
        exp.model, t.get("compute_dtype", "float32") if train else "float32")
    return losses.get_loss_fn(exp.sde, model, train, t.method, t.continuous, t.reduce_mean,
                              t.likelihood_weighting, t.get("P_mean", -1.2), t.get("P_std", 1.2))


def _image_source(config) -> datasets.ImageSource:
    """The training split (ConfigError for an unknown name, a bad size, missing data)."""
    d = config.data
    return datasets.get_dataset(d.dataset, "train", d.image_size, d.num_channels,
                                d.get("data_dir"))


def _train_batches(config, exp: Experiment, source, start: int):
    """(step, n) -> [n, B, ...] global batches in model space, for steps start, start + 1, ..."""
    t, d = config.training, config.data
    if not exp.images:
        return input_pipeline.toy_batches(d.dataset, _key(config, STREAM_DATA), t.batch_size,
                                          exp.mesh)
    return input_pipeline.image_batches(
        source, t.batch_size, config.seed, start, exp.mesh,
        datasets.get_data_scaler(d.get("centered", False)), d.get("random_flip", True),
        d.get("uniform_dequantization", False))


# ---------------------------------------------------------------------------------------------
# Sampling and writing samples
# ---------------------------------------------------------------------------------------------


def get_generator(config, exp: Experiment, batch_size: int, make_sampler=None):
    """A jitted (rng, params) -> (samples [batch_size, ...] in model space, nfe per sample),
    compiled once and reusable across calls (and checkpoints).

    Args:
      config, exp: the run.
      batch_size: samples per call.
      make_sampler: shape -> sampler(rng, score_fn); default: the configured sampler.

    The batch is split over the devices when it divides evenly (else every device computes
    all of it).
    """
    shape = (batch_size,) + exp.shape
    sampler = make_sampler(shape) if make_sampler else sampling.get_sampler(config, exp.sde, shape)
    continuous = bool(config.training.continuous)
    replicated = NamedSharding(exp.mesh, P())
    split = (NamedSharding(exp.mesh, P("data")) if batch_size % exp.mesh.size == 0
             else replicated)

    @functools.partial(jax.jit, out_shardings=replicated)
    def run(rng, params):
        net = mutils.get_score_fn(exp.sde, exp.model, {"params": params}, continuous)
        score_fn = lambda x, t: net(jax.lax.with_sharding_constraint(x, split), t)
        return sampler(rng, score_fn)

    return run


def generate(config, exp: Experiment, params, rng, num: int, make_sampler=None, generator=None):
    """`num` samples from the EMA network: ([num, ...] in model space, nfe per sample).

    Args:
      config, exp: the run (`sampling.batch_size` samples per jitted call).
      params: network parameters (replicated over the mesh).
      rng: PRNG key; batch i uses fold_in(rng, i).
      num: number of samples.
      make_sampler: shape -> sampler(rng, score_fn); default: the configured sampler.
      generator: from `get_generator` (its batch size is then used), to reuse a compiled one.
    """
    if generator is None:
        generator = get_generator(config, exp, min(int(config.sampling.batch_size), num),
                                  make_sampler)
    out, nfe, have = [], 0, 0
    i = 0
    while have < num:
        x, nfe = generator(np.asarray(jax.random.fold_in(rng, i)), params)
        out.append(fetch(x))
        have += len(out[-1])
        i += 1
    return np.concatenate(out)[:num], int(fetch(nfe))


def write_samples(config, exp: Experiment, workdir: str, params, step: int, writer=None,
                  generator=None):
    """samples/samples_<step>.npz (key 'samples', float32 in data space: images in [0, 1], NHWC)
    and a PNG beside it (a scatter plot, or an upscaled image grid); returns the samples.
    `generator`: a compiled one from `get_generator`, reused across snapshots."""
    rng = jax.random.fold_in(_key(config, STREAM_SAMPLE), step)
    x, nfe = generate(config, exp, params, rng, int(config.sampling.num_samples),
                      generator=generator)
    if exp.images:
        x = datasets.get_data_inverse_scaler(config.data.get("centered", False))(x)
        x = np.clip(x, 0.0, 1.0)
    x = x.astype(np.float32)
    if not is_main_process():
        return x
    out_dir = os.path.join(workdir, "samples")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"samples_{step}.npz")
    np.savez(path + ".tmp.npz", samples=x, nfe=nfe)
    os.replace(path + ".tmp.npz", path)
    png = os.path.join(out_dir, f"samples_{step}.png")
    if exp.images:
        grid = visualize.save_image_grid(png, x, scale=-(-GRID_MIN_SIDE // exp.shape[0]))
        if writer is not None:
            writer.add_image("samples", grid, step, dataformats="HWC")
        return x
    data = np.asarray(datasets.sample_toy(config.data.dataset, _key(config, STREAM_TEST), len(x)))
    fig = visualize.scatter_figure(x, data, title=f"samples, step {step}")
    fig.savefig(png, dpi=100)
    if writer is not None:
        writer.add_figure("samples", fig, step)
    visualize.plt.close(fig)
    return x


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _metrics_log(workdir: str, resume_step: int):
    """Open metrics.jsonl for appending, dropping lines past `resume_step` (not checkpointed)."""
    path = os.path.join(workdir, "metrics.jsonl")
    kept = []
    if os.path.exists(path):
        with open(path) as f:
            kept = [ln for ln in f if ln.strip() and json.loads(ln)["step"] <= resume_step]
    with open(path, "w") as f:
        f.writelines(kept)
    return open(path, "a")


def _steps_to_boundary(step, config) -> int:
    """Steps until the next log / checkpoint / sample / n_jitted_steps boundary (0 at the end)."""
    t = config.training
    freqs = (t.log_freq, t.snapshot_freq, t.snapshot_freq_for_preemption, t.n_jitted_steps)
    return max(min([t.n_iters] + [(step // f + 1) * f for f in freqs]) - step, 0)


def _check_finite(step_losses, step: int, manager, workdir: str) -> None:
    """DivergenceError naming the first non-finite loss of steps step + 1, step + 2, ..."""
    finite = np.isfinite(step_losses)
    if finite.all():
        return
    i = int(np.argmin(finite))
    manager.wait_until_finished()
    raise DivergenceError(
        f"training diverged: loss is {step_losses[i]} at step {step + i + 1}; last good "
        f"checkpoint: step {manager.latest_step()} in {checkpointing.checkpoint_dir(workdir)} "
        "(lower optim.lr or raise optim.warmup / optim.grad_clip)"
    )


def _jit_train_steps(step_fn, train_key, replicated):
    """Jitted (state, batches [n, B, ...]) -> (state, losses [n]), donating the state.

    n > 1 steps run under lax.scan; one step runs without it, since XLA:CPU runs convolutions
    inside a loop about 10x slower (digits DDPM++: 0.4 vs 4.5 steps/s, measured). Batches may be
    a pytree of [n, B, ...] arrays (conditional runs).
    """
    jit = functools.partial(jax.jit, out_shardings=(replicated, replicated), donate_argnums=0)
    several = jit(losses.get_multi_step_fn(step_fn, train_key))

    def one(state, batches):
        batch = jax.tree.map(lambda b: b[0], batches)
        state, loss = step_fn(state, batch, jax.random.fold_in(train_key, state.step))
        return state, loss[None]

    one = jit(one)
    return lambda state, b: (one if jax.tree.leaves(b)[0].shape[0] == 1 else several)(state, b)


class RunParts(NamedTuple):
    """What the generic train loop needs from one kind of run (score, autoencoder, text).

    make_params: () -> initial parameters (traced under jit). optimizer: optax transformation.
    step_fn: (state, batch, rng) -> (state, loss). batches: start_step -> (step, n) -> [n, B, ...]
    pytree. snapshot: (ema_params, step, writer) -> None, writes samples / reconstructions.
    mesh: device mesh. finish: (state, workdir) -> None after the last step, or None.
    convolutional: log images/s. initial_params: given starting
    parameters (fine-tuning a checkpoint), an argument of the initialiser, not a constant.
    """

    make_params: Callable
    optimizer: object
    step_fn: Callable
    batches: Callable
    snapshot: Callable
    mesh: jax.sharding.Mesh
    finish: Callable | None = None
    convolutional: bool = True
    initial_params: object = None


def score_parts(config, workdir: str) -> RunParts:
    """The parts of an unconditional score-model run (toy or image data)."""
    exp = build(config)
    source = _image_source(config) if exp.images else None
    optimizer = get_optimizer(config)
    step_fn = losses.get_step_fn(get_loss_fn(config, exp), optimizer, config.model.ema_rate,
                                 bool(config.model.get("ema_warmup", False)))
    num_samples = int(config.sampling.num_samples)  # one sampler for all snapshots
    generator = get_generator(config, exp, min(int(config.sampling.batch_size), num_samples))
    snapshot = lambda params, step, writer: write_samples(config, exp, workdir, params, step,
                                                          writer, generator)
    return RunParts(lambda: init_params(config, exp), optimizer, step_fn,
                    lambda start: _train_batches(config, exp, source, start), snapshot, exp.mesh,
                    convolutional=exp.images)


def get_parts(config, workdir: str) -> RunParts:
    """The run's parts by its kind (`pipeline.run_kind`): score, autoencoder or text; and a
    noise-conditional classifier (`classifier_lib`) or a class-conditional score run
    (`class_lib`)."""
    import class_lib  # the conditional / latent runs build on this module
    import classifier_lib
    import pipeline

    if pipeline.run_kind(config) == "pretrained":  # fine-tuning a Stable Diffusion checkpoint
        return pipeline.get_parts(config, workdir)
    if classifier_lib.is_classifier_run(config):
        return classifier_lib.get_parts(config, workdir)
    if class_lib.is_class_run(config):
        return class_lib.class_parts(config, workdir)
    kind = pipeline.run_kind(config)
    return score_parts(config, workdir) if kind == "score" else pipeline.get_parts(config,
                                                                                   workdir)


def _log_step(log, writer, rec: dict) -> None:
    log.write(json.dumps(rec) + "\n")
    log.flush()
    for name, value in rec.items():
        if name != "step":
            writer.add_scalar(name, value, rec["step"])


def train(config, workdir: str) -> None:
    """Train (resuming from the latest checkpoint in workdir), logging and snapshotting.

    Score models (toy or image data), autoencoders and text-conditioned (latent) models, by
    `pipeline.run_kind`; on every host of a `jax.distributed` run (each reads its own rows of
    every batch); only process 0 writes metrics, TensorBoard and samples.
    """
    import tqdm
    from tensorboardX import SummaryWriter

    # --- Everything that can reject the config, before anything is written -------------------
    parts = get_parts(config, workdir)
    state = init_state(parts.make_params, parts.optimizer, parts.mesh, parts.initial_params)
    t = config.training
    max_seconds = float(t.get("max_seconds", 0) or 0)

    # --- Workdir: resume from the latest checkpoint ----------------------------------------
    os.makedirs(workdir, exist_ok=True)
    manager = checkpointing.get_manager(workdir, keep_period=t.snapshot_freq)
    restored, start = checkpointing.restore(manager, state)
    state = state if restored is None else restored
    step = start = int(start or 0)
    main = is_main_process()
    if main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    log = _metrics_log(workdir, start) if main else None
    writer = SummaryWriter(os.path.join(workdir, "tb")) if main else None

    # --- Loop: n jitted steps per call, up to the next log / checkpoint / sample step --------
    p_step = _jit_train_steps(parts.step_fn, _key(config, STREAM_TRAIN),
                              NamedSharding(parts.mesh, P()))
    next_batches = parts.batches(start)
    n = _steps_to_boundary(step, config)
    batches = next_batches(step, n) if n else None
    bar = tqdm.tqdm(total=t.n_iters, initial=start, disable=not main, unit="step",
                    dynamic_ncols=True)
    t_last, window, postfix = time.time(), [], {}
    t_begin = time.time()
    try:
        while step < t.n_iters:
            state, step_losses = p_step(state, batches)
            n_next = _steps_to_boundary(step + n, config)  # read while the device computes
            batches = next_batches(step + n, n_next) if n_next else None
            step_losses = fetch(step_losses)
            _check_finite(step_losses, step, manager, workdir)
            step += n
            window.extend(step_losses.tolist())
            postfix["loss"] = f"{np.mean(step_losses):.4f}"
            bar.update(n)
            bar.set_postfix(postfix)
            if step % t.log_freq == 0:
                rate = len(window) / max(time.time() - t_last, 1e-9)
                # "loss": mean over the steps since the previous log line.
                rec = {"step": step, "loss": float(np.mean(window)), "steps_per_sec": rate}
                if parts.convolutional:
                    rec["images_per_sec"] = rate * t.batch_size
                    postfix["img/s"] = f"{rec['images_per_sec']:.0f}"
                if main:
                    _log_step(log, writer, rec)
                window, t_last = [], time.time()
            out_of_time = max_seconds > 0 and time.time() - t_begin > max_seconds
            t_pause = time.time()  # checkpoints and samples do not count as training time
            snapshot = step % t.snapshot_freq == 0  # kept for good (eval sweeps use them)
            last = step == t.n_iters or out_of_time
            if snapshot or step % t.snapshot_freq_for_preemption == 0 or last:
                checkpointing.save(manager, step, state)
            if snapshot or last:
                parts.snapshot(state.ema_params, step, writer)
            t_last += time.time() - t_pause
            n = n_next
            if out_of_time:
                logging.warning("training.max_seconds=%s reached at step %d", max_seconds, step)
                break
        manager.wait_until_finished()
        if parts.finish is not None:
            parts.finish(state, workdir)
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()
        if main:
            log.close()
            writer.close()


# ---------------------------------------------------------------------------------------------
# Sampling and evaluation from a checkpoint
# ---------------------------------------------------------------------------------------------


def load_ema(config, exp: Experiment, workdir: str, step: int | None = None):
    """EMA parameters (replicated over the mesh) and step of checkpoint `step` of `workdir`
    (the latest when None); ConfigError if there is none."""
    return restore_ema(lambda: init_params(config, exp), get_optimizer(config), exp.mesh,
                       workdir, step)


_load_ema = load_ema  # the former private name


def sample(config, workdir: str) -> str:
    """Write samples of the latest checkpoint (and a TensorBoard image); returns the .npz path.
    Text runs sample their prompts (`pipeline.sample`), pretrained Stable Diffusion checkpoints
    theirs (`sd_pipeline.sample`); sampling.task='class' and
    class-conditional runs sample classes (`class_lib.sample`)."""
    from tensorboardX import SummaryWriter

    import pipeline

    pipeline.reject_mode(config, "sample")
    if pipeline.run_kind(config) == "pretrained":  # a Stable Diffusion checkpoint
        import sd_pipeline

        return sd_pipeline.sample(config, workdir)
    import tasks

    if tasks.task_of(config) in tasks.IMAGE_TASKS:
        return tasks.sample(config, workdir)
    import class_lib  # sampling.task='class', and class-conditional runs
    import classifier_lib

    classifier_lib.reject_mode(config, "sample")
    if class_lib.handles(config):
        return class_lib.sample(config, workdir)
    if pipeline.is_text_run(config):
        return pipeline.sample(config, workdir)
    exp = build(config)
    params, step = load_ema(config, exp, workdir)
    writer = SummaryWriter(os.path.join(workdir, "tb")) if is_main_process() else None
    try:
        write_samples(config, exp, workdir, params, step, writer)
    finally:
        if writer is not None:
            writer.close()
    return os.path.join(workdir, "samples", f"samples_{step}.npz")


def evaluate(config, workdir: str) -> dict:
    """Sample-quality distances to fresh data and held-out NLL (nats) of the latest checkpoint."""
    exp = build(config)
    if exp.images:
        raise ConfigError(f"--mode eval: not available yet for image datasets (data.dataset="
                          f"{config.data.dataset!r}); use --mode sample")
    params, step = load_ema(config, exp, workdir)
    e = config.eval
    rng = jax.random.fold_in(_key(config, STREAM_EVAL), step)
    x, nfe = generate(config, exp, params, rng, int(e.num_samples))
    data = datasets.sample_toy(config.data.dataset, _key(config, STREAM_EVAL), len(x))
    test = datasets.sample_toy(config.data.dataset, _key(config, STREAM_TEST), int(e.num_test))
    ll_fn = likelihood.get_likelihood_fn(exp.sde, e.hutchinson, e.rtol, e.atol)
    score_fn = mutils.get_score_fn(exp.sde, exp.model, {"params": params},
                                   bool(config.training.continuous))
    logp, _, ll_nfe = jax.jit(lambda r, v: ll_fn(r, score_fn, v))(rng, test)
    results = {
        "step": step,
        "energy_distance": float(evaluation.energy_distance(x, data)),
        "sliced_wasserstein": float(evaluation.sliced_wasserstein(rng, x, data)),
        "sampler_nfe": nfe,
        "nll_nats": float(-jnp.mean(logp)),
        "likelihood_nfe": int(ll_nfe),
        "num_samples": len(x),
        "num_test": int(e.num_test),
    }
    mixture = datasets.toy_mixture(config.data.dataset)
    if mixture is not None:
        results["true_nll_nats"] = float(-jnp.mean(mixture.log_prob(test)))
    if config.data.dataset == "checkerboard":  # fraction of the samples inside the squares
        results["in_squares"] = datasets.in_checkerboard(x)
    if is_main_process():
        out_dir = os.path.join(workdir, "eval")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"metrics_{step}.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results
