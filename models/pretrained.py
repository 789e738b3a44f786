"""Reference checkpoints -> our modules by one mechanical rule: the Flax path
'down_blocks_0/resnets_1/conv1/kernel' is the torch name 'down_blocks.0.resnets.1.conv1.weight',
and kernels are transposed (conv [O, I, kh, kw] -> [kh, kw, I, O], dense [O, I] -> [I, O]).
"""

from __future__ import annotations

import re

import numpy as np
from flax import traverse_util

from models.autoencoder import AutoencoderKL
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
