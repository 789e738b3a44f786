"""A small DDPM++ with the continuous VP SDE on the embedded 16x16 digits (no download).

    python main.py --config configs/digits/vp_ddpmpp.py --workdir runs/digits_vp

Expected (measured on 2 CPU cores, 3000 steps in 10 min 50 s; 6 min 18 s with the CPU defaults of
models/conv.py and cpu_defaults.py, bench/digits_train.py --full): legible digits in
runs/digits_vp/samples/; at step 3000, on 1000 samples, fd_digits 0.158, kid_digits 0.0032,
cis_digits 8.86, and 2.16 test bits/dim (README, "Measured on the digits default"). Sizes are
chosen for speed (one forward + backward pass on 64 images: 0.2-0.3 s). Euler-Maruyama sampler,
500 steps.
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
