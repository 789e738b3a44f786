"""Stable Diffusion 2.1 (stabilityai/stable-diffusion-2-1 in diffusers' layout: OpenCLIP text
encoder, v-prediction, 768x768) from a local checkpoint directory; nothing is downloaded.

    python main.py --config configs/sd/sd21.py --workdir runs/sd21 --mode sample \
        --config.pretrained.path=/path/to/stable-diffusion-2-1 \
        --config.sampling.prompts='a photograph of an astronaut riding a horse' \
        --config.sampling.guidance_scale=7.5 --config.sampling.steps=25

Expected: runs/sd21/samples/sd_0000.png (768x768 RGB) with sd_0000.json of its settings and
samples_0.npz; the UNet's output is read as v = alpha eps - sigma x0 (Salimans & Ho 2022). For
the 512x512 epsilon model (stable-diffusion-2-1-base) use configs/sd/sd15.py with its path and
--config.pretrained.prediction_type='' (the checkpoint's scheduler decides).
"""

from configs.default_sd import get_default_configs


def get_config():
    config = get_default_configs()
    config.pretrained.prediction_type = "v_prediction"
    config.data.image_size = 768
    return config
