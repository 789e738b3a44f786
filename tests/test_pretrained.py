"""Stable Diffusion loading against diffusers / transformers: tiny SD 1.x- and 2.x-shaped
checkpoints in the diffusers layout (tests/data/sd_tiny, made by tools/make_sd_fixtures.py) load
without torch, and our tokenizer, text encoder, UNet, VAE and samplers (DDIM, DPM-Solver++ with
classifier-free guidance on SD's discrete schedule) reproduce the recorded reference outputs.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import analytic
import evaluation
import fast_sampling
import sampling
import sde_lib
from models import pretrained
from models import utils as mutils
from utils import ConfigError

DATA = os.path.join(os.path.dirname(__file__), "data", "sd_tiny")
FAMILIES = ("sd1", "sd2")


@pytest.fixture(scope="module")
def loaded():
    return {name: pretrained.load_stable_diffusion(os.path.join(DATA, name))
            for name in FAMILIES}


@pytest.fixture(scope="module")
def refs():
    out = {}
    for name in FAMILIES:
        with np.load(os.path.join(DATA, f"{name}_reference.npz")) as f:
            out[name] = dict(f)
    return out


def _close(ours, ref, rel=1e-4):
    """Equal to `ref` up to rel relative to ref's largest magnitude (elementwise rtol too)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=rel, atol=rel * np.abs(ref).max())


def _context(sd, ids):
    return sd.text_encoder.apply({"params": sd.params["text_encoder"]}, jnp.asarray(ids))[0]


# ---------------------------------------------------------------- loading and module parity


def test_loads_both_families_with_their_scheduler_and_vae_settings(loaded):
    sd1, sd2 = loaded["sd1"], loaded["sd2"]
    assert (sd1.prediction_type, sd2.prediction_type) == ("epsilon", "v_prediction")
    assert (sd1.scale_factor, sd2.scale_factor) == (0.18215, 0.5)
    assert sd1.unet.use_linear_projection is False and sd2.unet.use_linear_projection is True
    assert (sd1.text_encoder.activation, sd2.text_encoder.activation) == ("quick_gelu", "gelu")
    assert set(sd1.params) == {"unet", "vae", "text_encoder"}
    # SD's scaled_linear betas: linear in sqrt(beta) from 0.00085 to 0.012 over 1000 steps
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    alpha, _ = sd1.sde.marginal_coef(jnp.array([1 / 1000, 0.5, 1.0]))
    np.testing.assert_allclose(np.asarray(alpha) ** 2, np.cumprod(1 - betas)[[0, 499, 999]],
                               rtol=2e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_tokenizer_matches_reference(loaded, refs, name):
    prompts = [str(p) for p in refs[name]["prompts"]]
    ids = loaded[name].tokenizer(prompts)
    assert ids.dtype == np.int32 and ids.shape == (len(prompts), 77)
    np.testing.assert_array_equal(ids, refs[name]["ids"])


def test_tokenizer_warns_once_when_truncating(loaded, caplog):
    tok = loaded["sd1"].tokenizer
    ids = tok(["cat " * 100, "cat " * 200, "a cat"])
    assert ids[0, -1] == tok.eos_id and ids[2, 3] == tok.eos_id
    assert len([r for r in caplog.records if "truncated" in r.getMessage()]) == 1
    with pytest.raises(ConfigError, match="list of prompts"):
        tok("a cat")


@pytest.mark.parametrize("name", FAMILIES)
def test_text_encoder_matches_reference(loaded, refs, name):
    _close(_context(loaded[name], refs[name]["ids"]), refs[name]["text_hidden"])


@pytest.mark.parametrize("name", FAMILIES)
def test_unet_matches_reference(loaded, refs, unets, name):
    sd, ref = loaded[name], refs[name]
    # the reference batch of 2 twice, with the contexts swapped in the second copy
    ctx = _context(sd, ref["ids"][:2])
    x, t = (jnp.concatenate([a, a]) for a in (ref["unet_x"], ref["unet_t"].astype(np.float32)))
    out = unets[name].apply({"params": sd.params["unet"]}, x, t,
                            context=jnp.concatenate([ctx, ctx[::-1]]))
    _close(out[:2], ref["unet_out"])
    assert float(jnp.max(jnp.abs(out[2:] - out[:2]))) > 1e-2 * float(jnp.max(jnp.abs(out[:2])))


@pytest.mark.parametrize("name", FAMILIES)
def test_vae_matches_reference(loaded, refs, name):
    sd, ref = loaded[name], refs[name]
    variables = {"params": sd.params["vae"]}
    post = sd.vae.apply(variables, jnp.asarray(ref["vae_image"]), method=sd.vae.encode)
    _close(post.mean, ref["vae_mean"])
    _close(post.logvar, ref["vae_logvar"])
    _close(sd.vae.apply(variables, jnp.asarray(ref["vae_z"]), method=sd.vae.decode),
           ref["vae_decoded"])


# ---------------------------------------------------------------- samplers against diffusers


class CompiledUNet:
    """A loaded UNet behind one jax.jit, called as models.utils calls a module (model.apply),
    so the parity test and both samplers of a family share one compilation (batch 4: the two
    guided halves of two prompts)."""

    def __init__(self, unet):
        self._apply = jax.jit(lambda v, x, t, c: unet.apply(v, x, t, context=c))

    def apply(self, variables, x, labels, train=False, rngs=None, context=None):
        # host callbacks run under default_device=cpu, part of jit's cache key: the same here
        with jax.default_device(jax.devices("cpu")[0]):
            return self._apply(variables, x, labels, context)


@pytest.fixture(scope="module")
def unets(loaded):
    return {name: CompiledUNet(sd.unet) for name, sd in loaded.items()}


@pytest.fixture(scope="module")
def guided(loaded, refs, unets):
    """Per family: the guided score (w = 7.5, prompts 0 and 1 against the empty prompt 3), for
    the samplers to call through a host callback."""
    out = {}
    for name, sd in loaded.items():
        ctx = _context(sd, refs[name]["ids"])
        out[name] = mutils.get_score_fn(
            sd.sde, unets[name], {"params": sd.params["unet"]}, context=ctx[:2],
            guidance_scale=7.5, null_context=ctx[3], prediction_type=sd.prediction_type)
    return out


def _trajectory(sd, score, x_T, method: str, times, **fields) -> np.ndarray:
    """Our `method` from x_T over `times` with the (compiled) score; the state after each
    step [steps, B, ...]."""
    path = []

    def score_fn(x, t):
        # numpy in: the callback's committed arrays would miss the UNet's compilation cache
        return jax.pure_callback(lambda x, t: np.asarray(score(np.asarray(x), np.asarray(t))),
                                 jax.ShapeDtypeStruct(x.shape, x.dtype), x, t)

    def record(key, x, t):
        jax.debug.callback(lambda v: path.append(np.asarray(v)), x, ordered=True)
        return x

    solve = fast_sampling.get_fast_solver(sd.sde, method, steps=len(times) - 1, times=times,
                                          project=record, **fields)
    jax.block_until_ready(jax.jit(lambda x: solve(jax.random.key(0), score_fn, x)[0])(
        jnp.asarray(x_T)))
    jax.effects_barrier()
    return np.stack(path)


@pytest.mark.parametrize("name", FAMILIES)
def test_ddim_trajectory_matches_diffusers(loaded, refs, guided, name):
    ref = refs[name]
    # DDIM 'leading' spacing with steps_offset 1: 1000 // 5 apart from 801 down to 1
    np.testing.assert_array_equal(ref["ddim_timesteps"], [801, 601, 401, 201, 1])
    # set_alpha_to_one=False: the last step lands on timestep 0's noise level
    times = fast_sampling.discrete_times(loaded[name].sde, ref["ddim_timesteps"], final="first")
    _close(_trajectory(loaded[name], guided[name], ref["x_T"], "ddim", times), ref["ddim_path"])


@pytest.mark.parametrize("name", FAMILIES)
def test_dpm_solver_pp_trajectory_matches_diffusers(loaded, refs, guided, name):
    ref = refs[name]
    # final_sigmas_type='zero': the last (first-order) step lands on alpha = 1, sigma = 0
    times = fast_sampling.discrete_times(loaded[name].sde, ref["dpm_timesteps"], final="zero")
    ours = _trajectory(loaded[name], guided[name], ref["x_T"], "dpm_solver++", times, order=2)
    _close(ours, ref["dpm_path"])


def test_scheduler_timesteps_follow_diffusers_spacings():
    with open(os.path.join(DATA, "sd1", "scheduler", "scheduler_config.json")) as f:
        ddim = json.load(f)  # DDIMScheduler, 'leading', steps_offset 1, set_alpha_to_one False
    t, final = pretrained.scheduler_timesteps(ddim, 5)
    np.testing.assert_array_equal(t, [801, 601, 401, 201, 1])  # recorded from diffusers
    assert final == "first"
    dpm = {"_class_name": "DPMSolverMultistepScheduler"}  # defaults: 'linspace', 'zero'
    t, final = pretrained.scheduler_timesteps(dpm, 5)
    np.testing.assert_array_equal(t, [999, 799, 599, 400, 200])  # recorded from diffusers
    assert final == "zero"
    # 10 steps of N = 1000 (Lin et al. 2023, Table 2): 'leading' (+1 offset) and 'trailing'
    t, _ = pretrained.scheduler_timesteps(ddim, 10)
    np.testing.assert_array_equal(t, np.arange(901, 0, -100))
    t, final = pretrained.scheduler_timesteps({**ddim, "timestep_spacing": "trailing",
                                               "set_alpha_to_one": True}, 10)
    np.testing.assert_array_equal(t, np.arange(999, 0, -100))
    assert final == "zero"
    bad = [
        ({**ddim, "timestep_spacing": "linspace"}, 10, "steps n -> n - 100"),  # 999, 888, ...
        ({**ddim, "timestep_spacing": "trailing"}, 3, "steps n -> n - 333"),
        ({**ddim, "_class_name": "EulerDiscreteScheduler"}, 5, "EulerDiscreteScheduler"),
        ({**dpm, "use_karras_sigmas": True}, 5, "use_karras_sigmas"),
        ({**ddim, "timestep_spacing": "odd"}, 5, "timestep_spacing='odd'"),
        (ddim, 1000, r"sampling\.steps=1000"),
    ]
    for cfg, steps, match in bad:
        with pytest.raises(ConfigError, match=match):
            pretrained.scheduler_timesteps(cfg, steps)


@pytest.mark.parametrize("scheduler,method,key", [
    ("DDIMScheduler", "ddim", "ddim_path"),
    ("DPMSolverMultistepScheduler", "dpm_solver++", "dpm_path")])
def test_config_diffusers_timesteps_reproduce_the_scheduler_trajectory(
        loaded, refs, guided, tmp_path, scheduler, method, key):
    """sampling.timesteps='diffusers' through sd_pipeline's config path: the sampler of a
    checkpoint whose scheduler_config.json names `scheduler` ends where diffusers' scheduler
    did from the same x_T (5 steps, guided); the solver's own grid ('') does not."""
    import run_lib
    import sd_pipeline
    from configs.sd import sd15

    path = os.path.join(DATA, "sd1")
    if scheduler != "DDIMScheduler":  # the same checkpoint with that scheduler's config only
        path = str(tmp_path / "sd")
        shutil.copytree(os.path.join(DATA, "sd1"), path)
        where = os.path.join(path, "scheduler", "scheduler_config.json")
        with open(where) as f:
            cfg = json.load(f)
        keep = ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps",
                "prediction_type")
        with open(where, "w") as f:  # its own defaults otherwise: 'linspace', sigma 0 at the end
            json.dump({"_class_name": scheduler, **{k: cfg[k] for k in keep}}, f)
    ref = refs["sd1"]
    score = guided["sd1"]

    def score_fn(x, t):
        return jax.pure_callback(lambda x, t: np.asarray(score(np.asarray(x), np.asarray(t))),
                                 jax.ShapeDtypeStruct(x.shape, x.dtype), x, t)

    ends = {}
    for timesteps in ("diffusers", ""):
        config = run_lib.override(sd15.get_config(), {
            "pretrained.path": path, "data.image_size": 16, "sampling.method": method,
            "sampling.order": 1 if method == "ddim" else 2, "sampling.steps": 5,
            "sampling.timesteps": timesteps})
        run = sd_pipeline.load(config, sd_pipeline.read_request(config))
        sampler = sd_pipeline._task_sampler(config, run, "none", jnp.zeros(ref["x_T"].shape),
                                            None)
        run_x = jax.jit(lambda x, sampler=sampler: sampler(jax.random.key(0), score_fn, x)[0])
        ends[timesteps] = np.asarray(run_x(jnp.asarray(ref["x_T"])))
    _close(ends["diffusers"], ref[key][-1])
    assert np.abs(ends[""] - ref[key][-1]).max() > 1e-2 * np.abs(ref[key][-1]).max()


# ---------------------------------------------------------------- bad input


@pytest.fixture
def sd_copy(tmp_path):
    dst = tmp_path / "sd"
    shutil.copytree(os.path.join(DATA, "sd1"), dst)
    return dst


def _edit_json(path, **changes):
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(changes)
    with open(path, "w") as f:
        json.dump(cfg, f)


@pytest.mark.parametrize("missing", ["unet/diffusion_pytorch_model.safetensors",
                                     "scheduler/scheduler_config.json", "vae/config.json",
                                     "tokenizer/merges.txt"])
def test_missing_file_is_named(sd_copy, missing):
    os.remove(sd_copy / missing)
    with pytest.raises(ConfigError, match=f"missing .*{missing}"):
        pretrained.load_stable_diffusion(str(sd_copy))


def test_not_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        pretrained.load_stable_diffusion(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="missing .*unet/config.json"):
        pretrained.load_stable_diffusion(str(tmp_path))


def test_sdxl_and_sd3_are_rejected(sd_copy):
    _edit_json(sd_copy / "model_index.json", _class_name="StableDiffusionXLPipeline")
    with pytest.raises(ConfigError, match="SDXL, an unsupported model family"):
        pretrained.load_stable_diffusion(str(sd_copy))
    _edit_json(sd_copy / "model_index.json", _class_name="StableDiffusionPipeline")
    _edit_json(sd_copy / "unet" / "config.json", addition_embed_type="text_time")
    with pytest.raises(ConfigError, match="SDXL-style, an unsupported model family"):
        pretrained.load_stable_diffusion(str(sd_copy))
    _edit_json(sd_copy / "model_index.json", _class_name="StableDiffusion3Pipeline")
    with pytest.raises(ConfigError, match="SD3, an unsupported model family"):
        pretrained.load_stable_diffusion(str(sd_copy))


def test_shape_mismatch_names_tensor_and_both_shapes(sd_copy):
    # a config whose context width (20) disagrees with the weights' (16)
    _edit_json(sd_copy / "unet" / "config.json", cross_attention_dim=20)
    with pytest.raises(ConfigError, match=r"attn2\.to_k\.weight has shape \(16, 8\) .*"
                                          r"expects \(20, 8\)"):
        pretrained.load_stable_diffusion(str(sd_copy))


def test_unknown_tensor_text_model_prefix_and_variant_file(sd_copy, loaded):
    path = sd_copy / "text_encoder" / "model.safetensors"
    state = load_file(str(path))
    # transformers < 5 names: 'text_model.' prefix; the loader reads both
    save_file({f"text_model.{k}": v for k, v in state.items()}, str(path))
    # a variant file (diffusers' variant='fp16') where the plain one is absent
    unet = sd_copy / "unet" / "diffusion_pytorch_model.safetensors"
    save_file({k: v.astype(np.float16) for k, v in load_file(str(unet)).items()},
              str(sd_copy / "unet" / "diffusion_pytorch_model.fp16.safetensors"))
    os.remove(unet)
    sd = pretrained.load_stable_diffusion(str(sd_copy))
    for part, tol in (("text_encoder", 0.0), ("unet", 1e-3)):
        close = jax.tree.map(lambda a, b, tol=tol: bool(jnp.allclose(a, b, rtol=tol, atol=tol)),
                             sd.params[part], loaded["sd1"].params[part])
        assert jax.tree.leaves(close) and all(jax.tree.leaves(close)), part
    vae = sd_copy / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(vae))
    state["decoder.extra.weight"] = np.zeros((2,), np.float32)
    save_file(state, str(vae))
    with pytest.raises(ConfigError, match="decoder.extra.weight .* has no place"):
        pretrained.load_stable_diffusion(str(sd_copy))


def test_bfloat16_parameters(loaded):
    sd = pretrained.load_stable_diffusion(os.path.join(DATA, "sd2"), dtype=jnp.bfloat16)
    assert {a.dtype for a in jax.tree.leaves(sd.params)} == {jnp.dtype(jnp.bfloat16)}


# ---------------------------------------------------------------- discrete schedules, v-prediction


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_discrete_schedules_invert_and_match_closed_forms(schedule):
    sde = sde_lib.VPSDE(0.1, 20.0, 1000, schedule=schedule)
    n = np.arange(1000)
    s = np.arange(1001) / 1000
    bar = np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2
    betas = {"linear": np.linspace(1e-4, 0.02, 1000),
             "scaled_linear": np.linspace(1e-4**0.5, 0.02**0.5, 1000) ** 2,
             "squaredcos_cap_v2": np.minimum(1 - bar[1:] / bar[:-1], 0.999)}[schedule]
    t = jnp.asarray((n + 1) / 1000, jnp.float32)
    alpha, sigma = sde.marginal_coef(t)
    np.testing.assert_allclose(np.asarray(alpha) ** 2, np.cumprod(1 - betas), rtol=1e-4,
                               atol=1e-7)
    np.testing.assert_allclose(np.asarray(alpha) ** 2 + np.asarray(sigma) ** 2, 1.0, rtol=1e-6)
    np.testing.assert_array_equal(sde.timestep(t), n)
    tq = jnp.linspace(0.0005, 1.0, 777)
    np.testing.assert_allclose(sde_lib.inverse_log_snr(sde, sde_lib.log_snr(sde, tq)), tq,
                               rtol=2e-4, atol=2e-5)
    # beta(t) = -d log alpha^2 / dt, by finite differences inside an interval
    mid = jnp.asarray((n[::97] + 0.5) / 1000, jnp.float32)
    h = 1e-4
    fd = -(np.log(sde.marginal_coef(mid + h)[0] ** 2) - np.log(sde.marginal_coef(mid - h)[0] ** 2)
           ) / (2 * h)
    np.testing.assert_allclose(sde.beta(mid), fd, rtol=2e-2)


def test_v_prediction_score_is_the_true_score_of_a_gaussian():
    # x0 ~ N(0, s0^2): x_t ~ N(0, alpha^2 s0^2 + sigma^2), score -x / var, and the ideal
    # v = alpha eps - sigma x0 = E[v | x] is linear in x
    sde = sde_lib.VPSDE(0.85, 12.0, 1000, schedule="scaled_linear")
    s0 = 0.7
    x = jax.random.normal(jax.random.key(0), (4, 3))
    t = jnp.array([0.02, 0.3, 0.6, 1.0])

    def ideal(kind):
        def apply(variables, x, labels, train=False, rngs=None):
            alpha, sigma = sde.marginal_coef((labels + 1.0) / 1000)
            var = alpha**2 * s0**2 + sigma**2
            eps = (sigma / var)[:, None] * x
            x0 = (alpha * s0**2 / var)[:, None] * x
            return eps if kind == "epsilon" else alpha[:, None] * eps - sigma[:, None] * x0

        return type("Ideal", (), {"apply": staticmethod(apply)})()

    alpha, sigma = sde.marginal_coef(t)
    true = -x / (alpha**2 * s0**2 + sigma**2)[:, None]
    for kind in ("epsilon", "v_prediction"):
        score = mutils.get_score_fn(sde, ideal(kind), {}, prediction_type=kind)(x, t)
        np.testing.assert_allclose(score, true, rtol=1e-4)
    with pytest.raises(ConfigError, match="v_prediction.*needs training.sde='vpsde'"):
        mutils.get_score_fn(sde_lib.VESDE(), ideal("v"), {}, prediction_type="v_prediction")
    with pytest.raises(ConfigError, match="model.prediction_type='x0' is not valid"):
        mutils.get_score_fn(sde, ideal("v"), {}, prediction_type="x0")


def test_every_sampler_runs_on_the_sd_schedule():
    """A mixture of per-axis variance 1 (so SD's terminal alpha(T) = 0.068 leaves p_T ~ N(0, I)),
    its exact score under the scaled_linear VPSDE: PC, the probability-flow ODE and the fast
    solvers reproduce it (energy distance within the spread of fresh samples)."""
    sde = sde_lib.VPSDE(0.85, 12.0, 1000, schedule="scaled_linear")
    gmm = analytic.GaussianMixture([0.5, 0.5], [[0.8, 0.8], [-0.8, -0.8]], [0.6, 0.6])
    n = 1000
    ref = gmm.sample(jax.random.key(1), n)
    spread = max(float(evaluation.energy_distance(gmm.sample(jax.random.key(2 + i), n), ref))
                 for i in range(4))
    shape = (n, 2)
    samplers = {
        "pc": sampling.get_pc_sampler(sde, shape, "reverse_diffusion", "none"),
        "ode": sampling.get_ode_sampler(sde, shape, rtol=1e-4, atol=1e-4),
        "ddim": fast_sampling.get_fast_sampler(sde, shape, "ddim", 50),
        "dpm_solver++": fast_sampling.get_fast_sampler(sde, shape, "dpm_solver++", 20),
        "unipc": fast_sampling.get_fast_sampler(sde, shape, "unipc", 20),
        "edm_heun": fast_sampling.get_fast_sampler(sde, shape, "edm_heun", 35,
                                                   schedule="karras"),
    }
    run = jax.jit(lambda rng: {k: s(rng, gmm.score_fn(sde))[0] for k, s in samplers.items()})
    far = {k: float(evaluation.energy_distance(x, ref))
           for k, x in run(jax.random.key(7)).items()}
    assert all(d <= spread for d in far.values()), (spread, far)
    # negative control: the score of a mixture with means shifted by 0.3 lands far away
    wrong = analytic.GaussianMixture([0.5, 0.5], [[1.1, 0.8], [-0.5, -0.8]], [0.6, 0.6])
    x, _ = jax.jit(lambda r: samplers["dpm_solver++"](r, wrong.score_fn(sde)))(jax.random.key(7))
    assert float(evaluation.energy_distance(x, ref)) > 3 * spread


def test_saved_params_restore_equal(loaded, tmp_path):
    params = loaded["sd1"].params
    pretrained.save_params(params, str(tmp_path / "sd1_params"))
    back = pretrained.load_params(str(tmp_path / "sd1_params"), like=params)
    same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params, back))
    assert len(same) == len(jax.tree.leaves(params)) and all(same)
    with pytest.raises(ConfigError, match="exists"):
        pretrained.save_params(params, str(tmp_path / "sd1_params"))


def test_explicit_time_grids_and_their_bad_input():
    sde = sde_lib.VPSDE(0.85, 12.0, 1000, schedule="scaled_linear")
    np.testing.assert_allclose(fast_sampling.discrete_times(sde, [999, 499, 0], final="first"),
                               [1.0, 0.5, 0.001, 0.001])
    gmm = analytic.GaussianMixture([0.5, 0.5], [[0.8, 0.8], [-0.8, -0.8]], [0.6, 0.6])
    x = jax.random.normal(jax.random.key(0), (5, 2))
    # 12 steps to sigma = 0: the last multistep step is first order (else lambda = inf -> NaN),
    # and it lands on its data prediction
    times = np.append(np.linspace(1.0, 0.01, 12), 0.0)
    out, _ = fast_sampling.get_fast_solver(sde, "dpm_solver++", 12, times=times)(
        None, gmm.score_fn(sde), x)
    assert bool(jnp.all(jnp.isfinite(out)))
    bad = [
        (dict(method="ddim", steps=3, times=[1.0, 0.5, 0.1]), "need 4 times, got 3"),
        (dict(method="ddim", steps=2, times=[1.0, 0.1, 0.5]), "must decrease"),
        (dict(method="unipc", steps=3, times=[1.0, 0.5, 0.2, 0.0]), "'ddim' or multistep"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ConfigError, match=match):
            fast_sampling.get_fast_solver(sde, **kwargs)
    with pytest.raises(ConfigError, match="discrete model.schedule"):
        fast_sampling.discrete_times(sde_lib.VPSDE(), [999, 0])
    with pytest.raises(ConfigError, match="must decrease within"):
        fast_sampling.discrete_times(sde, [0, 999])
    with pytest.raises(ConfigError, match="model.schedule='cosine' is not valid"):
        sde_lib.VPSDE(schedule="cosine")
    with pytest.raises(ConfigError, match="needs training.sde='vpsde'"):
        sde_lib.subVPSDE(schedule="linear")
