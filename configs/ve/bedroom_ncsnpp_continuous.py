"""NCSN++ cont. (VE SDE, sigma_max 378) on LSUN bedroom 256x256.

    python main.py --config configs/ve/bedroom_ncsnpp_continuous.py --workdir runs/ve_bedroom \
        --config.data.data_dir=/path/to/lsun_bedroom_256

Expected: Song et al. (2021) show samples in the appendix and report no FID for LSUN;
quality is judged from runs/ve_bedroom/samples. PC sampler with Langevin snr 0.075.
"""

from configs.default_images import NCSNPP_256
from configs.default_lsun import get_default_configs


def get_config():
    config = get_default_configs()
    config.training.sde = "vesde"
    config.training.continuous = True
    config.model.update(NCSNPP_256)
    config.model.ema_rate = 0.999
    return config
