"""Defaults for a pretrained Stable Diffusion 1.x / 2.x checkpoint (diffusers layout, read by
models/pretrained.py; nothing is downloaded). The network, autoencoder, text encoder and discrete
noise schedule all come from the checkpoint directory; `--mode sample` samples it, `--mode train`
fine-tunes its UNet on captioned images (sd_finetune.py: `data`, `training`, `optim` and
`model.ema_rate` below; text encoder and autoencoder frozen), and `--mode sample` on that
workdir then samples the fine-tuned EMA UNet. configs/sd/ holds the per-family files.
"""

import ml_collections


def get_default_configs():
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.pretrained = pretrained = ml_collections.ConfigDict()
    pretrained.path = ""  # the checkpoint directory: unet/, vae/, text_encoder/, tokenizer/, ...
    pretrained.dtype = "float32"  # compute and parameter dtype: float32 | bfloat16 | float16
    pretrained.prediction_type = ""  # '' : the scheduler's; or 'epsilon' | 'v_prediction'
    # > 0: the VAE decodes (and img2img / inpaint encode) in overlapping tiles of this many
    # latent pixels a side, blended linearly (large images; close to, not equal to, one pass)
    pretrained.vae_tile = 0
    pretrained.vae_tile_overlap = -1  # latent pixels; -1: a quarter of vae_tile

    pretrained.use_workdir = True  # --mode sample: the workdir's fine-tuned EMA UNet if any

    config.data = data = ml_collections.ConfigDict()
    data.image_size = 512  # pixels; latents are image_size / 8 on a side
    # --mode train: captioned images, e.g. dataset='image_folder' with data_dir holding the
    # images and a metadata.jsonl of {"file_name", "text"} rows
    data.dataset = ""
    data.data_dir = ""
    data.num_channels = 3
    data.random_flip = False

    # --mode train (fine-tuning): the checkpoint's objective (epsilon or v, discrete timesteps)
    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 8
    training.n_iters = 1000
    training.n_jitted_steps = 1
    training.log_freq = 10
    training.snapshot_freq = 500
    training.snapshot_freq_for_preemption = 100
    training.max_seconds = 0  # > 0: stop (with a checkpoint) after this much training time
    training.method = "dsm"
    training.continuous = False  # diffusers' timesteps 0..N-1 of the checkpoint's schedule
    training.reduce_mean = True  # the mean squared error of diffusers' fine-tuning script
    training.likelihood_weighting = False
    training.cond_drop_prob = 0.1  # captions replaced by the empty prompt (guidance)
    training.compute_dtype = "float32"  # or 'bfloat16' (float32 master weights)

    config.optim = optim = ml_collections.ConfigDict()
    optim.optimizer = "adamw"
    optim.lr = 1e-5
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.warmup = 0
    optim.grad_clip = 1.0
    optim.weight_decay = 1e-2

    config.model = model = ml_collections.ConfigDict()
    model.ema_rate = 0.9999

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.prompts = "a photograph of an astronaut riding a horse"  # 'a;b;...'
    sampling.prompts_file = ""  # or one prompt per line
    sampling.negative_prompts = ""  # 'x' for all prompts, or one per prompt; '' : empty prompt
    sampling.samples_per_prompt = 1
    sampling.guidance_scale = 7.5  # classifier-free guidance w (0: unconditional, 1: conditional)
    sampling.seed = 0  # image i uses seed + i
    sampling.batch_size = 1  # images per compiled call (split over the devices)
    sampling.num_samples = 1  # --mode train: snapshot grids of the first prompts
    sampling.method = "dpm_solver++"  # 2M: second-order multistep
    sampling.steps = 25
    sampling.order = 2
    sampling.schedule = "logsnr"
    # '' : the solver's own time grid (sampling.schedule); 'diffusers': the checkpoint
    # scheduler's discrete timesteps for sampling.steps (methods ddim, dpm_solver++, unipc)
    sampling.timesteps = ""
    sampling.multistep = True
    sampling.lower_order_final = True
    # sampling.method='pc' | 'ode' read these
    sampling.predictor = "reverse_diffusion"
    sampling.corrector = "none"
    sampling.snr = 0.16
    sampling.n_steps_each = 1
    sampling.probability_flow = False
    sampling.noise_removal = True
    sampling.rtol = 1e-3
    sampling.atol = 1e-3
    sampling.ode_method = "dopri5"
    # sampling.task: 'none' (text-to-image) | 'img2img' (SDEdit) | 'inpaint'
    sampling.task = "none"
    sampling.input = ""  # img2img / inpaint: a folder of PNGs or an .npz ('samples' / 'images')
    sampling.strength = 0.75  # img2img: 0 returns the input, 1 ignores it
    sampling.mask = ""  # a mask name or PNG (1 = keep); inpaint default 'centre_square'
    return config
