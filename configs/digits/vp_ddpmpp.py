"""A small DDPM++ with the continuous VP SDE on the embedded 16x16 digits (no download).

    python main.py --config configs/digits/vp_ddpmpp.py --workdir runs/digits_vp

Expected: to be measured; samples in runs/digits_vp/samples/ should show legible digits.
Sizes are chosen for speed (one forward + backward pass on 64 images: 0.2-0.3 s on a shared
2-core CPU). Euler-Maruyama sampler, 500 steps.
"""

from configs.default_digits import SMALL_UNET, get_default_configs
from configs.default_images import DDPMPP


def get_config():
    config = get_default_configs()
    config.training.sde = "vpsde"
    config.training.continuous = True
    config.training.reduce_mean = True
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPMPP, **SMALL_UNET)
    return config
