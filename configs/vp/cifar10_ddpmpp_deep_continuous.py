"""DDPM++ cont. (deep): 8 residual blocks per level, VP SDE, CIFAR-10.

    python main.py --config configs/vp/cifar10_ddpmpp_deep_continuous.py --workdir runs/vp_deep
    python main.py --config configs/vp/cifar10_ddpmpp_deep_continuous.py --workdir runs/vp_deep \
        --mode eval --config.eval.enable_sampling=True           # FID / IS, Euler-Maruyama
    #   add --config.sampling.method=ode for the probability-flow ODE sampler;
    #   --config.eval.enable_bpd=True for bits/dim on the (dequantized) test set

Expected (Song et al. 2021, Tables 2-3, "DDPM++ cont. (deep, VP)"): FID 2.41, IS 9.68 (SDE
sampler, best snapshot); FID 3.08 with the ODE sampler and 3.13 bits/dim (last of 950k steps).
"""

from configs.default_cifar10 import get_default_configs
from configs.default_images import DDPMPP


def get_config():
    config = get_default_configs()
    config.training.sde = "vpsde"
    config.training.continuous = True
    config.training.reduce_mean = True
    config.training.n_iters = 950001
    config.eval.end_ckpt = 19  # the last snapshot, 950k
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    config.model.update(DDPMPP, num_res_blocks=8)
    return config
