"""CIFAR-10 32x32 defaults (tfds 'cifar10'): the image defaults, with the dataset spelled out.

Prepare the data once: tfds build cifar10 --file_format=array_record (see datasets.py).
"""

from configs.default_images import get_default_configs as get_image_defaults


def get_default_configs():
    config = get_image_defaults()
    data = config.data
    data.dataset = "cifar10"
    data.image_size = 32
    data.num_channels = 3
    return config
