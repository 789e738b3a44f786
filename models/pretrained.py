"""Reference checkpoints -> our modules by one mechanical rule: the Flax path
'down_blocks_0/resnets_1/conv1/kernel' is the torch name 'down_blocks.0.resnets.1.conv1.weight',
and kernels are transposed (conv [O, I, kh, kw] -> [kh, kw, I, O], dense [O, I] -> [I, O]);
and a Stable Diffusion 1.x / 2.x directory (Rombach et al. 2022) in diffusers' layout -> our
UNet, KL autoencoder, CLIP text encoder, tokenizer and VP SDE with SD's discrete schedule.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

import sde_lib
from models.autoencoder import AutoencoderKL
from models.clip_tokenizer import CLIPTokenizer
from models.text_encoder import CLIPTextTransformer
from models.unet_cond import UNetCond
from utils import ConfigError

# Flax submodule names '<list>_<i>' that are torch ModuleList / Sequential entries '<list>.<i>'.
LISTS = ("down_blocks", "up_blocks", "resnets", "attentions", "downsamplers", "upsamplers",
         "transformer_blocks", "layers", "to_out", "net")
_LIST_ENTRY = re.compile(rf"^({'|'.join(LISTS)})_(\d+)$")
LEAVES = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}
# Non-parameter buffers some checkpoints carry (older CLIP text encoders save position_ids).
BUFFERS = ("position_ids",)


def torch_name(path: tuple[str, ...] | str, prefix: str = "") -> str:
    """The reference state_dict name of a Flax parameter.

    Args:
      path: the parameter's path (tuple, or '/'-joined). prefix: prepended (e.g. 'text_model.').

    Returns:
      e.g. 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.weight'.
    """
    parts = path.split("/") if isinstance(path, str) else list(path)
    *modules, leaf = parts
    modules = [_LIST_ENTRY.sub(r"\1.\2", m) for m in modules]
    return prefix + ".".join(modules + [LEAVES[leaf]])


def to_flax_layout(leaf: str, array: np.ndarray) -> np.ndarray:
    """A reference tensor in our layout (kernels transposed; norms, biases, embeddings as-is).

    Args:
      leaf: the Flax leaf name ('kernel', 'scale', 'bias', 'embedding'). array: torch layout.

    Returns:
      the array in Flax layout.
    """
    if leaf != "kernel":
        return array
    if array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    return np.transpose(array)


def params_from_state_dict(state_dict: dict, template: dict, prefix: str = "") -> dict:
    """Our parameter tree filled from a reference state_dict by the rename + transpose.

    Args:
      state_dict: name -> numpy array (torch layout), e.g. read with safetensors.
      template: our parameter tree (arrays or ShapeDtypeStructs from jax.eval_shape).
      prefix: the reference names' prefix (CLIP checkpoints: 'text_model.').

    Returns:
      a nested dict like `template` of numpy arrays.

    Raises:
      ConfigError: naming the tensor for a missing, unexpected or mis-shaped tensor.
    """
    flat = traverse_util.flatten_dict(template)
    out, used = {}, set()
    for path, want in flat.items():
        name = torch_name(path, prefix)
        if name not in state_dict:
            raise ConfigError(f"checkpoint has no tensor {name} (for {'/'.join(path)})")
        array = to_flax_layout(path[-1], np.asarray(state_dict[name]))
        if tuple(array.shape) != tuple(want.shape):
            raise ConfigError(f"tensor {name} has shape {tuple(array.shape)} (after transpose), "
                              f"the model expects {tuple(want.shape)}")
        out[path] = array.astype(want.dtype)
        used.add(name)
    unused = sorted(k for k in state_dict if k.startswith(prefix) and k not in used
                    and not k.endswith(BUFFERS))
    if unused:
        raise ConfigError(f"checkpoint tensor {unused[0]} (and {len(unused) - 1} more) has no "
                          "place in the model")
    return traverse_util.unflatten_dict(out)


def autoencoder_from_config(cfg: dict) -> AutoencoderKL:
    """Our AutoencoderKL for a diffusers `AutoencoderKL` config.json dict (down blocks named
    'AttnDownEncoderBlock2D' become attn_resolutions)."""
    chans = tuple(cfg["block_out_channels"])
    ch = chans[0]
    if any(c % ch for c in chans):
        raise ConfigError(f"vae block_out_channels={chans} are not multiples of the first")
    size = cfg.get("sample_size", 256)
    kinds = cfg["down_block_types"]
    attn = tuple(size // 2**i for i, t in enumerate(kinds) if t.startswith("Attn"))
    return AutoencoderKL(in_channels=cfg.get("in_channels", 3),
                         out_channels=cfg.get("out_channels", 3), ch=ch,
                         ch_mult=tuple(c // ch for c in chans),
                         num_res_blocks=cfg.get("layers_per_block", 1),
                         z_channels=cfg.get("latent_channels", 4),
                         embed_dim=cfg.get("latent_channels", 4), attn_resolutions=attn,
                         resolution=size, norm_num_groups=cfg.get("norm_num_groups", 32))


def unet_from_config(cfg: dict) -> UNetCond:
    """Our UNetCond for a diffusers `UNet2DConditionModel` config.json dict (SD 1.x / 2.x)."""
    chans = tuple(cfg["block_out_channels"])
    heads = cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8)
    if isinstance(heads, int):
        heads_kw = dict(num_heads=heads, head_dim=0)
    else:
        dims = {c // h for c, h in zip(chans, heads, strict=True)}
        if len(dims) != 1:
            raise ConfigError(f"unet per-level heads {tuple(heads)} give unequal head widths")
        heads_kw = dict(num_heads=0, head_dim=dims.pop())
    depth = cfg.get("transformer_layers_per_block", 1)
    if not isinstance(depth, int):
        raise ConfigError(f"unet transformer_layers_per_block={depth} per level is unsupported")
    return UNetCond(out_channels=cfg.get("out_channels", 4), block_out_channels=chans,
                    layers_per_block=cfg.get("layers_per_block", 2),
                    attention_levels=tuple(t.startswith("CrossAttn")
                                           for t in cfg["down_block_types"]),
                    transformer_depth=depth, context_dim=cfg.get("cross_attention_dim", 1280),
                    use_linear_projection=cfg.get("use_linear_projection", False),
                    norm_num_groups=cfg.get("norm_num_groups", 32),
                    norm_eps=cfg.get("norm_eps", 1e-5),
                    flip_sin_to_cos=cfg.get("flip_sin_to_cos", True),
                    freq_shift=cfg.get("freq_shift", 0),
                    num_classes=cfg.get("num_class_embeds") or 0, **heads_kw)


def clip_from_config(cfg: dict) -> CLIPTextTransformer:
    """Our CLIPTextTransformer for a transformers `CLIPTextConfig` config.json dict. The legacy
    eos_token_id 2 (SD 1.x/2.x configs) pools, as transformers does, at the highest token id,
    which in CLIP's vocabulary is its end token vocab_size - 1."""
    eos = cfg.get("eos_token_id", 2)
    return CLIPTextTransformer(vocab_size=cfg["vocab_size"],
                               max_length=cfg.get("max_position_embeddings", 77),
                               width=cfg["hidden_size"], layers=cfg["num_hidden_layers"],
                               heads=cfg["num_attention_heads"],
                               intermediate_size=cfg["intermediate_size"],
                               activation=cfg.get("hidden_act", "quick_gelu"),
                               layer_norm_eps=cfg.get("layer_norm_eps", 1e-5),
                               eos_token_id=cfg["vocab_size"] - 1 if eos == 2 else eos)


# ---------------------------------------------------------------------------------------------
# A Stable Diffusion directory in diffusers' layout
# ---------------------------------------------------------------------------------------------

WEIGHTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model",
           "text_encoder": "model"}
# UNet2DConditionModel config keys whose non-default values SD 1.x / 2.x never use
UNET_DEFAULTS = {"addition_embed_type": None, "class_embed_type": None,
                 "encoder_hid_dim_type": None, "time_cond_proj_dim": None,
                 "time_embedding_type": "positional", "resnet_time_scale_shift": "default",
                 "mid_block_type": "UNetMidBlock2DCrossAttn", "conv_in_kernel": 3,
                 "conv_out_kernel": 3, "only_cross_attention": False,
                 "dual_cross_attention": False, "center_input_sample": False}
# model_index.json / config class names of families this loader does not read
UNSUPPORTED = {"StableDiffusionXL": "SDXL", "StableDiffusion3": "SD3",
               "SD3Transformer2DModel": "SD3", "StableCascade": "Stable Cascade",
               "Flux": "FLUX"}


class StableDiffusion(NamedTuple):
    """A loaded Stable Diffusion checkpoint.

    unet.apply({'params': params['unet']}, z [B, h, w, 4], timesteps [B], context=ctx) is
    diffusers' UNet output (NHWC); vae.encode / vae.decode its AutoencoderKL; text_encoder.apply(
    {'params': params['text_encoder']}, tokenizer(prompts))[0] the CLIP context [B, 77, D];
    sde the VPSDE with the checkpoint's discrete schedule (timestep n at t = (n + 1) / N);
    prediction_type 'epsilon' | 'v_prediction'; latents are z = scale_factor * vae sample.
    """

    unet: UNetCond
    vae: AutoencoderKL
    text_encoder: CLIPTextTransformer
    params: dict
    tokenizer: CLIPTokenizer
    sde: sde_lib.VPSDE
    prediction_type: str
    scale_factor: float


def _json(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"not a Stable Diffusion directory in diffusers' layout: missing {path}")
    with open(path) as f:
        return json.load(f)


def _reject_family(name: str, where: str) -> None:
    for prefix, family in UNSUPPORTED.items():
        if name.startswith(prefix):
            raise ConfigError(f"{where}: {name} is {family}, an unsupported model family "
                              "(Stable Diffusion 1.x and 2.x load)")


def read_state_dict(directory: str, stem: str) -> dict:
    """name -> numpy array of a component folder: `stem`.safetensors, else its shards
    `stem`-0000k-of-0000n.safetensors, else one variant such as `stem`.fp16.safetensors, else
    `stem`.bin when torch is installed.

    Args:
      directory: e.g. 'DIR/unet'. stem: 'diffusion_pytorch_model' or 'model'.
    Returns:
      the state_dict as float32 numpy arrays.
    """
    from safetensors.numpy import load_file

    main = os.path.join(directory, f"{stem}.safetensors")
    shards = sorted(glob.glob(os.path.join(directory, f"{stem}-*-of-*.safetensors")))
    variants = sorted(glob.glob(os.path.join(directory, f"{stem}.*.safetensors")))
    found = [main] if os.path.isfile(main) else shards or variants[:1]
    if found:
        out = {}
        for path in found:
            out.update(load_file(path))
        return {k: np.asarray(v, np.float32) for k, v in out.items()}
    binary = os.path.join(directory, f"{stem}.bin")
    if os.path.isfile(binary) and importlib.util.find_spec("torch") is not None:
        import torch

        state = torch.load(binary, map_location="cpu", weights_only=True)
        return {k: v.float().numpy() for k, v in state.items()}
    raise ConfigError(f"not a Stable Diffusion directory in diffusers' layout: missing {main}"
                      + (" (.bin weights need torch)" if os.path.isfile(binary) else ""))


def _check_unet_config(cfg: dict, path: str) -> None:
    _reject_family(cfg.get("_class_name", "UNet2DConditionModel"), path)
    if cfg.get("addition_embed_type") or cfg.get("projection_class_embeddings_input_dim"):
        raise ConfigError(f"{path}: addition_embed_type={cfg.get('addition_embed_type')!r} is "
                          "SDXL-style, an unsupported model family (Stable Diffusion 1.x and "
                          "2.x load)")
    for key, default in UNET_DEFAULTS.items():
        if cfg.get(key, default) != default:
            raise ConfigError(f"{path}: {key}={cfg[key]!r} is unsupported (Stable Diffusion "
                              f"1.x / 2.x use {default!r})")


def sde_from_scheduler(cfg: dict, path: str = "scheduler_config.json"
                       ) -> tuple[sde_lib.VPSDE, str]:
    """(the VPSDE with a diffusers scheduler config's discrete schedule, its prediction type).

    Args:
      cfg: scheduler_config.json as a dict (beta_schedule, beta_start, beta_end,
        num_train_timesteps, prediction_type). path: named in errors.
    Returns:
      (VPSDE, 'epsilon' | 'v_prediction').
    """
    for key in ("trained_betas", "rescale_betas_zero_snr"):
        if cfg.get(key):
            raise ConfigError(f"{path}: {key}={cfg[key]!r} is unsupported")
    prediction = cfg.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction"):
        raise ConfigError(f"{path}: prediction_type={prediction!r} is unsupported; "
                          "choose one of: epsilon, v_prediction")
    schedule = cfg.get("beta_schedule", "linear")
    if schedule not in sde_lib.VP_SCHEDULES[1:]:
        raise ConfigError(f"{path}: beta_schedule={schedule!r} is unsupported; choose one of: "
                          f"{', '.join(sde_lib.VP_SCHEDULES[1:])}")
    n = int(cfg.get("num_train_timesteps", 1000))
    start, end = float(cfg.get("beta_start", 0.0001)), float(cfg.get("beta_end", 0.02))
    return sde_lib.VPSDE(start * n, end * n, n, eps=1.0 / n, schedule=schedule), prediction


# Scheduler classes whose `set_timesteps` this reproduces: (their timestep spacing when the
# config names none, their set_alpha_to_one default; None: DPM-Solver, which lays out
# steps + 1 points, drops the last and steps to the next timestep, not n - N // steps).
SCHEDULERS = {"DDIMScheduler": ("leading", True), "PNDMScheduler": ("leading", False),
              "DPMSolverMultistepScheduler": ("linspace", None)}
# scheduler options that move the timesteps or noise levels away from the rules below
SCHEDULER_SIGMAS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                    "use_lu_lambdas")


def scheduler_timesteps(cfg: dict, steps: int, path: str = "scheduler_config.json"
                        ) -> tuple[np.ndarray, str]:
    """(the discrete timesteps a diffusers scheduler visits in `steps` steps, where its last
    step lands: 'zero' or 'first' as in fast_sampling.discrete_times).

    The spacings of diffusers' set_timesteps over N training timesteps: 'leading' (multiples of
    N // steps, plus steps_offset), 'trailing' (N - 1 down in steps of N / steps), 'linspace'
    (0..N - 1 evenly, rounded); DPM-Solver lays out steps + 1 points and drops the last. DDIM
    and PNDM step from n to n - N // steps, which must be the next timestep (so 'leading'; and
    'trailing' when steps divides N); PNDM's PLMS warm-up repeats a timestep, its distinct ones
    are given. The last step lands on alpha = 1 (set_alpha_to_one; DPM-Solver's
    final_sigmas_type='zero') or on timestep 0's noise level.

    Args:
      cfg: scheduler_config.json as a dict. steps: the number of sampling steps.
      path: named in errors.
    Returns:
      (int timesteps [steps], decreasing, in [0, N); 'zero' | 'first').
    Raises:
      ConfigError: one line for a scheduler class, option or step count this does not
        reproduce.
    """
    name = str(cfg.get("_class_name", "DDIMScheduler"))
    if name not in SCHEDULERS:
        raise ConfigError(f"{path}: _class_name={name!r} is not a scheduler whose timesteps "
                          "sampling.timesteps='diffusers' reproduces; choose one of: "
                          f"{', '.join(SCHEDULERS)}")
    for key in SCHEDULER_SIGMAS:
        if cfg.get(key):
            raise ConfigError(f"{path}: {key}={cfg[key]!r} is unsupported for "
                              "sampling.timesteps='diffusers'")
    if float(cfg.get("lambda_min_clipped", -np.inf)) != -np.inf:
        raise ConfigError(f"{path}: lambda_min_clipped={cfg['lambda_min_clipped']!r} is "
                          "unsupported for sampling.timesteps='diffusers'")
    default_spacing, alpha_to_one = SCHEDULERS[name]
    dpm = alpha_to_one is None
    spacing = str(cfg.get("timestep_spacing") or default_spacing)
    if spacing not in ("leading", "trailing", "linspace"):
        raise ConfigError(f"{path}: timestep_spacing={spacing!r} is unsupported; choose one of: "
                          "leading, trailing, linspace")
    n, offset = int(cfg.get("num_train_timesteps", 1000)), int(cfg.get("steps_offset", 0))
    if not 1 <= steps < n:
        raise ConfigError(f"sampling.steps={steps} must be in [1, {n}) for "
                          "sampling.timesteps='diffusers'")
    points = steps + 1 if dpm else steps
    if spacing == "linspace":
        t = np.round(np.linspace(0, n - 1, points))[::-1][:steps]
    elif spacing == "leading":
        t = np.round(np.arange(points) * (n // points))[::-1][:steps] + offset
    else:
        t = np.round(np.arange(n, 0, -n / steps)) - 1
    t = t.astype(np.int64)
    if len(t) != steps or np.any(np.diff(t) >= 0) or t.min() < 0 or t.max() >= n:
        raise ConfigError(f"{path}: {spacing!r} spacing gives no {steps} distinct timesteps "
                          f"in [0, {n}): {t.tolist()}; choose other sampling.steps")
    if dpm:
        return t, "zero" if cfg.get("final_sigmas_type", "zero") == "zero" else "first"
    targets = t - n // steps  # where DDIM / PNDM step to
    if np.any(targets[:-1] != t[1:]) or targets[-1] >= 0:
        raise ConfigError(f"{path}: {name} steps n -> n - {n // steps}, not to the next of the "
                          f"{spacing!r} timesteps {t.tolist()}; choose sampling.timesteps='' or "
                          "(for 'trailing') sampling.steps dividing num_train_timesteps")
    return t, "zero" if cfg.get("set_alpha_to_one", alpha_to_one) else "first"


def _template(module, *args, **kwargs) -> dict:
    init = lambda rng: module.init({"params": rng, "posterior": rng}, *args, **kwargs)
    return jax.eval_shape(init, jax.random.key(0))["params"]


def _components(path: str) -> tuple[dict, dict, dict]:
    """The unet, vae and text_encoder configs, after the family checks."""
    index = os.path.join(path, "model_index.json")
    if os.path.isfile(index):
        _reject_family(_json(index).get("_class_name", ""), index)
    if os.path.isdir(os.path.join(path, "transformer")):
        raise ConfigError(f"{path} holds a transformer/ denoiser (SD3 / FLUX), an unsupported "
                          "model family (Stable Diffusion 1.x and 2.x load)")
    if os.path.isdir(os.path.join(path, "text_encoder_2")):
        raise ConfigError(f"{path} holds text_encoder_2/ (SDXL), an unsupported model family "
                          "(Stable Diffusion 1.x and 2.x load)")
    unet_path = os.path.join(path, "unet", "config.json")
    unet_cfg = _json(unet_path)
    _check_unet_config(unet_cfg, unet_path)
    return (unet_cfg, _json(os.path.join(path, "vae", "config.json")),
            _json(os.path.join(path, "text_encoder", "config.json")))


def load_stable_diffusion(path: str, dtype=jnp.float32) -> StableDiffusion:
    """A Stable Diffusion 1.x / 2.x checkpoint from a local diffusers-layout directory.

    Args:
      path: the directory (unet/, vae/, text_encoder/, tokenizer/, scheduler/, each with its
        config and *.safetensors weights). dtype: the parameters' dtype (bfloat16 / float16
        for half-precision inference).
    Returns:
      a StableDiffusion named tuple.
    Raises:
      ConfigError: one line for a missing file (named), an unsupported family (SDXL, SD3), an
        unknown, missing or mis-shaped tensor (named, with both shapes).
    """
    if not os.path.isdir(path):
        raise ConfigError(f"pretrained.path={path} is not a directory")
    unet_cfg, vae_cfg, clip_cfg = _components(path)
    sde, prediction = sde_from_scheduler(
        _json(os.path.join(path, "scheduler", "scheduler_config.json")),
        os.path.join(path, "scheduler", "scheduler_config.json"))
    tok_dir = os.path.join(path, "tokenizer")
    if not os.path.isdir(tok_dir):
        raise ConfigError(f"not a Stable Diffusion directory in diffusers' layout: missing "
                          f"{tok_dir}")
    length = int(clip_cfg.get("max_position_embeddings", 77))
    tokenizer = CLIPTokenizer.from_directory(tok_dir, max_length=min(length, 77))

    unet, vae, clip = (unet_from_config(unet_cfg), autoencoder_from_config(vae_cfg),
                       clip_from_config(clip_cfg))
    size = 2 ** (len(unet.block_out_channels) - 1)
    class_labels = jnp.zeros((1,), jnp.int32) if unet.num_classes else None
    templates = {
        "unet": _template(unet, jnp.zeros((1, size, size, unet_cfg.get("in_channels", 4))),
                          jnp.zeros((1,)), context=jnp.zeros((1, 1, unet.context_dim)),
                          class_labels=class_labels),
        "vae": _template(vae, jnp.zeros((1, 2 ** len(vae.ch_mult), 2 ** len(vae.ch_mult),
                                         vae.in_channels))),
        "text_encoder": _template(clip, jnp.zeros((1, tokenizer.max_length), jnp.int32)),
    }
    params = {}
    for name, template in templates.items():
        state = read_state_dict(os.path.join(path, name), WEIGHTS[name])
        # transformers < 5 saved CLIPTextModel under 'text_model.', 5 saves without it
        prefix = "text_model." if any(k.startswith("text_model.") for k in state) else ""
        try:
            loaded = params_from_state_dict(state, template, prefix)
        except ConfigError as e:
            raise ConfigError(f"{os.path.join(path, name)}: {e}") from None
        params[name] = jax.tree.map(lambda a: jnp.asarray(a, dtype), loaded)
    return StableDiffusion(unet, vae, clip, params, tokenizer, sde, prediction,
                           float(vae_cfg.get("scaling_factor", 0.18215)))


def save_params(params: dict, directory: str) -> None:
    """Write loaded parameters (e.g. StableDiffusion.params) as an orbax checkpoint at
    `directory` (which must not exist yet), so later runs start from it without the
    safetensors; the write is finished when this returns.

    Args:
      params: a pytree of arrays. directory: the checkpoint path.
    """
    import orbax.checkpoint as ocp

    directory = os.path.abspath(directory)
    if os.path.exists(directory):
        raise ConfigError(f"{directory} exists; save_params writes a new checkpoint directory")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory, params)
        checkpointer.wait_until_finished()


def load_params(directory: str, like: dict | None = None) -> dict:
    """Parameters written by save_params.

    Args:
      directory: the checkpoint path. like: a pytree of arrays or ShapeDtypeStructs giving
        the structure, shapes and dtypes to restore into (None: as saved).
    Returns:
      the parameter pytree.
    """
    import orbax.checkpoint as ocp

    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise ConfigError(f"no parameter checkpoint at {directory}")
    target = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(directory, target)
