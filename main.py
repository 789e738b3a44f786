"""scorelab command line: train, sample, evaluate or ablate a score model from a config file.

    python main.py --config configs/toy/vp_checkerboard.py --workdir runs/toy --mode train

Multi-host: start one process per host with the same flags plus --coordinator_address=HOST:PORT
(process 0's), --num_processes and --process_id, or the environment variables
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (a SLURM / Open MPI launch needs only
the address). All processes share --workdir.

Compiled programs are kept in JAX's persistent cache (~/.cache/scorelab/jax), so a second run
of the same config starts at once: --compile_cache_dir=DIR or SCORELAB_COMPILE_CACHE=DIR moves
it, the value 'off' disables it.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples, TensorBoard.")
flags.DEFINE_enum("mode", "train", ["train", "sample", "eval", "fid_stats", "ablate"],
                  "train | sample | eval (checkpoint sweep / toy metrics) | fid_stats (reference "
                  "statistics of the dataset) | ablate (the SDE paper's sampler table)")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: index of this process.")
flags.DEFINE_string("compile_cache_dir", None, "JAX persistent compilation cache directory, or "
                    "'off' (default: $SCORELAB_COMPILE_CACHE, else ~/.cache/scorelab/jax).")
flags.mark_flags_as_required(["config", "workdir"])


def _flag_or_env(value, name: str):
    if value is not None or name not in os.environ:
        return value
    try:
        return int(os.environ[name])
    except ValueError:
        sys.exit(f"error: {name}={os.environ[name]!r} is not an integer")


def init_distributed() -> None:
    """jax.distributed.initialize when a coordinator is given (flags or environment)."""
    import jax

    address = FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not address:
        return
    # Cross-process collectives of the CPU backend (no effect on GPU / TPU computations).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(address,
                                   _flag_or_env(FLAGS.num_processes, "JAX_NUM_PROCESSES"),
                                   _flag_or_env(FLAGS.process_id, "JAX_PROCESS_ID"))
    except (ValueError, TypeError, RuntimeError) as e:  # bad values; coordinator unreachable
        first_line = (str(e).strip() or type(e).__name__).splitlines()[0]
        hint = ("" if isinstance(e, RuntimeError) else " (set --num_processes and --process_id,"
                " or JAX_NUM_PROCESSES and JAX_PROCESS_ID)")
        sys.exit(f"error: jax.distributed with coordinator {address}: {first_line}{hint}")


def main(argv):
    del argv
    import cpu_defaults

    cpu_defaults.apply()  # XLA_FLAGS, dispatch mode, malloc: before JAX starts its backend
    import compile_cache
    from utils import ConfigError

    try:
        compile_cache.setup(FLAGS.compile_cache_dir)  # before the first compilation
    except ConfigError as e:
        sys.exit(f"error: {e}")
    init_distributed()
    import eval_lib
    import run_lib

    logging.set_verbosity(logging.ERROR)
    modes = {"train": run_lib.train, "sample": run_lib.sample, "eval": eval_lib.evaluate,
             "fid_stats": eval_lib.fid_stats, "ablate": eval_lib.ablate}
    try:
        result = modes[FLAGS.mode](FLAGS.config, FLAGS.workdir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if FLAGS.mode == "eval":
        print(eval_lib.results_table(result))
    elif FLAGS.mode in ("sample", "fid_stats"):
        print(f"wrote {result}")


if __name__ == "__main__":
    app.run(main)
