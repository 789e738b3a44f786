"""DDPM++ cont. (deep, sub-VP): 8 blocks per level, sub-VP SDE — the paper's best likelihood.

    python main.py --config configs/subvp/cifar10_ddpmpp_deep_continuous.py --workdir runs/subvp_d
    python main.py --config configs/subvp/cifar10_ddpmpp_deep_continuous.py --workdir runs/subvp_d \
        --mode eval --config.eval.enable_sampling=True           # FID / IS, Euler-Maruyama
    #   add --config.sampling.method=ode for the probability-flow ODE sampler;
    #   --config.eval.enable_bpd=True for bits/dim on the (dequantized) test set

Expected (Song et al. 2021, Tables 2-3, "DDPM++ cont. (deep, sub-VP)"): FID 2.41, IS 9.57 (SDE
sampler, best snapshot); FID 2.92 with the ODE sampler and 2.99 bits/dim (last of 950k steps).
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import DDPMPP


def get_config():
    config = get_default_configs()
    config.training.sde = "subvpsde"
    config.training.continuous = True
    config.training.reduce_mean = True
    config.training.n_iters = 950001
    config.eval.end_ckpt = 19  # the last snapshot, 950k
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPMPP, num_res_blocks=8)
    return config
