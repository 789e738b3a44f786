"""NCSN++ trained with the discrete SMLD objective (VE, 1000 sigmas) on CIFAR-10.

    python main.py --config configs/ve/cifar10_ncsnpp.py --workdir runs/ve_cifar10_ncsnpp
    python main.py --config configs/ve/cifar10_ncsnpp.py --workdir runs/ve_cifar10_ncsnpp \
        --mode eval --config.eval.enable_sampling=True

Expected (Song et al. 2021, Table 3, "NCSN++"): FID 2.45, IS 9.73 with the PC sampler
(reverse diffusion + Langevin, snr 0.16), 50k samples, best snapshot of the 1.3M iterations.
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import NCSNPP


def get_config():
    config = get_default_configs()
    config.training.sde = "vesde"
    config.training.continuous = False
    config.model.update(NCSNPP)
    config.model.ema_rate = 0.999
    return config
