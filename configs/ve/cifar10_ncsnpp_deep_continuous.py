"""NCSN++ cont. (deep): 8 residual blocks per level, VE SDE, CIFAR-10 — the paper's best FID.

    python main.py --config configs/ve/cifar10_ncsnpp_deep_continuous.py --workdir runs/ve_deep
    python main.py --config configs/ve/cifar10_ncsnpp_deep_continuous.py --workdir runs/ve_deep \
        --mode eval --config.eval.enable_sampling=True

Expected (Song et al. 2021, Table 3, "NCSN++ cont. (deep, VE)"): FID 2.20, IS 9.89 with the PC
sampler (reverse diffusion + Langevin, snr 0.16), 50k samples, best snapshot of 950k iterations.
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import NCSNPP


def get_config():
    config = get_default_configs()
    config.training.sde = "vesde"
    config.training.continuous = True
    config.training.n_iters = 950001
    config.eval.end_ckpt = 19  # the last snapshot, 950k
    config.model.update(NCSNPP, num_res_blocks=8)
    config.model.ema_rate = 0.999
    return config
