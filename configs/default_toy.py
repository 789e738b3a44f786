"""Defaults for score models on embedded 2-D data (no download).

Experiment files in configs/toy/ override only what differs. Any field can be set from the
command line, e.g. --config.training.n_iters=2000 --config.sampling.method=ode.
"""

import ml_collections


def get_default_configs():
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.training = training = ml_collections.ConfigDict()
    training.sde = "vpsde"  # vesde | vpsde | subvpsde | edmsde
    training.continuous = True
    training.method = "dsm"  # dsm | sliced | exact | edm
    training.reduce_mean = True
    training.likelihood_weighting = False
    training.n_iters = 4000
    training.batch_size = 512
    training.n_jitted_steps = 100
    training.log_freq = 500
    training.snapshot_freq = 4000
    training.snapshot_freq_for_preemption = 1000
    training.eps = ml_collections.config_dict.placeholder(float)  # None: the SDE's default
    training.P_mean = -1.2  # training.method='edm': ln sigma ~ N(P_mean, P_std^2)
    training.P_std = 1.2
    training.cond_drop_prob = 0.1  # class runs: label -> null class (classifier-free guidance)

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = "pc"  # pc | ode | ald | a fast solver (below)
    sampling.predictor = "reverse_diffusion"
    sampling.corrector = "langevin"
    sampling.snr = 0.16
    sampling.n_steps_each = 1
    sampling.noise_removal = True
    sampling.probability_flow = False
    sampling.rtol = 1e-5
    sampling.atol = 1e-5
    sampling.ode_method = "dopri5"
    sampling.step_lr = 2e-4  # ald only
    # fast solvers (sampling.method ddim | dpm_solver | dpm_solver++ | unipc | edm_heun | edm_sde)
    sampling.steps = 20  # the NFE budget: score evaluations, spent exactly
    sampling.order = ml_collections.config_dict.placeholder(int)  # None: the method's default
    sampling.schedule = "logsnr"  # time_uniform | time_quadratic | logsnr | karras
    sampling.t_end = ml_collections.config_dict.placeholder(float)  # None: the SDE's eps
    sampling.rho = 7.0  # karras schedule
    sampling.eta = 0.0  # ddim: 0 deterministic, 1 DDPM-like
    sampling.multistep = True  # dpm_solver++: 2M / 3M; False: 2S
    sampling.lower_order_final = True  # dpm_solver++ / unipc: lower orders at the end (< 10 steps)
    sampling.solver_type = "bh2"  # unipc: bh1 | bh2
    sampling.s_churn = 10.0  # edm_sde (Karras et al. 2022, Alg. 2)
    sampling.s_tmin = 0.0
    sampling.s_tmax = float("inf")
    sampling.s_noise = 1.0
    sampling.num_samples = 2000
    sampling.batch_size = 2000
    # controllable generation on image runs built from these defaults (see default_images.py)
    sampling.task = "none"
    sampling.input = "test"
    sampling.mask = ""
    sampling.strength = 0.5
    sampling.jump_length = 10
    sampling.resample_times = 1
    sampling.class_label = -1
    sampling.guidance_scale = 1.0
    sampling.classifier_workdir = ""
    sampling.classifier_scale = 1.0

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.num_samples = 2000
    evaluate.num_test = 500  # held-out points for the negative log-likelihood
    evaluate.hutchinson = "exact"
    evaluate.rtol = 1e-5
    evaluate.atol = 1e-5

    # The SDE paper's Table 1 (--mode ablate): P{N}, P{2N}, C{2N}, PC{N} per predictor.
    config.ablation = ablation = ml_collections.ConfigDict()
    ablation.num_scales = 500
    ablation.num_samples = 2000
    ablation.snr = 0.16
    ablation.n_steps_each = 1
    ablation.ode_tolerances = (1e-3, 1e-5)
    # fast solvers beside Table 1, each at ablation.fast_nfe score evaluations
    ablation.fast_methods = ("ddim", "dpm_solver", "dpm_solver++", "unipc", "edm_heun")
    ablation.fast_nfe = (5, 10, 15, 20, 35, 50)

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "checkerboard"
    data.dim = 2

    config.model = model = ml_collections.ConfigDict()
    model.name = "mlp"
    model.nf = 128
    model.num_res_blocks = 3
    model.embedding_type = "positional"
    model.fourier_scale = 16.0
    model.scale_by_sigma = False
    model.ve_sigma_data = 0.0  # > 0: VE input scaling x / sqrt(ve_sigma_data^2 + sigma^2)
    model.sigma_data = 0.5  # training.sde='edmsde': the data std of EDM's preconditioning
    model.input_octaves = 0  # > 0: x read as x, sin(2^k pi x), cos(2^k pi x) for k < octaves
    model.ema_rate = 0.999
    model.ema_warmup = False  # True: decay min(ema_rate, (1 + n) / (10 + n)) at update n
    model.sigma_min = 0.01
    model.sigma_max = 12.0
    model.beta_min = 0.1
    model.beta_max = 20.0
    model.num_scales = 500

    config.optim = optim = ml_collections.ConfigDict()
    optim.optimizer = "adam"
    optim.lr = 2e-3
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.warmup = 200
    optim.grad_clip = 1.0
    optim.weight_decay = 0.0
    optim.schedule = "cosine"  # constant | cosine (decay to 0 at training.n_iters)
    return config
