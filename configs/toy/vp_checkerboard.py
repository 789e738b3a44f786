"""VP SDE on the embedded checkerboard: the default main job (no download).

    python main.py --config configs/toy/vp_checkerboard.py --workdir runs/toy

Expected: about 1-2 minutes on 2 CPU cores; runs/toy/samples/samples_4000.png shows the eight
squares (edges somewhat soft after 4000 steps); `--mode eval` gives an energy distance to fresh
data of about 0.004 and a held-out NLL of about 4.0 nats (the data's entropy is log 32 = 3.47).
Other samplers: --config.sampling.method=ode, or --config.sampling.predictor=euler_maruyama
--config.sampling.corrector=none, or --config.sampling.predictor=ancestral_sampling.
"""

from configs.default_toy import get_default_configs


def get_config():
    return get_default_configs()
