"""scorelab command line: train, sample or evaluate a score model from a config file.

    python main.py --config configs/toy/vp_checkerboard.py --workdir runs/toy --mode train
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples, TensorBoard.")
flags.DEFINE_enum("mode", "train", ["train", "sample", "eval"], "What to run.")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: index of this process.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    import jax

    if FLAGS.coordinator_address or "JAX_COORDINATOR_ADDRESS" in os.environ:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                                   FLAGS.process_id)
    import run_lib
    from utils import ConfigError

    logging.set_verbosity(logging.WARNING)
    modes = {"train": run_lib.train, "sample": run_lib.sample, "eval": run_lib.evaluate}
    try:
        result = modes[FLAGS.mode](FLAGS.config, FLAGS.workdir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if FLAGS.mode == "eval":
        print(result)
    elif FLAGS.mode == "sample":
        print(f"wrote {result}")


if __name__ == "__main__":
    app.run(main)
