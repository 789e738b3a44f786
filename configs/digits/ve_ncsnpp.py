"""A small NCSN++ with the continuous VE SDE (sigma 0.01 .. 8.4) on the embedded 16x16 digits.

    python main.py --config configs/digits/ve_ncsnpp.py --workdir runs/digits_ve

NCSN++'s conditioning (Fourier features of log sigma, output divided by sigma) and residual
input pyramid, without FIR resampling: XLA's CPU depthwise convolutions make FIR about three
times slower here. PC sampler, reverse diffusion + Langevin (snr 0.16), 500 levels.

Expected (measured on 2 CPU cores, 3000 steps in about 13 min with the two sample grids):
legible digits; at step 3000, 1.72 test bits/dim and fd_digits 0.32 on 297 samples (real
images: 0.215 at 297).
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
