"""The default latent text-to-image run with global text conditioning and pixel coordinates.

    python main.py --config configs/shapes/latent_text_pooled.py --mode train \
        --workdir runs/shapes_latent_pooled \
        --config.latent.autoencoder_workdir=runs/shapes_ae

Differs from configs/shapes/latent_text.py in four fields: `model.pooled_context` (an MLP of
the masked mean of the text tokens added to the time embedding, so every ResNet block sees the
prompt), `model.coord_channels` (row / column channels at the UNet input), cross-attention at
the 4x4 level only (`model.attention_levels=(False, True)`, 1.6x cheaper per step than both
levels) and `text.max_length=88` (no caption of the set is truncated; 40 cut 3137 two-object
captions). It trains for a fixed 3000 steps instead of a time budget.

Expected (measured on 2 CPU cores, 3000 steps in 19.9 min wall with a second training job at
low priority on the same cores; --mode eval at w = 3, 280 samples of 140 single-object prompts):
colour right 0.95, size 0.93, shape 0.63, position 0.23, all four 0.14, fd_shapes 1.19.
Coordinates alone (without pooled_context) gave 0.93 / 0.86 / 0.59 / 0.22, fd_shapes 1.52. The
position words are still ignored: samples of 'a large red square on the left / right / at the
top / at the bottom' have the same centroid statistics (row 16.6 +- 6.0, column 14.8 +- 4.1
px, same seeds), so where an object lands is decided by the initial noise, not the prompt.
"""

from configs.shapes.latent_text import get_config as get_latent_text_config


def get_config():
    config = get_latent_text_config()
    config.model.pooled_context = True
    config.model.coord_channels = True
    config.model.attention_levels = (False, True)
    config.text.max_length = 88
    config.training.n_iters = 3000
    config.training.max_seconds = 0.0
    return config
