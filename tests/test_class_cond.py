"""Class-conditional networks, classifier-free and classifier guidance over classes, and the
noise-conditional classifier run: guidance checked with the exact parts of a Gaussian mixture
(analytic.py), the class embedding and label dropout, and the CLI on tiny digits runs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analytic
import class_lib
import datasets
import eval_lib
import evaluation
import losses
import run_lib
import sampling
import sde_lib
from models import ddpm, ncsnpp, unet_cond
from models import utils as mutils
from tests import digits_tiny
from tests.image_runs import check, finish, finish_reference, start, start_reference, train_args
from utils import ConfigError

# Three well separated 2-D components of unequal weight: a class is identifiable from x(0).
MIXTURE = analytic.GaussianMixture(weights=[0.5, 0.3, 0.2],
                                   means=[[-2.5, 0.0], [2.5, 0.0], [0.0, 3.0]],
                                   stds=[[0.5, 0.3], [0.3, 0.6], [0.4, 0.4]])
N = 1000  # samples per energy distance
SDES = {"vp": sde_lib.VPSDE(0.1, 20.0, N=400), "ve": sde_lib.VESDE(0.01, 10.0, N=400)}


def _key(seed: int):
    return jax.random.key(seed, impl="rbg")


def _guided(sde, label, scale=1.0):
    log_prob_fn = lambda x, t: MIXTURE.log_class_posterior(sde, x, t)
    return mutils.classifier_guided_score_fn(MIXTURE.score_fn(sde), log_prob_fn, label, scale)


# ---------------------------------------------------------------------------------------------
# Classifier guidance with the exact mixture score and noisy-class posterior
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SDES))
def test_guided_score_at_scale_one_is_the_class_score(name):
    sde = SDES[name]
    x = jax.random.normal(_key(0), (64, 2)) * 3.0
    t = jax.random.uniform(_key(1), (64,), minval=sde.eps, maxval=sde.T)
    for k in range(3):
        np.testing.assert_allclose(_guided(sde, k)(x, t), MIXTURE.class_score_fn(sde, k)(x, t),
                                   rtol=1e-4, atol=1e-4)
    # scale 0 is the unconditional score; per-example labels pick per-example classes
    np.testing.assert_allclose(_guided(sde, 1, 0.0)(x, t), MIXTURE.score_fn(sde)(x, t))
    labels = jnp.arange(64) % 3
    mixed = _guided(sde, labels)(x, t)
    for k in range(3):
        np.testing.assert_allclose(mixed[labels == k],
                                   MIXTURE.class_score_fn(sde, k)(x, t)[labels == k],
                                   rtol=1e-4, atol=1e-4)


def _true_spread(k: int) -> float:
    """The largest energy distance between two true samples of component k (5 pairs)."""
    one = analytic.GaussianMixture([1.0], MIXTURE.means[k:k + 1], MIXTURE.stds[k:k + 1])
    return max(float(evaluation.energy_distance(one.sample(_key(100 + 2 * i), N),
                                                one.sample(_key(101 + 2 * i), N)))
               for i in range(5)), one


CASES = [("vp", "pc"), ("ve", "pc"), ("vp", "dpm_solver++")]


@pytest.mark.parametrize("name,method", CASES)
def test_classifier_guided_sampling_draws_the_requested_component(name, method):
    sde = SDES[name]
    if method == "pc":
        sampler = sampling.get_pc_sampler(sde, (N, 2), "reverse_diffusion", "none")
    else:
        sampler = sampling.get_fast_sampler(sde, (N, 2), method, steps=30)
    run = jax.jit(lambda rng, label: sampler(rng, _guided(sde, label))[0])
    for k in (0, 2):  # the heaviest and the lightest component
        x = run(_key(10 + k), k)
        spread, one = _true_spread(k)
        ed = float(evaluation.energy_distance(x, one.sample(_key(200 + k), N)))
        assert ed < spread, (name, method, k, ed, spread)
        posterior = MIXTURE.log_class_posterior(sde, x, jnp.full((N,), sde.eps))
        assert float(jnp.mean(jnp.argmax(posterior, -1) == k)) > 0.97


# ---------------------------------------------------------------------------------------------
# Class embedding of the score networks
# ---------------------------------------------------------------------------------------------

TINY = dict(image_size=8, num_channels=1, nf=8, ch_mult=(1,), num_res_blocks=1,
            attn_resolutions=(), dropout=0.0)
NETS = {
    "ddpm": lambda **kw: ddpm.DDPM(**TINY, **kw),
    "ddpmpp": lambda **kw: ncsnpp.NCSNpp(**TINY, fir=False, progressive_input="none",
                                         embedding_type="positional", scale_by_sigma=False,
                                         init_scale=1.0, **kw),
}


def _init(net, x, t, **cond):
    return net.init(_key(0), x, t, **cond)


@pytest.mark.parametrize("name", sorted(NETS))
def test_class_embedding_depends_on_the_label_and_zero_classes_is_unchanged(name):
    x = jax.random.normal(_key(3), (3, 8, 8, 1))
    t = jnp.array([10.0, 300.0, 900.0])
    plain = NETS[name]()
    cond = NETS[name](num_classes=4)
    y = jnp.array([0, 2, 4])  # 4: the null class
    v0, v4 = _init(plain, x, t), _init(cond, x, t, class_labels=y)
    table = v4["params"]["class_embedding"]["embedding"]
    assert table.shape == (5, 32)  # num_classes + 1 rows of the 4 nf time embedding
    rest = {k: v for k, v in v4["params"].items() if k != "class_embedding"}
    assert jax.tree.structure(rest) == jax.tree.structure(v0["params"])
    jax.tree.map(np.testing.assert_array_equal, rest, v0["params"])  # same init, same names
    out0 = plain.apply(v0, x, t)
    # with a zero table the conditional network computes the unconditional one exactly
    zero = {"params": {**rest, "class_embedding": {"embedding": jnp.zeros_like(table)}}}
    np.testing.assert_array_equal(cond.apply(zero, x, t, class_labels=y), out0)
    # trained-like parameters (the last conv starts near zero): the output moves with the
    # label, and only with the label
    leaves, tree = jax.tree.flatten(v4["params"])
    noisy = [a + 0.1 * jax.random.normal(_key(4 + i), a.shape) for i, a in enumerate(leaves)]
    v = {"params": jax.tree.unflatten(tree, noisy)}
    a = cond.apply(v, x, t, class_labels=jnp.array([1, 1, 1]))
    b = cond.apply(v, x, t, class_labels=jnp.array([3, 3, 3]))
    assert float(jnp.abs(a - b).mean()) > 1e-2 * float(jnp.abs(a).mean())
    np.testing.assert_array_equal(a, cond.apply(v, x, t, class_labels=jnp.array([1, 1, 1])))
    with pytest.raises(Exception, match="model.num_classes=4"):
        cond.apply(v, x, t)


def test_cross_attention_unet_class_embedding():
    """unet_cond keeps diffusers' layout (num_classes rows, the caller's null class among them):
    a zero table computes the class-free network exactly, trained-like weights move with the
    label only."""
    kw = dict(block_out_channels=(8, 16), layers_per_block=1, attention_levels=(False, True),
              num_heads=2, context_dim=6, norm_num_groups=4)
    x = jax.random.normal(_key(7), (2, 8, 8, 3))
    t, ctx = jnp.array([10.0, 700.0]), jax.random.normal(_key(8), (2, 3, 6))
    plain, cond = unet_cond.UNetCond(**kw), unet_cond.UNetCond(num_classes=5, **kw)
    v0 = jax.eval_shape(lambda k: plain.init(k, x, t, context=ctx), _key(0))
    v5 = jax.jit(lambda k: cond.init(k, x, t, context=ctx, class_labels=jnp.array([0, 4])))(
        _key(0))
    table = v5["params"]["class_embedding"]["embedding"]
    assert table.shape == (5, 32)
    rest = {k: v for k, v in v5["params"].items() if k != "class_embedding"}
    assert jax.tree.structure(rest) == jax.tree.structure(v0["params"])
    run = jax.jit(lambda v, y: cond.apply(v, x, t, context=ctx, class_labels=y))
    zero = {"params": {**rest, "class_embedding": {"embedding": jnp.zeros_like(table)}}}
    base = jax.jit(lambda v: plain.apply(v, x, t, context=ctx))({"params": rest})
    np.testing.assert_allclose(run(zero, jnp.array([1, 3])), base, atol=1e-6)
    leaves, tree = jax.tree.flatten(v5["params"])
    noisy = [a + 0.1 * jax.random.normal(_key(20 + i), a.shape) for i, a in enumerate(leaves)]
    v = {"params": jax.tree.unflatten(tree, noisy)}
    a, b = run(v, jnp.array([1, 1])), run(v, jnp.array([3, 3]))
    assert float(jnp.abs(a - b).mean()) > 1e-2 * float(jnp.abs(a).mean())
    np.testing.assert_array_equal(a, run(v, jnp.array([1, 1])))


def test_classifier_free_guidance_over_classes_is_one_batched_call():
    sde = SDES["vp"]
    net = NETS["ddpmpp"](num_classes=4)
    x = jax.random.normal(_key(5), (3, 8, 8, 1))
    t = jnp.array([0.1, 0.5, 0.9])
    y = jnp.array([0, 1, 2])
    v = _init(net, x, t * 999, class_labels=y)
    v = {"params": {**v["params"], "class_embedding": {
        "embedding": jax.random.normal(_key(6), (5, 32))}}}
    cond = mutils.get_score_fn(sde, net, v, class_labels=y)(x, t)
    null = mutils.get_score_fn(sde, net, v, class_labels=jnp.full((3,), 4))(x, t)
    for w in (0.0, 1.0, 3.0):
        guided = mutils.get_score_fn(sde, net, v, class_labels=y, guidance_scale=w,
                                     null_class_labels=4)(x, t)
        np.testing.assert_allclose(guided, null + w * (cond - null), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Label dropout for classifier-free guidance
# ---------------------------------------------------------------------------------------------


def test_label_dropout_rate_and_null_class():
    labels = jnp.arange(20000) % 7
    for p in (0.0, 0.1, 0.3):
        out = losses.drop_class_labels(_key(7), labels, p, num_classes=7)
        dropped = np.asarray(out != labels)
        assert abs(dropped.mean() - p) < 4 * np.sqrt(p * (1 - p) / len(labels)) + 1e-9
        assert np.all(np.asarray(out)[dropped] == 7)  # dropped labels are the null class
        np.testing.assert_array_equal(np.asarray(out)[~dropped], np.asarray(labels)[~dropped])

    seen = []

    def base(rng, params, batch):
        seen.append(batch["class_labels"])
        return jnp.zeros(batch["x"].shape[0])

    loss_fn = losses.with_label_dropout(base, 0.5, 3)
    loss_fn(_key(8), None, {"x": jnp.zeros((4000, 2)), "class_labels": jnp.ones(4000, int)})
    assert 0.45 < float(jnp.mean(seen[0] == 3)) < 0.55
    with pytest.raises(Exception, match="training.cond_drop_prob"):
        losses.with_label_dropout(base, 1.0, 3)


# ---------------------------------------------------------------------------------------------
# CLI on tiny 8x8 digits runs: a class-conditional run, a classifier run guiding the shared
# unconditional reference run, and the one-line errors (in-process)
# ---------------------------------------------------------------------------------------------

CLASS_CONFIG = """from tests import digits_tiny


def get_config():
    config = digits_tiny.get_config()
    config.model.num_classes = 10
    config.training.cond_drop_prob = 0.2
    return config
"""

CLASSIFIER_CONFIG = """import ml_collections

from tests import digits_tiny


def get_config():
    config = digits_tiny.get_config()
    config.classifier = ml_collections.ConfigDict(
        dict(num_classes=10, nf=8, ch_mult=(1, 2), num_res_blocks=1, dropout=0.0))
    return config
"""


def _write_config(root, name: str, text: str) -> str:
    path = os.path.join(str(root), f"{name}.py")
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trained tiny runs: {'class': class-conditional, 'classifier': noise classifier,
    'uncond': a copy of the session's unconditional reference run}, plus their configs."""
    root = tmp_path_factory.mktemp("class_cond")
    base = tmp_path_factory.getbasetemp()
    configs = {"class": _write_config(root, "class_tiny", CLASS_CONFIG),
               "classifier": _write_config(root, "classifier_tiny", CLASSIFIER_CONFIG)}
    dirs = {k: str(root / k) for k in configs}
    procs = [start([f"--config={configs[k]}", f"--workdir={dirs[k]}"], base) for k in configs]
    ref, ref_proc = start_reference(tmp_path_factory)
    for k, proc in zip(configs, procs, strict=True):
        check(finish(proc), f"{k} training")
    finish_reference(ref_proc)
    dirs["uncond"] = str(root / "uncond")
    shutil.copytree(ref, dirs["uncond"], ignore=shutil.ignore_patterns("samples", "tb", "eval"))
    return dirs, configs


def test_cli_class_conditional_and_classifier_guided_sampling(runs, tmp_path_factory):
    dirs, configs = runs
    base = tmp_path_factory.getbasetemp()
    with open(os.path.join(dirs["classifier"], "classifier.json")) as f:
        info = json.load(f)
    assert info["sde"] == {"name": "vpsde", "beta_0": 0.1, "beta_1": 20.0}
    assert info["image_shape"] == [8, 8, 1] and info["num_classes"] == 10
    assert [r["t"] for r in info["test_accuracy"]] == pytest.approx([1e-3, 0.25, 0.5, 0.75, 1])
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in info["test_accuracy"])

    cond = start([f"--config={configs['class']}", f"--workdir={dirs['class']}", "--mode=sample",
                  "--config.sampling.task=class", "--config.sampling.class_label=3",
                  "--config.sampling.guidance_scale=2.0", "--config.sampling.num_samples=5"],
                 base)
    guided = start(train_args(dirs["uncond"], "--mode=sample", "--config.sampling.task=class",
                              f"--config.sampling.classifier_workdir={dirs['classifier']}",
                              "--config.sampling.classifier_scale=2.0"), base)
    for proc, wd, labels, w in ((cond, dirs["class"], [3] * 5, 2.0),
                                (guided, dirs["uncond"], list(range(8)), 1.0)):
        out = check(finish(proc), "class sampling")[1]
        path = os.path.join(wd, "samples", "class_4.npz")
        assert path in out
        with np.load(path) as d:
            x = d["samples"]
            assert x.shape == (len(labels), 8, 8, 1) and np.all(np.isfinite(x))
            assert 0.0 <= x.min() and x.max() <= 1.0
            assert d["labels"].tolist() == labels and float(d["guidance_scale"]) == w
            assert int(d["nfe"]) == 50
        assert os.path.exists(path[:-4] + ".png")
    with np.load(os.path.join(dirs["uncond"], "samples", "class_4.npz")) as d:
        assert float(d["classifier_scale"]) == 2.0
    # the class-conditional run's training snapshot shows each class in turn
    with np.load(os.path.join(dirs["class"], "samples", "samples_4.npz")) as d:
        assert d["labels"].tolist() == list(range(8))


def _load(path):
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _error(fn, config, workdir, match):
    before = sorted(os.listdir(os.path.join(workdir, "samples"))) \
        if os.path.isdir(os.path.join(workdir, "samples")) else []
    with pytest.raises(ConfigError, match=match) as err:
        fn(config, workdir)
    assert "\n" not in str(err.value)
    after = sorted(os.listdir(os.path.join(workdir, "samples"))) \
        if os.path.isdir(os.path.join(workdir, "samples")) else []
    assert after == before  # nothing written


def test_bad_class_inputs_are_one_line_errors(runs):
    dirs, configs = runs

    def cfg(path=None, **sampling):
        config = _load(path) if path else digits_tiny.get_config()
        config.sampling.update(dict(task="class", **sampling))
        return config

    _error(run_lib.sample, cfg(configs["class"], class_label=10), dirs["class"],
           r"sampling.class_label: 10 is outside \[0, 10\)")
    _error(run_lib.sample, cfg(configs["class"], class_label=-2), dirs["class"],
           "sampling.class_label")
    _error(run_lib.sample, cfg(configs["class"], guidance_scale=-1.0), dirs["class"],
           "sampling.guidance_scale")
    _error(run_lib.sample, cfg(), dirs["uncond"], "sampling.classifier_workdir: .*needs a "
           "noise-conditional classifier")
    _error(run_lib.sample, cfg(classifier_workdir=dirs["uncond"]), dirs["uncond"],
           "sampling.classifier_workdir: .* is not a classifier run")
    other_sde = cfg(classifier_workdir=dirs["classifier"])
    other_sde.training.sde = "vesde"
    _error(run_lib.sample, other_sde, dirs["uncond"],
           "sampling.classifier_workdir: .* trained for the SDE")
    other_beta = cfg(classifier_workdir=dirs["classifier"])
    other_beta.model.beta_max = 10.0
    _error(run_lib.sample, other_beta, dirs["uncond"], "trained for the SDE")
    other_size = cfg(classifier_workdir=dirs["classifier"])
    other_size.data.image_size = 16
    _error(run_lib.sample, other_size, dirs["uncond"],
           r"sampling.classifier_workdir: .*shape \(8, 8, 1\)")
    _error(run_lib.sample, cfg(classifier_workdir=dirs["classifier"], class_label=12),
           dirs["uncond"], r"sampling.class_label: 12 is outside \[0, 10\)")
    _error(run_lib.sample, _load(configs["classifier"]), dirs["classifier"],
           "--mode sample: a classifier run")
    _error(eval_lib.evaluate, _load(configs["classifier"]), dirs["classifier"],
           "--mode eval: a classifier run")


def test_class_accuracy_of_the_offline_classifier_on_true_digits():
    source = datasets.get_dataset("digits", "test", 16, 1)
    tables = class_lib.labelled_tables(source)
    net = evaluation.load_digits_classifier()
    _, logits = evaluation.network_features(net, tables["x"].astype(np.float32) / 255.0)
    acc = class_lib.class_accuracy(logits, tables["class_labels"])
    assert acc["class_accuracy"] > 0.9  # true digits of their own labels
    assert sorted(k for k in acc if k != "class_accuracy") == [f"class_accuracy_{k}"
                                                                for k in range(10)]
    wrong = class_lib.class_accuracy(logits, (tables["class_labels"] + 1) % 10)
    assert wrong["class_accuracy"] < 0.1  # and not of shifted ones
