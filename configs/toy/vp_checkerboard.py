"""VP SDE on the embedded checkerboard (the default main job; no download).

    python main.py --config configs/toy/vp_checkerboard.py --workdir runs/toy

Expected: about 2 minutes on 2 CPU cores; runs/toy/samples/samples_6000.png shows the
checkerboard; `--mode eval` gives an energy distance to fresh data near 0.01.
"""

from configs.default_toy import get_default_configs


def get_config():
    return get_default_configs()
