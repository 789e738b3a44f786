"""sub-VP SDE on the embedded checkerboard.

    python main.py --config configs/toy/subvp_checkerboard.py --workdir runs/toy_subvp

Expected: like configs/toy/vp_checkerboard.py (about 1-2 minutes on 2 CPU cores).
Ancestral sampling is not defined for sub-VP; use reverse_diffusion or euler_maruyama.
"""

from configs.default_toy import get_default_configs


def get_config():
    config = get_default_configs()
    config.training.sde = "subvpsde"
    return config
