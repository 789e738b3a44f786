"""256x256 defaults for LSUN church / bedroom and FFHQ, read as folders of exported images.

    --config.data.data_dir=/path/to/lsun_church_outdoor_256   (PNG/JPEG files, any depth)

Differs from the image defaults as the paper's 256px runs do (Song et al. 2021, App. D/H):
batch 64 for 2.4M iterations, 2000 noise scales, no dropout, Langevin snr 0.075.
"""

from configs.default_images import get_default_configs as get_image_defaults


def get_default_configs():
    config = get_image_defaults()
    training = config.training
    training.batch_size = 64
    training.n_iters = 2400001
    training.snapshot_freq_for_preemption = 5000

    config.sampling.snr = 0.075

    evaluate = config.eval
    evaluate.begin_ckpt = 24  # 1.2M .. 2.4M steps
    evaluate.end_ckpt = 48
    evaluate.batch_size = 512
    evaluate.enable_sampling = True

    data = config.data
    data.dataset = "image_folder"
    data.image_size = 256
    data.num_channels = 3

    model = config.model
    model.dropout = 0.0
    model.sigma_max = 378.0
    model.num_scales = 2000
    return config
