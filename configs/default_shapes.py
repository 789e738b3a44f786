"""Defaults for text-to-image on the embedded captioned shapes (32x32 RGB, no download).

A small latent-diffusion stack sized for a 2-core CPU: a KL autoencoder (f = 4, 8x8x4 latents),
a cross-attention UNet (unet_cond) and a CLIP-style byte-level text transformer trained with
it, the EDM SDE and loss in latent space, classifier-free guidance (caption dropout 0.1). The
experiment files in configs/shapes/ override what differs; they give the commands and measured
results.
"""

import ml_collections

from configs.default_images import get_default_configs as get_image_defaults


def get_default_configs():
    config = get_image_defaults()
    training = config.training
    # EDM (Karras et al. 2022) in latent space, ln sigma ~ N(1.0, 1.4^2): more weight on high
    # noise levels than EDM's N(-1.2, 1.2^2), where the layout (position, size) is decided
    training.sde = "edmsde"
    training.method = "edm"
    training.P_mean = 1.0
    training.P_std = 1.4
    training.continuous = True
    training.reduce_mean = True
    training.batch_size = 32
    training.n_iters = 6000
    # 1: the README's figures for this time-limited run were measured so (scanned steps are
    # no longer slow on CPU since models/conv.py; see configs/default_digits.py)
    training.n_jitted_steps = 1
    training.log_freq = 100
    training.snapshot_freq = 2000
    training.snapshot_freq_for_preemption = 500
    training.cond_drop_prob = 0.1  # caption -> empty prompt, for classifier-free guidance
    training.max_seconds = 600.0  # stop (checkpointed, sampled) after this much training; 0: off

    sampling = config.sampling
    sampling.method = "dpm_solver++"  # 2M, 20 network evaluations (x2 with guidance)
    sampling.steps = 20
    sampling.predictor = "reverse_diffusion"  # for --config.sampling.method=pc
    sampling.corrector = "none"
    sampling.num_samples = 16  # snapshot grids: the first 16 distinct test captions
    sampling.batch_size = 64
    sampling.guidance_scale = 3.0
    sampling.prompts = ""  # --mode sample: 'a red circle;a small blue square at the top'
    sampling.prompts_file = ""  # or one prompt per line
    sampling.samples_per_prompt = 4

    evaluate = config.eval
    evaluate.begin_ckpt = 1  # text runs evaluate their latest checkpoint
    evaluate.end_ckpt = 1
    evaluate.prompt_set = "grammar"  # grammar | paraphrase
    evaluate.num_prompts = 140  # single-object prompts (colour, shape, size, position)
    evaluate.samples_per_prompt = 2
    evaluate.guidance_scales = (0.0, 1.0, 2.0, 3.0, 5.0)
    evaluate.batch_size = 140
    evaluate.num_reference = 2000  # test images for fd_shapes

    data = config.data
    data.dataset = "shapes"
    data.image_size = 32
    data.num_channels = 3
    data.centered = True
    data.random_flip = False  # a flip would swap 'on the left' and 'on the right'
    data.holdout = ()  # (colour, shape) pairs never shown in training, e.g. (('red', 'triangle'),)

    model = config.model
    model.name = "unet_cond"
    model.out_channels = 0  # 0: as many as the input (latent or image channels)
    model.block_out_channels = (32, 64)
    model.layers_per_block = 1
    model.attention_levels = (True, True)
    model.transformer_depth = 1
    model.num_heads = 2
    model.head_dim = 0
    model.context_dim = 64
    model.norm_num_groups = 16
    model.dropout = 0.0
    # four departures from Stable Diffusion's UNet that make prompts steer the layout on a CPU
    # budget (README, "Text-to-image"); all off for Stable Diffusion weights
    model.coord_channels = True  # row / column input channels
    model.pooled_context = True  # masked mean of the text tokens -> the time embedding
    model.attention_pos_embed = True  # learned per-token positions at the attention queries
    model.resnet_scale_shift = True  # time (+ pooled text) embedding as GroupNorm scale/shift
    model.sigma_min = 0.002
    model.sigma_max = 80.0
    model.sigma_data = 1.0  # latents are scaled to unit variance
    model.ema_rate = 0.999
    model.ema_warmup = True
    model.num_scales = 500

    config.text = text = ml_collections.ConfigDict()
    text.encoder = "clip"  # clip (trained with the UNet, byte tokens) | minilm (frozen)
    text.max_length = 88  # no caption of the set is cut
    text.width = 64
    text.layers = 2
    text.heads = 4
    text.intermediate_size = 128
    text.causal = False  # bidirectional, as latent diffusion's text transformer

    config.latent = latent = ml_collections.ConfigDict()
    latent.autoencoder_workdir = ""  # a trained configs/shapes/autoencoder_kl.py run

    optim = config.optim
    optim.lr = 1e-3
    optim.warmup = 200
    return config
