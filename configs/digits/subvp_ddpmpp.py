"""A small DDPM++ with the continuous sub-VP SDE on the embedded 16x16 digits (no download).

    python main.py --config configs/digits/subvp_ddpmpp.py --workdir runs/digits_subvp
    python main.py --config configs/digits/subvp_ddpmpp.py --workdir runs/digits_subvp \
        --mode eval --config.eval.enable_bpd=True

Expected: to be measured. As on CIFAR-10 (Song et al. 2021, Table 2), sub-VP should give a
lower test bits/dim than configs/digits/vp_ddpmpp.py trained the same way.
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
