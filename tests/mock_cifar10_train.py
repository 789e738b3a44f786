"""Train a tiny DDPM on mocked CIFAR-10 (tfds.testing.mock_data: random images, no files, no
TensorFlow) for the image training tests.

    python tests/mock_cifar10_train.py WORKDIR [--config.FIELD=VALUE ...]
"""

import os
import sys
import tempfile

import tensorflow_datasets as tfds
from digits_tiny import get_config

import run_lib


def cifar10_config(workdir: str):
    config = get_config()
    config.training.n_iters = 2
    config.training.snapshot_freq = 2
    config.data.update(dataset="cifar10", num_channels=3, centered=False, random_flip=True,
                       uniform_dequantization=True, data_dir=os.path.join(workdir, "tfds"))
    config.model.update(name="ddpm", nf=8, ch_mult=(1, 2), attn_resolutions=(4,))
    return config


def main(workdir: str) -> None:
    os.makedirs(os.path.join(workdir, "tfds"), exist_ok=True)
    tempfile.tempdir = workdir  # tfds makes an empty temp dir for an unprepared builder
    with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
        run_lib.train(cifar10_config(workdir), workdir)


if __name__ == "__main__":
    main(sys.argv[1])
