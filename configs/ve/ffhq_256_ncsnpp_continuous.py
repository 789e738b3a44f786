"""NCSN++ cont. (VE SDE, sigma_max 348) on FFHQ 256x256.

    python main.py --config configs/ve/ffhq_256_ncsnpp_continuous.py --workdir runs/ve_ffhq256 \
        --config.data.data_dir=/path/to/ffhq_256

Expected: no FID is published for this setting (the score_sde authors released a re-trained
checkpoint with samples only); quality is judged from samples. PC sampler, snr 0.075.
"""

from configs.default_images import NCSNPP_256
from configs.default_lsun import get_default_configs


def get_config():
    config = get_default_configs()
    config.training.sde = "vesde"
    config.training.continuous = True
    config.model.update(NCSNPP_256)
    config.model.ema_rate = 0.999
    config.model.sigma_max = 348.0
    return config
