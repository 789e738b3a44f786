"""NCSN++ cont.: NCSN++ trained with the continuous-time VE SDE objective on CIFAR-10.

    python main.py --config configs/ve/cifar10_ncsnpp_continuous.py --workdir runs/ve_ncsnpp_c
    python main.py --config configs/ve/cifar10_ncsnpp_continuous.py --workdir runs/ve_ncsnpp_c \
        --mode eval --config.eval.enable_sampling=True

Expected (Song et al. 2021, Table 3, "NCSN++ cont. (VE)"): FID 2.38, IS 9.83 with the PC
sampler (reverse diffusion + Langevin, snr 0.16), 50k samples, best snapshot of 1.3M iterations.
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import NCSNPP


def get_config():
    config = get_default_configs()
    config.training.sde = "vesde"
    config.training.continuous = True
    config.model.update(NCSNPP)
    config.model.ema_rate = 0.999
    return config
