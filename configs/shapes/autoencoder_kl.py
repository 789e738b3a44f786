"""KL autoencoder for the shapes set: 32x32x3 images <-> 8x8x4 latents (f = 4).

    python main.py --config configs/shapes/autoencoder_kl.py --mode train --workdir runs/shapes_ae

L1 reconstruction with a learned log-variance and KL weight 1e-6 (latent diffusion's
objective without its perceptual term, whose weights are a download; the PatchGAN is off:
--config.autoencoder.disc_weight=0.5 turns it on from autoencoder.disc_start). Writes
samples/reconstructions_<step>.png and, at the end, autoencoder.json with the latent scale
factor (1 / std of training latents) and the test PSNR.

Expected (measured, 2 idle CPU cores): test PSNR 26.5 dB at step 2000 with colours, shapes and
positions intact in the reconstruction grid; scale factor 0.55; 144 s wall in all (about 15
steps/s; 11.5 min when the cores were shared with other jobs). With L1 instead of L2 it was
14.0 dB at step 1500 (colourless blobs): on these mostly black images L1 is slow to leave the
black median.
"""

import ml_collections

from configs.default_shapes import get_default_configs


def get_config():
    config = get_default_configs()
    del config["text"]
    del config["latent"]
    config.training.batch_size = 16
    config.training.n_iters = 2000
    config.training.snapshot_freq = 1000
    config.training.log_freq = 50
    config.model.ema_rate = 0.99
    config.optim.warmup = 100

    config.autoencoder = ae = ml_collections.ConfigDict()
    ae.name = "kl"
    ae.in_channels = 3
    ae.out_channels = 3
    ae.ch = 8  # 8 / 16 / 32 channels at 32 / 16 / 8 px: 0.22 s per step of 16 on 2 cores
    ae.ch_mult = (1, 2, 4)
    ae.num_res_blocks = 1
    ae.z_channels = 4
    ae.embed_dim = 4
    ae.attn_resolutions = ()
    ae.dropout = 0.0
    ae.norm_num_groups = 8
    ae.double_z = True
    ae.rec_loss = "l2"  # l2 | l1 (L1 is slower here: 14.6 vs 18.3 dB PSNR after 400 steps)
    ae.kl_weight = 1e-6
    ae.logvar_init = 0.0
    ae.disc_weight = 0.0  # > 0: PatchGAN hinge loss with the adaptive weight
    ae.disc_start = 1000
    ae.disc_ndf = 32
    ae.disc_layers = 2
    ae.disc_groups = 16
    ae.scale_factor = 0.0  # 0: 1 / std of the training latents; SD: 0.18215
    return config
