"""NCSN++ cont. (VE SDE, sigma_max 380) on LSUN church_outdoor 256x256.

    python main.py --config configs/ve/church_ncsnpp_continuous.py --workdir runs/ve_church \
        --config.data.data_dir=/path/to/lsun_church_outdoor_256

Expected: Song et al. (2021) show samples in the appendix and report no FID for LSUN;
quality is judged from runs/ve_church/samples. PC sampler with Langevin snr 0.075.
"""

from configs.default_images import NCSNPP_256
from configs.default_lsun import get_default_configs


def get_config():
    config = get_default_configs()
    config.training.sde = "vesde"
    config.training.continuous = True
    config.model.update(NCSNPP_256)
    config.model.ema_rate = 0.999
    config.model.sigma_max = 380.0
    return config
