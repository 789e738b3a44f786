"""Defaults shared by every image experiment (values of Song et al., ICLR 2021, on CIFAR-10).

Dataset defaults (default_cifar10.py, default_celeba.py, default_lsun.py, default_digits.py)
change only what differs from here; experiment files start from one of them and add a network
preset below plus their SDE, sampler and any paper-specific value. Any field can be set from
the command line, e.g. --config.training.batch_size=64 --config.model.num_res_blocks=2.
"""

import ml_collections

# ---------------------------------------------------------------------------------------------
# Network presets: the keyword fields of each module (models/ddpm.py, models/ncsnpp.py).
# Apply with config.model.update(PRESET); the SDE and EMA fields stay in the defaults.
# ---------------------------------------------------------------------------------------------

# DDPM UNet of Ho et al. (2020): 35.7M parameters on 32x32x3.
DDPM = dict(
    name="ddpm",
    nf=128,
    ch_mult=(1, 2, 2, 2),
    num_res_blocks=2,
    attn_resolutions=(16,),
    resamp_with_conv=True,
    conditional=True,
    scale_by_sigma=False,
    num_classes=0,  # > 0: class embedding (classifier-free guidance over classes)
)

# NCSN++ for VE SDEs (Song et al. 2021, App. H): BigGAN blocks, FIR resampling, a residual
# input pyramid, Gaussian Fourier features of log sigma, output divided by sigma.
NCSNPP = dict(
    name="ncsnpp",
    nf=128,
    ch_mult=(1, 2, 2, 2),
    num_res_blocks=4,
    attn_resolutions=(16,),
    resamp_with_conv=True,
    conditional=True,
    resblock_type="biggan",
    fir=True,
    fir_kernel=(1, 3, 3, 1),
    skip_rescale=True,
    progressive="none",
    progressive_input="residual",
    progressive_combine="sum",
    embedding_type="fourier",
    fourier_scale=16.0,
    init_scale=0.0,
    scale_by_sigma=True,
    num_classes=0,  # > 0: class embedding (classifier-free guidance over classes)
)

# DDPM++ for VP / sub-VP SDEs: NCSN++ without FIR and input pyramid, with sinusoidal
# embeddings of the time label; it predicts the noise, so no division by sigma.
DDPMPP = dict(
    NCSNPP,
    fir=False,
    progressive_input="none",
    embedding_type="positional",
    scale_by_sigma=False,
)

# NCSN++ at 256x256 (LSUN, FFHQ): seven levels, two blocks each, output and input skips.
NCSNPP_256 = dict(
    NCSNPP,
    ch_mult=(1, 1, 2, 2, 2, 2, 2),
    num_res_blocks=2,
    progressive="output_skip",
    progressive_input="input_skip",
)


def get_default_configs():
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.training = training = ml_collections.ConfigDict()
    training.sde = "vesde"  # vesde | vpsde | subvpsde | edmsde
    training.continuous = True
    training.method = "dsm"
    training.reduce_mean = False
    training.likelihood_weighting = False
    training.n_iters = 1300001
    training.batch_size = 128
    training.n_jitted_steps = 5
    training.log_freq = 50
    training.snapshot_freq = 50000
    training.snapshot_freq_for_preemption = 10000
    training.eps = ml_collections.config_dict.placeholder(float)  # None: the SDE's default
    training.P_mean = -1.2  # training.method='edm': ln sigma ~ N(P_mean, P_std^2)
    training.P_std = 1.2
    training.cond_drop_prob = 0.1  # class runs: label -> null class (classifier-free guidance)
    training.compute_dtype = "float32"  # float32 | bfloat16 (activations; params stay float32)

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
    sampling.step_lr = 2e-5  # ald only
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
    sampling.num_samples = 64  # the grid written at each snapshot
    sampling.batch_size = 64
    # controllable generation (--mode sample / eval): none | class | inpaint | colorize | img2img
    sampling.task = "none"
    sampling.input = "test"  # the run's test split, a folder of PNGs or an .npz
    sampling.mask = ""  # left_half | centre_square | random_pixels | a PNG; '' = task default
    sampling.strength = 0.5  # img2img: start at strength * T (0: the input, 1: unconditional)
    sampling.jump_length = 10  # RePaint (sampling.method='pc'): steps between jumps back
    sampling.resample_times = 1  # RePaint: passes over each stretch (1: plain replacement)
    # sampling.task='class': classifier-free guidance (model.num_classes > 0) and/or classifier
    # guidance by a noise-conditional classifier run (configs/digits/classifier.py)
    sampling.class_label = -1  # a class in [0, num_classes), or -1: each class in turn
    sampling.guidance_scale = 1.0  # classifier-free: s_u + w (s_c - s_u); 1: conditional
    sampling.classifier_workdir = ""  # a classifier run's workdir ('' = no classifier)
    sampling.classifier_scale = 1.0  # score + scale * grad log p_t(y | x)

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.begin_ckpt = 9  # checkpoints are counted in units of training.snapshot_freq
    evaluate.end_ckpt = 26
    evaluate.batch_size = 1024
    evaluate.enable_sampling = False
    evaluate.num_samples = 50000
    evaluate.enable_loss = True
    evaluate.enable_bpd = False
    evaluate.bpd_dataset = "test"  # train | test
    evaluate.bpd_repeats = 5  # passes over the bpd dataset (fresh dequantization each)
    evaluate.hutchinson = "rademacher"
    evaluate.rtol = 1e-5
    evaluate.atol = 1e-5
    evaluate.inception_path = ml_collections.config_dict.placeholder(str)  # .pth or .npz
    evaluate.classifier_path = ml_collections.config_dict.placeholder(str)  # digits proxy net
    evaluate.stats_path = ml_collections.config_dict.placeholder(str)  # default: WORKDIR/fid_stats
    evaluate.stats_split = "train"  # split whose statistics --mode fid_stats computes
    evaluate.kid_reference_size = 10000  # reference features kept in the stats file for KID
    evaluate.kid_subset_size = 1000
    evaluate.kid_subsets = 100
    evaluate.is_splits = 10
    evaluate.wait_timeout = 0.0  # seconds to wait for a checkpoint that training will write
    evaluate.poll_seconds = 30.0

    # The SDE paper's Table 1 (--mode ablate): P{N}, P{2N}, C{2N}, PC{N} per predictor.
    config.ablation = ablation = ml_collections.ConfigDict()
    ablation.num_scales = 1000
    ablation.num_samples = 10000
    ablation.snr = 0.16
    ablation.n_steps_each = 1
    ablation.ode_tolerances = (1e-3, 1e-5)
    # fast solvers beside Table 1, each at ablation.fast_nfe score evaluations
    ablation.fast_methods = ("ddim", "dpm_solver", "dpm_solver++", "unipc", "edm_heun")
    ablation.fast_nfe = (5, 10, 15, 20, 35, 50)

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "cifar10"
    data.image_size = 32
    data.num_channels = 3
    data.centered = False  # True: the SDE sees data in [-1, 1] (VP); False: [0, 1] (VE)
    data.random_flip = True
    data.uniform_dequantization = False
    data.data_dir = ml_collections.config_dict.placeholder(str)  # tfds dir or image folder

    config.model = model = ml_collections.ConfigDict()
    model.name = "ncsnpp"
    model.dropout = 0.1
    model.ema_rate = 0.9999
    model.ema_warmup = False  # True: decay min(ema_rate, (1 + n) / (10 + n)) at update n
    model.sigma_min = 0.01
    model.sigma_max = 50.0
    model.sigma_data = 0.5  # training.sde='edmsde': the data std of EDM's preconditioning
    model.beta_min = 0.1
    model.beta_max = 20.0
    model.num_scales = 1000

    config.optim = optim = ml_collections.ConfigDict()
    optim.optimizer = "adam"
    optim.lr = 2e-4
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.warmup = 5000
    optim.grad_clip = 1.0  # < 0: no clipping
    optim.weight_decay = 0.0
    optim.schedule = "constant"
    return config
