"""DDPM cont. (sub-VP): the DDPM UNet trained with the sub-VP SDE objective, CIFAR-10.

    python main.py --config configs/subvp/cifar10_ddpm_continuous.py --workdir runs/subvp_ddpm
    python main.py --config configs/subvp/cifar10_ddpm_continuous.py --workdir runs/subvp_ddpm \
        --mode eval --config.eval.enable_bpd=True --config.eval.enable_sampling=True \
        --config.sampling.method=ode

Expected (Song et al. 2021, Table 2, "DDPM cont. (sub-VP)"): 3.05 bits/dim on the test set and
FID 3.56 with the probability-flow ODE sampler (last snapshot of 1.3M iterations).
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import DDPM


def get_config():
    config = get_default_configs()
    config.training.sde = "subvpsde"
    config.training.continuous = True
    config.training.reduce_mean = True
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPM)
    return config
