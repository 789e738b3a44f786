"""The same conditional UNet and text encoder as latent_text.py, on 32x32x3 pixels.

    python main.py --config configs/shapes/pixel_text.py --mode train --workdir runs/shapes_pixel

One more level (32, 16, 8) so the attention resolutions match the latent run's 8x8 and 4x4.
Expected (bench/latent_vs_pixel.py, 2 idle CPU cores, 300 s of training each): 168 steps
against the latent run's 1440, 0.67 s per sample against 0.04, twice the memory, and at w = 3
colour 0.54, shape 0.44, size 0.81, position 0.17, fd_shapes 4.99 (latent: 0.97 / 0.64 / 0.99
/ 1.00, fd_shapes 0.89).
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
