"""Tiny two-stage text-to-image runs for the pipeline tests: a KL autoencoder on 8x8 captioned
digits ("a handwritten seven") and a latent text model on its 4x4x2 latents.

    python main.py --config tests/text_tiny.py:autoencoder --workdir /tmp/ae_tiny
    python main.py --config tests/text_tiny.py --workdir /tmp/text_tiny \
        --config.latent.autoencoder_workdir=/tmp/ae_tiny
"""

import ml_collections

from configs.default_shapes import get_default_configs


def _common(config):
    config.seed = 3
    t = config.training
    t.batch_size = 4
    t.n_iters = 4
    t.log_freq = 1
    t.snapshot_freq = 4
    t.snapshot_freq_for_preemption = 2
    d = config.data
    d.dataset = "digits_captioned"
    d.image_size = 8
    d.num_channels = 1
    config.sampling.num_samples = 2
    config.sampling.batch_size = 2
    config.model.num_scales = 25  # a short grid; the shapes defaults train with EDM
    return config


def autoencoder():
    config = _common(get_default_configs())
    del config["text"]
    del config["latent"]
    config.autoencoder = a = ml_collections.ConfigDict()
    a.ch = 4
    a.ch_mult = (1, 2)
    a.num_res_blocks = 1
    a.z_channels = 2
    a.embed_dim = 2
    a.in_channels = 1
    a.out_channels = 1
    a.attn_resolutions = ()
    a.norm_num_groups = 2
    a.kl_weight = 1e-6
    a.rec_loss = "l1"
    a.disc_weight = 0.5  # the PatchGAN path, on from step 2
    a.disc_start = 2
    a.disc_ndf = 4
    a.disc_layers = 1
    a.disc_groups = 2
    a.scale_factor = 0.0
    return config


def get_config(kind: str = "text"):
    if kind == "autoencoder":
        return autoencoder()
    config = _common(get_default_configs())
    m = config.model
    m.block_out_channels = (8, 16)
    m.attention_levels = (False, True)
    m.num_heads = 2
    m.context_dim = 8
    m.norm_num_groups = 4
    t = config.text
    t.max_length = 24
    t.width = 8
    t.layers = 1
    t.heads = 2
    t.intermediate_size = 16
    config.latent.autoencoder_workdir = ""
    config.sampling.guidance_scale = 2.0
    return config
