"""sub-VP SDE on the embedded 4-component Gaussian mixture, whose exact score and density are
known (analytic.toy_gmm), so a run can be judged against truth.

    python main.py --config configs/toy/subvp_gmm.py --workdir runs/gmm_subvp
    python main.py --config configs/toy/subvp_gmm.py --workdir runs/gmm_subvp --mode eval

Expected: eval reports nll_nats within about 0.1 nats of true_nll_nats (2.19) and an energy
distance to fresh data below 0.01.
"""

from configs.toy.subvp_checkerboard import get_config as base_config


def get_config():
    config = base_config()
    config.data.dataset = "gmm"
    return config
