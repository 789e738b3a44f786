"""Text-to-image in the latent space of configs/shapes/autoencoder_kl.py (the default run).

    python main.py --config configs/shapes/autoencoder_kl.py --mode train --workdir runs/shapes_ae
    python main.py --config configs/shapes/latent_text.py --mode train \
        --workdir runs/shapes_latent \
        --config.latent.autoencoder_workdir=runs/shapes_ae

A cross-attention UNet on 8x8x4 latents with a byte-level CLIP-style text transformer trained
with it, the EDM loss weighted towards high noise, and the four layout options of
configs/default_shapes.py; classifier-free guidance at sampling.guidance_scale (3).

Expected (measured on 2 idle CPU cores: autoencoder 144 s, this run 3012 steps in
training.max_seconds=600, 620 s wall, 12.7 min in all; --mode eval at w = 3, 280 samples of
140 single-object prompts): colour right 0.99, shape 0.82, size 1.00, position 1.00, all four
0.81, fd_shapes 0.54 (README table).
"""

from configs.default_shapes import get_default_configs


def get_config():
    config = get_default_configs()
    config.latent.autoencoder_workdir = "runs/shapes_ae"
    return config
