"""A class-conditional DDPM++ (continuous VP SDE) on the embedded 16x16 digits: a learned
class embedding added to the time embedding, labels dropped to the null class 10% of the time
so one network gives both halves of classifier-free guidance (Ho & Salimans 2021).

    python main.py --config configs/digits/vp_ddpmpp_class.py --workdir runs/digits_class
    python main.py --config configs/digits/vp_ddpmpp_class.py --workdir runs/digits_class \
        --mode sample --config.sampling.class_label=3 --config.sampling.guidance_scale=3
    python main.py --config configs/digits/vp_ddpmpp_class.py --workdir runs/digits_class \
        --mode eval --config.sampling.guidance_scale=3

Expected: the network and schedule of configs/digits/vp_ddpmpp.py (3000 steps, about 11 min
on 2 CPU cores) plus an 11 x 48 class table; training snapshots show each class in turn
(samples_<step>.png, the class under each image); --mode eval reports the offline digits
classifier's accuracy on the requested classes (class_accuracy, per class) and fd_digits
(after --mode fid_stats). Measured (3000 steps, 21 min on 2 shared cores): the offline
classifier reads the requested digit in 96% of 500 DPM-Solver++(2M) 10-step samples at w = 1
(fd_digits 0.066) and 100% at w = 3 (fd_digits 1.03); README, "Sampling a class".
"""

from configs.digits import vp_ddpmpp


def get_config():
    config = vp_ddpmpp.get_config()
    config.model.num_classes = 10
    config.training.cond_drop_prob = 0.1
    config.sampling.task = "class"
    config.sampling.class_label = -1  # snapshots and --mode sample: each class in turn
    config.sampling.guidance_scale = 1.0
    config.eval.num_samples = 1000
    config.eval.batch_size = 250
    return config
