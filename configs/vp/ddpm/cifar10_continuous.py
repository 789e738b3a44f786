"""DDPM cont. (VP): the DDPM UNet trained with the continuous-time VP SDE objective, CIFAR-10.

    python main.py --config configs/vp/ddpm/cifar10_continuous.py --workdir runs/vp_ddpm_c
    python main.py --config configs/vp/ddpm/cifar10_continuous.py --workdir runs/vp_ddpm_c \
        --mode eval --config.eval.enable_bpd=True --config.eval.enable_sampling=True \
        --config.sampling.method=ode

Expected (Song et al. 2021, Table 2, "DDPM cont. (VP)"): 3.21 bits/dim on the test set and
FID 3.69 with the probability-flow ODE sampler (last snapshot of 1.3M iterations).
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import DDPM


def get_config():
    config = get_default_configs()
    config.training.sde = "vpsde"
    config.training.continuous = True
    config.training.reduce_mean = True
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPM)
    return config
