"""Score networks and the config -> module dispatch (score networks, the latent autoencoder,
the text encoder)."""

from __future__ import annotations

import dataclasses

from models import autoencoder, ddpm, mlp, ncsn, ncsnpp, ncsnv2, text_encoder, unet_cond
from utils import choose

MODELS = {
    "mlp": mlp.ScoreMLP,
    "ddpm": ddpm.DDPM,
    "ncsnpp": ncsnpp.NCSNpp,
    "ncsn": ncsn.NCSN,
    "ncsnv2": ncsnv2.NCSNv2,
    "ncsnv2_64": ncsnv2.NCSNv2,
    "ncsnv2_128": ncsnv2.NCSNv2_128,
    "ncsnv2_256": ncsnv2.NCSNv2_256,
    "unet_cond": unet_cond.UNetCond,
}

AUTOENCODERS = {"kl": autoencoder.AutoencoderKL}

# Trainable text encoders built from config.text; the frozen 'minilm' is loaded with its
# weights by text_encoder.load_minilm instead.
TEXT_ENCODERS = {"clip": text_encoder.CLIPTextTransformer}

# Fields a network may take from config.data rather than config.model.
_DATA_FIELDS = ("image_size", "num_channels", "centered")


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}


def section_kwargs(cls, section) -> dict:
    """The fields of `cls` present in one config section, lists turned into tuples.

    Args:
      cls: a Flax module class. section: a ConfigDict (e.g. config.autoencoder).

    Returns:
      a dict of keyword arguments for `cls`.
    """
    kwargs = {k: section[k] for k in _fields(cls) if k in section}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def model_kwargs(cls, config) -> dict:
    """The explicit keyword arguments of `cls` found in config.model / config.data."""
    kwargs = section_kwargs(cls, config.model)
    for k in _DATA_FIELDS:
        if k in _fields(cls) and k in config.data:
            kwargs[k] = config.data[k]
    return kwargs


def get_model(config):
    """Build the Flax module named by `config.model.name` from explicit keyword fields."""
    name = choose("model.name", config.model.name, MODELS)
    cls = MODELS[name]
    return cls(**model_kwargs(cls, config))


def get_autoencoder(config):
    """Build the latent autoencoder from config.autoencoder (`name`, default 'kl', and the
    AutoencoderKL fields); `resolution` defaults to data.image_size."""
    name = choose("autoencoder.name", config.autoencoder.get("name", "kl"), AUTOENCODERS)
    cls = AUTOENCODERS[name]
    kwargs = section_kwargs(cls, config.autoencoder)
    if "resolution" not in kwargs and "image_size" in config.data:
        kwargs["resolution"] = config.data.image_size
    return cls(**kwargs)


def get_text_encoder(config):
    """Build the trainable text encoder named by config.text.encoder (default 'clip') from the
    fields of config.text (vocab_size and eos_token_id default to the ByteTokenizer's)."""
    name = choose("text.encoder", config.text.get("encoder", "clip"), TEXT_ENCODERS)
    cls = TEXT_ENCODERS[name]
    return cls(**section_kwargs(cls, config.text))


def get_tokenizer(config) -> text_encoder.ByteTokenizer:
    """The byte tokenizer of the trainable text encoder, text.max_length tokens per prompt."""
    return text_encoder.ByteTokenizer(config.text.get("max_length", 77))
