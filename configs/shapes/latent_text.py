"""Text-to-image in the latent space of configs/shapes/autoencoder_kl.py (the default run).

    python main.py --mode train --config configs/shapes/autoencoder_kl.py --workdir runs/shapes_ae
    python main.py --mode train --config configs/shapes/latent_text.py \
        --workdir runs/shapes_latent \
        --config.latent.autoencoder_workdir=runs/shapes_ae

A cross-attention UNet on 8x8x4 latents with a byte-level CLIP-style text transformer trained
with it; classifier-free guidance at sampling.guidance_scale.
"""

from configs.default_shapes import get_default_configs


def get_config():
    config = get_default_configs()
    config.latent.autoencoder_workdir = "runs/shapes_ae"
    return config
