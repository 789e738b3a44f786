"""Every config file under configs/ loads and builds its network, SDE and sampler.

Parameter counts come from jax.eval_shape (nothing is allocated). Counting the 60-110M-parameter
networks takes seconds each on CPU, so the tests count a representative subset (one per network
family and input shape) and only validate the shapes of the rest. For the full table:

    python -m tests.test_configs            # markdown: config, network, parameters
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
import sampling
import sde_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(
    str(p.relative_to(ROOT))
    for p in (ROOT / "configs").rglob("*.py")
    if not p.name.startswith("default_") and p.name != "__init__.py"
)

# model.* fields read by the SDE, EMA and dispatch rather than by the network.
NON_NETWORK_FIELDS = {
    "name",
    "ema_rate",
    "ema_warmup",
    "sigma_min",
    "sigma_max",
    "sigma_data",
    "beta_min",
    "beta_max",
    "num_scales",
    "dropout",
}

# Parameter counts checked by the tests (the others are printed by `python -m tests...`).
PARAMS = {
    "configs/vp/ddpm/cifar10.py": 35_746_307,  # Ho et al. (2020): 35.7M
    "configs/ve/cifar10_ncsnpp_continuous.py": 62_758_787,
    "configs/vp/cifar10_ddpmpp_continuous.py": 61_804_419,
    "configs/ve/ncsn/cifar10.py": 30_117_635,
    "configs/ve/ncsnv2/cifar10.py": 29_694_083,
    "configs/digits/vp_ddpmpp.py": 179_233,
    "configs/digits/ve_ncsnpp.py": 182_545,
}


def load(path: str):
    """(module, config) of a config file given relative to the repository root."""
    module = importlib.import_module(path[: -len(".py")].replace("/", "."))
    return module, module.get_config()


def data_shape(config) -> tuple[int, ...]:
    """Shape of one example: [D] for 2-D toy data, [H, W, C] for images."""
    if "dim" in config.data:
        return (int(config.data.dim),)
    return (config.data.image_size, config.data.image_size, config.data.num_channels)


def count_params(config) -> int:
    """Parameters of config's network, from shapes only."""
    model = models.get_model(config)
    x = jnp.zeros((1,) + data_shape(config))
    key = jax.random.key(0, impl="rbg")
    shapes = jax.eval_shape(
        lambda k: model.init({"params": k, "dropout": k}, x, jnp.ones((1,)), train=False), key
    )
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes))


def test_experiments_found():
    assert "configs/vp/ddpm/cifar10.py" in EXPERIMENTS
    assert set(PARAMS) <= set(EXPERIMENTS)


# A config with a `pretrained` section builds its modules from the checkpoint it names; the
# tests read them from the tiny SD 1.x fixture in its place.
SD_FIXTURE = str(ROOT / "tests" / "data" / "sd_tiny" / "sd1")


def check_pretrained(config) -> None:
    """The run's request validates, and its SDE (the checkpoint's), latent shape and sampler
    build, with the checkpoint at pretrained.path replaced by the tiny fixture."""
    import run_lib
    import sd_pipeline

    config = run_lib.override(config, {"pretrained.path": SD_FIXTURE})
    request = sd_pipeline.read_request(config)
    run = sd_pipeline.load(config, request)
    h, w, c = run.latent_shape
    assert h == w == config.data.image_size // 2  # the fixture's VAE downsamples by 2
    sampler = sampling.get_sampler(config, run.sd.sde, (2, h, w, c))
    assert callable(sampler)
    assert run.prediction_type == (config.pretrained.prediction_type or run.sd.prediction_type)
    # --mode train (fine-tuning) reads these; the network fields come from the checkpoint
    assert set(config.model) == {"ema_rate"} and 0 <= config.model.ema_rate < 1
    t = config.training
    assert not t.continuous and t.method == "dsm" and 0 <= t.cond_drop_prob < 1
    assert t.snapshot_freq % t.log_freq == 0


@pytest.mark.parametrize("path", EXPERIMENTS)
def test_config_builds(path):
    module, config = load(path)
    doc = module.__doc__ or ""
    assert f"python main.py --config {path}" in doc, "docstring must give the run command"
    assert "Expected" in doc, "docstring must say what result to expect"
    if "pretrained" in config:
        check_pretrained(config)
        return

    model = models.get_model(config)
    names = {f.name for f in dataclasses.fields(type(model))}
    unused = set(config.model) - names - NON_NETWORK_FIELDS
    assert not unused, f"model fields no network reads (typos?): {sorted(unused)}"
    shape = data_shape(config)
    if hasattr(model, "check"):  # the UNets validate levels, attention and GroupNorm sizes
        model.check((1,) + shape)

    sde = sde_lib.get_sde(config)
    sampler = sampling.get_sampler(config, sde, (2,) + shape)
    assert callable(sampler)
    t = config.training
    assert t.log_freq % t.n_jitted_steps == 0
    assert t.snapshot_freq % t.log_freq == 0
    if "begin_ckpt" in config.eval:  # image runs: checkpoint k is step k * snapshot_freq
        assert 1 <= config.eval.begin_ckpt <= config.eval.end_ckpt
        assert config.eval.end_ckpt * t.snapshot_freq <= t.n_iters


@pytest.mark.parametrize("path", sorted(PARAMS))
def test_parameter_count(path):
    _, config = load(path)
    assert count_params(config) == PARAMS[path]


def test_image_defaults_keep_toy_field_names():
    from configs.default_images import get_default_configs as images
    from configs.default_toy import get_default_configs as toy

    toy_config, image_config = toy(), images()
    for section in ("training", "sampling", "optim", "model"):
        missing = set(toy_config[section]) - set(image_config[section])
        if section == "model":  # the MLP's own fields
            missing -= {f.name for f in dataclasses.fields(models.mlp.ScoreMLP)}
        assert not missing, f"{section}: {sorted(missing)}"
    assert set(toy_config.eval) - {"num_test"} <= set(image_config.eval)


def test_families_follow_the_sde_conventions():
    """VE nets see sigma (Fourier features, output / sigma); VP nets see time and predict noise."""
    for path in EXPERIMENTS:
        _, config = load(path)
        if "pretrained" in config:  # the network comes from the checkpoint's files
            continue
        m = config.model
        if m.name != "ncsnpp":
            continue
        ve = config.training.sde == "vesde"
        assert m.scale_by_sigma == ve, path
        assert m.embedding_type == ("fourier" if ve else "positional"), path
        assert config.data.centered == (not ve), path


def network_label(config) -> str:
    """The paper's name of config's network, e.g. 'DDPM++ (ncsnpp)'."""
    m = config.model
    label = {"ddpm": "DDPM", "ncsn": "NCSN", "ncsnv2": "NCSNv2", "mlp": "MLP"}.get(m.name)
    if m.name == "ncsnpp":
        label = "NCSN++" if m.get("fir", True) or m.embedding_type == "fourier" else "DDPM++"
        label += " deep" if m.num_res_blocks == 8 else ""
    return f"{label or m.name} (`{m.name}`)"


def markdown_table(paths) -> str:
    rows = ["| config | network | parameters |", "|:--|:--|--:|"]
    for path in paths:
        _, config = load(path)
        rows.append(f"| `{path}` | {network_label(config)} | {count_params(config):,} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table([p for p in EXPERIMENTS if "cifar10" in p] + sys.argv[1:]))
