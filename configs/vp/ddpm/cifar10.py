"""DDPM (Ho et al. 2020): the 35.7M-parameter UNet with the discrete objective, CIFAR-10.

    python main.py --config configs/vp/ddpm/cifar10.py --workdir runs/vp_cifar10_ddpm
    python main.py --config configs/vp/ddpm/cifar10.py --workdir runs/vp_cifar10_ddpm \
        --mode eval --config.eval.enable_sampling=True           # FID, ancestral sampling
    #   add --config.sampling.method=ode for the probability-flow ODE sampler;
    #   --config.eval.enable_bpd=True for bits/dim on the (dequantized) test set

Expected: Ho et al. report FID 3.17, IS 9.46, NLL <= 3.75 bits/dim (800k steps). The SDE paper's
retrained checkpoint (1.3M steps) gives FID 3.24 with ancestral sampling (Table 1), and through
the probability-flow ODE FID 3.37 and 3.28 bits/dim (Table 2, "DDPM").
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import DDPM


def get_config():
    config = get_default_configs()
    config.training.sde = "vpsde"
    config.training.continuous = False
    config.training.reduce_mean = True
    config.sampling.predictor = "ancestral_sampling"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPM)
    return config
