"""Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5 in diffusers' layout, epsilon
prediction, 512x512) from a local checkpoint directory; nothing is downloaded.

    python main.py --config configs/sd/sd15.py --workdir runs/sd15 --mode sample \
        --config.pretrained.path=/path/to/stable-diffusion-v1-5 \
        --config.sampling.prompts='a photograph of an astronaut riding a horse;a red fox' \
        --config.sampling.negative_prompts='blurry' --config.sampling.guidance_scale=7.5 \
        --config.sampling.steps=25 --config.data.image_size=512

Expected: runs/sd15/samples/sd_0000.png, sd_0001.png (512x512 RGB, one per prompt, image i from
sampling.seed + i), each with sd_000i.json of its prompt, negative prompt, seed, guidance,
steps and method, and samples_0.npz of all of them; 25 DPM-Solver++ (2M) steps with guidance
are 50 UNet evaluations per image (minutes per image on a CPU, seconds on a GPU).
img2img: --config.sampling.task=img2img --config.sampling.input=DIR_OF_PNGS
--config.sampling.strength=0.6; inpainting: --config.sampling.task=inpaint (sampling.mask).
The checkpoint scheduler's own timesteps: --config.sampling.timesteps=diffusers (with
sampling.method 'ddim' and sampling.order=1, or 'dpm_solver++'); images much larger than 512:
--config.pretrained.vae_tile=64 (a tiled VAE, models/vae_tiling.py).
"""

from configs.default_sd import get_default_configs


def get_config():
    config = get_default_configs()
    config.pretrained.prediction_type = "epsilon"
    config.data.image_size = 512
    return config
