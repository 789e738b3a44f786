"""Score networks and the one config -> module dispatch."""

from __future__ import annotations

import dataclasses

from models import ddpm, mlp, ncsn, ncsnpp, ncsnv2
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
}

# Fields a network may take from config.data rather than config.model.
_DATA_FIELDS = ("image_size", "num_channels", "centered")


def model_kwargs(cls, config) -> dict:
    """The explicit keyword arguments of `cls` found in config.model / config.data."""
    names = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
    kwargs = {k: config.model[k] for k in names if k in config.model and k != "name"}
    for k in _DATA_FIELDS:
        if k in names and k in config.data:
            kwargs[k] = config.data[k]
    for k, v in kwargs.items():
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    return kwargs


def get_model(config):
    """Build the Flax module named by `config.model.name` from explicit keyword fields."""
    name = choose("model.name", config.model.name, MODELS)
    cls = MODELS[name]
    return cls(**model_kwargs(cls, config))
