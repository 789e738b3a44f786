"""Train / sample / evaluate loops over a workdir (checkpoints, metrics, samples, TensorBoard).

The only module besides the factories that reads a whole ConfigDict; everything below it takes
explicit arguments.
"""

from __future__ import annotations

import json
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import checkpointing
import datasets
import evaluation
import likelihood
import losses
import models
import sampling
import sde_lib
import visualize
from models import utils as mutils
from utils import ConfigError, choose, require

# Independent random streams derived from config.seed.
STREAM_DATA, STREAM_TRAIN, STREAM_INIT, STREAM_SAMPLE, STREAM_EVAL, STREAM_TEST = range(6)


class DivergenceError(ConfigError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def _key(config, stream: int):
    return jax.random.fold_in(jax.random.PRNGKey(config.seed), stream)


def is_main_process() -> bool:
    return jax.process_index() == 0


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
    require(0 <= config.model.ema_rate < 1, "model.ema_rate",
            f"must be in [0, 1), got {config.model.ema_rate}")
    require(config.optim.lr > 0, "optim.lr", f"must be > 0, got {config.optim.lr}")
    require(config.sampling.num_samples >= 1, "sampling.num_samples",
            f"must be >= 1, got {config.sampling.num_samples}")


class Experiment(NamedTuple):
    sde: sde_lib.SDE
    model: object
    shape: tuple  # one example's shape
    mesh: jax.sharding.Mesh


def build(config) -> Experiment:
    """SDE, model and data shape from the config, after validation."""
    validate(config)
    sde = sde_lib.get_sde(config)
    model = models.get_model(config)
    if config.data.dataset in datasets.TOY:
        shape = (int(config.data.dim),)
        require(shape == (2,), "data.dim", f"the embedded toy sets are 2-D, got {shape[0]}")
    else:
        choose("data.dataset", config.data.dataset, datasets.TOY)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    # Fail on sampler settings before any training happens.
    sampling.get_sampler(config, sde, (1,) + shape)
    return Experiment(sde, model, shape, mesh)


def init_params(config, exp: Experiment):
    x = jnp.zeros((1,) + exp.shape)
    labels = jnp.ones((1,))
    k_params, k_drop = jax.random.split(_key(config, STREAM_INIT))
    return exp.model.init({"params": k_params, "dropout": k_drop}, x, labels, train=False)["params"]


def get_optimizer(config):
    o = config.optim
    return losses.get_optimizer(o.lr, o.beta1, o.eps, o.warmup, o.grad_clip, o.weight_decay,
                                o.optimizer, o.get("schedule", "constant"),
                                config.training.n_iters)


def get_loss_fn(config, exp: Experiment, train: bool = True):
    t = config.training
    return losses.get_loss_fn(exp.sde, exp.model, train, t.method, t.continuous, t.reduce_mean,
                              t.likelihood_weighting)


def _toy_batch_fn(config, exp: Experiment):
    """Jitted (step0, n) -> [n, B, D] batches; batch s is drawn from fold_in(data_key, s)."""
    key, name, b = _key(config, STREAM_DATA), config.data.dataset, config.training.batch_size
    sharding = NamedSharding(exp.mesh, P(None, "data"))

    def make(step0, n):
        steps = step0 + jnp.arange(n)
        return jax.vmap(lambda s: datasets.sample_toy(name, jax.random.fold_in(key, s), b))(steps)

    return jax.jit(make, static_argnums=1, out_shardings=sharding)


# ---------------------------------------------------------------------------------------------
# Sampling and writing samples
# ---------------------------------------------------------------------------------------------


def generate(config, exp: Experiment, params, rng, num: int):
    """`num` samples from the EMA network with the configured sampler: ([num, ...], nfe)."""
    bs = min(int(config.sampling.batch_size), num)
    sampler = sampling.get_sampler(config, exp.sde, (bs,) + exp.shape)
    continuous = bool(config.training.continuous)

    @jax.jit
    def run(rng, params):
        score_fn = mutils.get_score_fn(exp.sde, exp.model, {"params": params}, continuous)
        return sampler(rng, score_fn)

    out, nfe = [], 0
    for i in range(-(-num // bs)):
        x, nfe = run(jax.random.fold_in(rng, i), params)
        out.append(np.asarray(x))
    return np.concatenate(out)[:num], int(nfe)


def write_samples(config, exp: Experiment, workdir: str, params, step: int, writer=None):
    """samples/samples_<step>.npz (key 'samples') and a PNG beside it; returns the samples."""
    rng = jax.random.fold_in(_key(config, STREAM_SAMPLE), step)
    x, nfe = generate(config, exp, params, rng, int(config.sampling.num_samples))
    if not is_main_process():
        return x
    out_dir = os.path.join(workdir, "samples")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"samples_{step}.npz")
    np.savez(path + ".tmp.npz", samples=x.astype(np.float32), nfe=nfe)
    os.replace(path + ".tmp.npz", path)
    data = np.asarray(datasets.sample_toy(config.data.dataset, _key(config, STREAM_TEST), len(x)))
    fig = visualize.scatter_figure(x, data, title=f"samples, step {step}")
    fig.savefig(os.path.join(out_dir, f"samples_{step}.png"), dpi=100)
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


def _next_boundary(step, config):
    t = config.training
    freqs = (t.log_freq, t.snapshot_freq, t.snapshot_freq_for_preemption, t.n_jitted_steps)
    return min([t.n_iters] + [(step // f + 1) * f for f in freqs])


def train(config, workdir: str) -> None:
    """Train (resuming from the latest checkpoint in workdir), logging and snapshotting."""
    import tqdm
    from tensorboardX import SummaryWriter

    exp = build(config)
    optimizer = get_optimizer(config)
    loss_fn = get_loss_fn(config, exp)
    step_fn = losses.get_step_fn(loss_fn, optimizer, config.model.ema_rate)
    multi_step = losses.get_multi_step_fn(step_fn, _key(config, STREAM_TRAIN))
    replicated = NamedSharding(exp.mesh, P())
    state = jax.device_put(losses.init_train_state(init_params(config, exp), optimizer), replicated)

    os.makedirs(workdir, exist_ok=True)
    t = config.training
    manager = checkpointing.get_manager(workdir, keep_period=t.snapshot_freq)
    restored, start = checkpointing.restore(manager, state)
    if restored is not None:
        state = restored
    start = int(start or 0)
    main = is_main_process()
    if main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    log = _metrics_log(workdir, start) if main else None
    writer = SummaryWriter(os.path.join(workdir, "tb")) if main else None

    p_step = jax.jit(multi_step, out_shardings=(replicated, replicated), donate_argnums=0)
    batch_fn = _toy_batch_fn(config, exp)
    bar = tqdm.tqdm(total=t.n_iters, initial=start, disable=not main, unit="step",
                    dynamic_ncols=True)
    step, t_last, window = start, time.time(), []
    try:
        while step < t.n_iters:
            n = _next_boundary(step, config) - step
            state, step_losses = p_step(state, batch_fn(step, n))
            step_losses = np.asarray(step_losses)
            if not np.all(np.isfinite(step_losses)):
                bad = step + int(np.argmin(np.isfinite(step_losses))) + 1
                manager.wait_until_finished()
                raise DivergenceError(
                    f"training diverged: loss is {step_losses[bad - step - 1]} at step {bad}; "
                    f"last good checkpoint: step {manager.latest_step()} in "
                    f"{checkpointing.checkpoint_dir(workdir)} (lower optim.lr or raise "
                    "optim.warmup / optim.grad_clip)"
                )
            step += n
            window.extend(step_losses.tolist())
            bar.update(n)
            bar.set_postfix(loss=f"{np.mean(step_losses):.4f}")
            if step % t.log_freq == 0:
                rate = len(window) / max(time.time() - t_last, 1e-9)
                # "loss": mean over the steps since the previous log line.
                rec = {"step": step, "loss": float(np.mean(window)), "steps_per_sec": rate}
                if main:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    writer.add_scalar("loss", rec["loss"], step)
                    writer.add_scalar("steps_per_sec", rate, step)
                window, t_last = [], time.time()
            if step % t.snapshot_freq_for_preemption == 0 or step == t.n_iters:
                checkpointing.save(manager, step, state)
            if step % t.snapshot_freq == 0 or step == t.n_iters:
                write_samples(config, exp, workdir, state.ema_params, step, writer)
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


def _load_ema(config, exp: Experiment, workdir: str):
    """EMA parameters and step of the latest checkpoint of `workdir` (ConfigError if none)."""
    checkpointing.require_checkpoint(workdir)
    optimizer = get_optimizer(config)
    abstract = jax.eval_shape(
        lambda: losses.init_train_state(init_params(config, exp), optimizer)
    )
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=NamedSharding(exp.mesh, P())),
        abstract,
    )
    manager = checkpointing.get_manager(workdir, read_only=True)
    state, step = checkpointing.restore(manager, abstract)
    manager.close()
    return state.ema_params, step


def sample(config, workdir: str) -> str:
    """Write samples of the latest checkpoint; returns the .npz path."""
    exp = build(config)
    params, step = _load_ema(config, exp, workdir)
    write_samples(config, exp, workdir, params, step)
    return os.path.join(workdir, "samples", f"samples_{step}.npz")


def evaluate(config, workdir: str) -> dict:
    """Sample-quality distances to fresh data and held-out NLL (nats) of the latest checkpoint."""
    exp = build(config)
    params, step = _load_ema(config, exp, workdir)
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
    if is_main_process():
        out_dir = os.path.join(workdir, "eval")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"metrics_{step}.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results
