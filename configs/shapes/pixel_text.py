"""The same conditional UNet and text encoder as latent_text.py, on 32x32x3 pixels.

    python main.py --config configs/shapes/pixel_text.py --mode train --workdir runs/shapes_pixel

One more level (32, 16, 8) so the attention resolutions match the latent run's 8x8 and 4x4.
Expected: slower steps than the latent run for the same training.max_seconds (the comparison
is bench/latent_vs_pixel.py); not yet measured to the end on 2 cores.
"""

import math

from configs.default_shapes import get_default_configs


def get_config():
    config = get_default_configs()
    config.latent.autoencoder_workdir = ""
    config.model.block_out_channels = (32, 64, 128)
    config.model.attention_levels = (False, True, True)
    config.model.sigma_data = 0.5  # pixels in [-1, 1], mostly black: std about 0.5
    config.training.P_mean = 1.0 + math.log(0.5)  # the latent run's noise levels, in data stds
    return config
