"""Defaults for sampling a pretrained Stable Diffusion 1.x / 2.x checkpoint (diffusers layout,
read by models/pretrained.py; nothing is trained or downloaded). The network, autoencoder, text
encoder and discrete noise schedule all come from the checkpoint directory, so there is no
`model` or `training` section; configs/sd/ holds the per-family files with their commands.
"""

import ml_collections


def get_default_configs():
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.pretrained = pretrained = ml_collections.ConfigDict()
    pretrained.path = ""  # the checkpoint directory: unet/, vae/, text_encoder/, tokenizer/, ...
    pretrained.dtype = "float32"  # compute and parameter dtype: float32 | bfloat16 | float16
    pretrained.prediction_type = ""  # '' : the scheduler's; or 'epsilon' | 'v_prediction'

    config.data = data = ml_collections.ConfigDict()
    data.image_size = 512  # pixels; latents are image_size / 8 on a side

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.prompts = "a photograph of an astronaut riding a horse"  # 'a;b;...'
    sampling.prompts_file = ""  # or one prompt per line
    sampling.negative_prompts = ""  # 'x' for all prompts, or one per prompt; '' : empty prompt
    sampling.samples_per_prompt = 1
    sampling.guidance_scale = 7.5  # classifier-free guidance w (0: unconditional, 1: conditional)
    sampling.seed = 0  # image i uses seed + i
    sampling.batch_size = 1  # images per compiled call (split over the devices)
    sampling.method = "dpm_solver++"  # 2M: second-order multistep
    sampling.steps = 25
    sampling.order = 2
    sampling.schedule = "logsnr"
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
