"""Text-to-image in the latent space of configs/shapes/autoencoder_kl.py (the default run).

    python main.py --config configs/shapes/autoencoder_kl.py --mode train --workdir runs/shapes_ae
    python main.py --config configs/shapes/latent_text.py --mode train \
        --workdir runs/shapes_latent \
        --config.latent.autoencoder_workdir=runs/shapes_ae

A cross-attention UNet on 8x8x4 latents with a byte-level CLIP-style text transformer trained
with it; classifier-free guidance at sampling.guidance_scale.

Expected (measured, 2 shared CPU cores: 2001 steps in training.max_seconds=660, 11.7 min wall;
--mode eval at w = 3): colour right 0.85, size 0.74, shape 0.42, position 0.15, fd_shapes 2.17
(README table). Colour follows the prompt; shape and position are not learned in this budget.
"""

from configs.default_shapes import get_default_configs


def get_config():
    config = get_default_configs()
    config.latent.autoencoder_workdir = "runs/shapes_ae"
    return config
