"""NCSNv2 (Song & Ermon 2020): RefineNet with output / sigma, 232 sigmas in [0.01, 50], EMA,
annealed Langevin dynamics (5 steps per level, step size 6.2e-6 sigma_i^2/sigma_L^2) + denoising.

    python main.py --config configs/ve/ncsnv2/cifar10.py --workdir runs/ve_cifar10_ncsnv2
    python main.py --config configs/ve/ncsnv2/cifar10.py --workdir runs/ve_cifar10_ncsnv2 \
        --mode eval --config.eval.enable_sampling=True

Expected (Song & Ermon 2020, CIFAR-10 table): IS 8.40, FID 10.87 with the final denoising
step, after 300k iterations.
"""

from configs.default_cifar10 import get_default_configs


def get_config():
    config = get_default_configs()
    training = config.training
    training.sde = "vesde"
    training.continuous = False
    training.n_iters = 300001
    config.eval.begin_ckpt = 1  # snapshots every 50k steps
    config.eval.end_ckpt = 6

    sampling = config.sampling
    sampling.method = "ald"
    sampling.step_lr = 6.2e-6
    sampling.n_steps_each = 5
    sampling.noise_removal = True

    model = config.model
    model.name = "ncsnv2"
    model.nf = 128
    model.normalization = "InstanceNorm++"
    model.nonlinearity = "elu"
    model.interpolation = "bilinear"
    model.ema_rate = 0.999
    model.sigma_max = 50.0
    model.num_scales = 232

    optim = config.optim
    optim.lr = 1e-4
    optim.warmup = 0
    optim.grad_clip = -1.0
    return config
