"""DDPM++ cont. (sub-VP): DDPM++ trained with the sub-VP SDE objective, CIFAR-10.

    python main.py --config configs/subvp/cifar10_ddpmpp_continuous.py --workdir runs/subvp_pp
    python main.py --config configs/subvp/cifar10_ddpmpp_continuous.py --workdir runs/subvp_pp \
        --mode eval --config.eval.enable_sampling=True           # FID / IS, Euler-Maruyama
    #   add --config.sampling.method=ode for the probability-flow ODE sampler;
    #   --config.eval.enable_bpd=True for bits/dim on the (dequantized) test set

Expected (Song et al. 2021, Tables 2-3, "DDPM++ cont. (sub-VP)"): FID 2.61, IS 9.56 (SDE
sampler, best snapshot); FID 3.16 with the ODE sampler and 3.02 bits/dim (last of 1.3M steps).
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import DDPMPP


def get_config():
    config = get_default_configs()
    config.training.sde = "subvpsde"
    config.training.continuous = True
    config.training.reduce_mean = True
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPMPP)
    return config
