"""A small DDPM++ with the continuous sub-VP SDE on the embedded 16x16 digits (no download).

    python main.py --config configs/digits/subvp_ddpmpp.py --workdir runs/digits_subvp
    python main.py --config configs/digits/subvp_ddpmpp.py --workdir runs/digits_subvp \
        --mode eval --config.eval.enable_bpd=True

Expected (measured on 2 CPU cores, 3000 steps in about 12 min): mostly legible digits; at step
3000, 1.93 test bits/dim against 2.16 for configs/digits/vp_ddpmpp.py trained the same way
(lower, as on CIFAR-10 in Song et al. 2021, Table 2), fd_digits 0.28 on 297 samples (real
images: 0.215).
"""

from configs.default_digits import SMALL_UNET, get_default_configs
from configs.default_images import DDPMPP


def get_config():
    config = get_default_configs()
    config.training.sde = "subvpsde"
    config.training.continuous = True
    config.training.reduce_mean = True
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPMPP, **SMALL_UNET)
    return config
