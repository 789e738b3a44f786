"""Defaults for the embedded image data set: scikit-learn's 8x8 digits resized to 16x16, grey.

No download. 1,500 training / 297 test images; the small NCSN++ / DDPM++ variants of
configs/digits/ train on a laptop CPU in minutes. The networks are the CIFAR-10 presets of
default_images.py shrunk to 12 base channels, three levels (16, 8, 4), one block per level and
attention at 8x8 (about 0.18M parameters): one forward + backward pass on 64 images took
0.18-0.28 s on a shared 2-core CPU (with 16 channels 0.27-0.29 s, with 32 channels 0.8 s).
VE sigma_max = 8.4 is the largest distance between two training images in [0, 1] (Song &
Ermon 2020, technique 1); 500 noise scales keep sampling short. Hyperparameters are sized
for speed, not tuned.
"""

from configs.default_images import get_default_configs as get_image_defaults

# The shrunken network fields, applied after an architecture preset.
SMALL_UNET = dict(nf=12, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,))


def get_default_configs():
    config = get_image_defaults()
    training = config.training
    training.batch_size = 64
    training.n_iters = 3000
    # 10 steps per call: 93.6 ms a step against 120.2 ms one call per step (2 cores,
    # bench/digits_train.py). Scanned steps were 30x slower before models/conv.py.
    training.n_jitted_steps = 10
    training.log_freq = 100
    training.snapshot_freq = 1500
    training.snapshot_freq_for_preemption = 500

    sampling = config.sampling
    sampling.num_samples = 64
    sampling.batch_size = 64

    evaluate = config.eval
    evaluate.begin_ckpt = 2  # the final checkpoint (step 2 * snapshot_freq = 3000)
    evaluate.end_ckpt = 2
    # all three, so `--mode eval` gives the README's table: on 2 cores about 9 min of sampling
    # (1000 samples, 500 steps) and 2-4 min of bits/dim per checkpoint
    evaluate.enable_sampling = True
    evaluate.enable_bpd = True
    evaluate.enable_loss = True
    evaluate.batch_size = 297
    evaluate.num_samples = 1000
    evaluate.bpd_repeats = 1

    data = config.data
    data.dataset = "digits"
    data.image_size = 16
    data.num_channels = 1
    data.random_flip = False  # digits are not mirror-symmetric

    model = config.model
    model.ema_rate = 0.999
    # A 3000-step run is only 3 / (1 - ema_rate) long: without warm-up the average still holds
    # 22% of the random initialisation at step 1500, and its samples were noise (measured).
    model.ema_warmup = True
    model.sigma_max = 8.4
    model.num_scales = 500

    optim = config.optim
    optim.lr = 1e-3
    optim.warmup = 200
    return config
