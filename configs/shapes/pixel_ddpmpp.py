"""An unconditional DDPM++ (continuous VP SDE) on the embedded shapes drawn at 16x16 RGB: the
digits network with three input channels, the RGB model that colourisation
(`sampling.task=colorize`) and the other controllable tasks run on.

    python main.py --config configs/shapes/pixel_ddpmpp.py --workdir runs/shapes_pixel
    python main.py --config configs/shapes/pixel_ddpmpp.py --workdir runs/shapes_pixel \
        --mode eval --config.sampling.task=colorize

Expected: coloured discs, squares and triangles on black in runs/shapes_pixel/samples/ after
3000 steps of 64 (about 11 min on 2 CPU cores, as configs/digits/vp_ddpmpp.py); colourisation
keeps each test image's grey exactly and brings back its colours (README, "Controllable
generation"). No Fréchet distance: the offline shapes classifier reads 32x32 images.
"""

from configs.digits import vp_ddpmpp


def get_config():
    config = vp_ddpmpp.get_config()
    config.data.dataset = "shapes"
    config.data.num_channels = 3
    config.data.image_size = 16
    config.data.random_flip = False
    config.eval.enable_bpd = False
    config.eval.enable_sampling = False
    config.eval.num_samples = 500
    config.eval.batch_size = 250
    return config
