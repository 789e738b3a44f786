"""DDPM++ cont.: DDPM++ trained with the continuous-time VP SDE objective on CIFAR-10.

    python main.py --config configs/vp/cifar10_ddpmpp_continuous.py --workdir runs/vp_ddpmpp_c
    python main.py --config configs/vp/cifar10_ddpmpp_continuous.py --workdir runs/vp_ddpmpp_c \
        --mode eval --config.eval.enable_sampling=True           # FID / IS, Euler-Maruyama
    #   add --config.sampling.method=ode for the probability-flow ODE sampler;
    #   --config.eval.enable_bpd=True for bits/dim on the (dequantized) test set

Expected (Song et al. 2021, Tables 2-3, "DDPM++ cont. (VP)"): FID 2.55, IS 9.58 (SDE sampler,
best snapshot); FID 3.93 with the ODE sampler and 3.16 bits/dim (last snapshot, 1.3M steps).
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import DDPMPP


def get_config():
    config = get_default_configs()
    config.training.sde = "vpsde"
    config.training.continuous = True
    config.training.reduce_mean = True
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPMPP)
    return config
