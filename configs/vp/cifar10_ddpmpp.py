"""DDPM++ trained with the discrete DDPM objective (VP, 1000 steps) on CIFAR-10.

    python main.py --config configs/vp/cifar10_ddpmpp.py --workdir runs/vp_cifar10_ddpmpp
    python main.py --config configs/vp/cifar10_ddpmpp.py --workdir runs/vp_cifar10_ddpmpp \
        --mode eval --config.eval.enable_sampling=True

Expected (Song et al. 2021, Table 3, "DDPM++"): FID 2.78, IS 9.64 with ancestral sampling,
50k samples, best snapshot of the 1.3M iterations.
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import DDPMPP


def get_config():
    config = get_default_configs()
    config.training.sde = "vpsde"
    config.training.continuous = False
    config.training.reduce_mean = True
    config.sampling.predictor = "ancestral_sampling"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPMPP)
    return config
