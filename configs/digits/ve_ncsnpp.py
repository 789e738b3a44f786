"""A small NCSN++ with the continuous VE SDE (sigma 0.01 .. 8.4) on the embedded 16x16 digits.

    python main.py --config configs/digits/ve_ncsnpp.py --workdir runs/digits_ve

NCSN++'s conditioning (Fourier features of log sigma, output divided by sigma) and residual
input pyramid, without FIR resampling: XLA's CPU depthwise convolutions make FIR about three
times slower here. PC sampler, reverse diffusion + Langevin (snr 0.16), 500 levels.

Expected: to be measured; samples in runs/digits_ve/samples/ should show legible digits.
"""

from configs.default_digits import SMALL_UNET, get_default_configs
from configs.default_images import NCSNPP


def get_config():
    config = get_default_configs()
    config.training.sde = "vesde"
    config.training.continuous = True
    config.model.update(NCSNPP, **SMALL_UNET)
    config.model.fir = False
    return config
