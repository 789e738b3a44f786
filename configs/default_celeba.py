"""CelebA 64x64 defaults (tfds 'celeb_a', centre-cropped to 140 and resized, as in NCSNv2).

Differs from the image defaults in resolution, VE sigma_max = 90 (roughly the largest distance
between two training images) and Langevin snr 0.17 (Song et al. 2021, App. D/G).
"""

from configs.default_images import get_default_configs as get_image_defaults


def get_default_configs():
    config = get_image_defaults()
    config.sampling.snr = 0.17

    evaluate = config.eval
    evaluate.begin_ckpt = 1
    evaluate.end_ckpt = 26
    evaluate.enable_sampling = True

    data = config.data
    data.dataset = "celeb_a"
    data.image_size = 64
    data.num_channels = 3

    config.model.sigma_max = 90.0
    return config
