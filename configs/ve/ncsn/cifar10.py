"""NCSN (Song & Ermon 2019): the conditional RefineNet over 10 sigmas in [0.01, 1], CIFAR-10,
sampled with annealed Langevin dynamics (100 steps per level, step size 2e-5 sigma_i^2/sigma_L^2).

    python main.py --config configs/ve/ncsn/cifar10.py --workdir runs/ve_cifar10_ncsn
    python main.py --config configs/ve/ncsn/cifar10.py --workdir runs/ve_cifar10_ncsn \
        --mode eval --config.eval.enable_sampling=True

Expected (Song & Ermon 2019, Table 1): IS 8.87, FID 25.32 after 200k iterations, no EMA and
no final denoising step.
"""

from configs.default_cifar10 import get_default_configs


def get_config():
    config = get_default_configs()
    training = config.training
    training.sde = "vesde"
    training.continuous = False
    training.n_iters = 200001
    config.eval.begin_ckpt = 1  # snapshots every 50k steps
    config.eval.end_ckpt = 4

    sampling = config.sampling
    sampling.method = "ald"
    sampling.step_lr = 2e-5
    sampling.n_steps_each = 100
    sampling.noise_removal = False

    model = config.model
    model.name = "ncsn"
    model.nf = 128
    model.normalization = "InstanceNorm++"
    model.nonlinearity = "elu"
    model.interpolation = "bilinear"
    model.scale_by_sigma = False
    model.ema_rate = 0.0
    model.sigma_max = 1.0
    model.num_scales = 10

    optim = config.optim
    optim.lr = 1e-3
    optim.warmup = 0
    optim.grad_clip = -1.0
    return config
