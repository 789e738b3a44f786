"""A tiny one-level DDPM++ on 8x8 embedded digits for the image training tests (compiles in
seconds on a CPU).

    python main.py --config tests/digits_tiny.py --workdir /tmp/digits_tiny
"""

from configs.default_toy import get_default_configs


def get_config():
    config = get_default_configs()
    config.seed = 7
    t = config.training
    t.batch_size = 8
    t.n_iters = 4
    t.n_jitted_steps = 1
    t.log_freq = 1
    t.snapshot_freq = 4
    t.snapshot_freq_for_preemption = 2
    t.compute_dtype = "float32"

    d = config.data
    d.dataset = "digits"
    d.image_size = 8
    d.num_channels = 1
    d.centered = True
    d.random_flip = False
    d.uniform_dequantization = False

    m = config.model
    m.name = "ncsnpp"  # DDPM++ (Song et al. 2021, VP)
    m.nf = 8
    m.ch_mult = (1,)
    m.num_res_blocks = 1
    m.attn_resolutions = ()
    m.dropout = 0.1
    m.resblock_type = "biggan"
    m.fir = False
    m.progressive = "none"
    m.progressive_input = "none"
    m.embedding_type = "positional"
    m.skip_rescale = True
    m.init_scale = 1.0  # (0 in the paper) non-zero gradients for every layer at step 1
    m.scale_by_sigma = False
    m.num_scales = 50
    m.ema_rate = 0.9

    s = config.sampling
    s.corrector = "none"
    s.num_samples = 8
    s.batch_size = 8

    config.optim.lr = 1e-3
    config.optim.warmup = 0
    return config
