"""NCSN++ trained with the discrete SMLD objective (VE, sigma_max 90) on CelebA 64x64.

    python main.py --config configs/ve/celeba_ncsnpp.py --workdir runs/ve_celeba_ncsnpp
    python main.py --config configs/ve/celeba_ncsnpp.py --workdir runs/ve_celeba_ncsnpp \
        --mode eval --config.eval.enable_sampling=True --config.eval.inception_path=...

Expected: Song et al. (2021) show CelebA samples but report no FID for this model; the number
this config gives is to be measured (PC sampler, reverse diffusion + Langevin, snr 0.17).
"""

from configs.default_celeba import get_default_configs
from configs.default_images import NCSNPP


def get_config():
    config = get_default_configs()
    config.training.sde = "vesde"
    config.training.continuous = False
    config.model.update(NCSNPP)
    config.model.ema_rate = 0.999
    return config
