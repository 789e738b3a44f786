"""Evaluation throughput (images/s), printed as markdown tables:

1. the feature networks alone: the FID Inception-v3 (synthetic weights; timing does not depend
   on their values; image_size^2 RGB inputs resized to 299x299 inside the network as for FID)
   and the offline digits classifier;
2. the full sample -> metric pipeline of `--mode eval` for a config (default: the embedded
   digits default): sampling with the configured sampler, features, then Frechet distance, KID
   and the Inception-style score, stage by stage and end to end (eval_lib.sample_metrics).

    python bench/eval_throughput.py [--batch-sizes 8,32] [--repeats 3] [--image-size 32]
        [--config configs/digits/vp_ddpmpp.py] [--workdir RUN] [--num-samples 256]
        [--skip-inception] [--skip-pipeline]

With --workdir the pipeline uses that run's latest EMA checkpoint, else freshly initialised
parameters (the sampler's cost does not depend on their values). Compile times are reported
separately from the steady-state rates.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import datasets  # noqa: E402
import eval_lib  # noqa: E402
import evaluation  # noqa: E402
import feature_net  # noqa: E402
import inception  # noqa: E402
import run_lib  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = jax.devices()[0]
    return (
        f"{cpu}, {cores} cores usable; jax {jax.__version__} on {jax.default_backend()} "
        f"({device.device_kind})"
    )


def time_batch(net, batch: int, size: int, repeats: int) -> tuple[float, float]:
    """(compile + first call seconds, median seconds per batch after it)."""
    images = jax.device_put(
        np.random.default_rng(0).uniform(size=(batch, size, size, 3)).astype(np.float32)
    )
    start = time.perf_counter()
    jax.block_until_ready(net.apply(net.variables, images))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(net.apply(net.variables, images))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def pipeline(config_path: str, workdir: str | None, num: int, repeats: int) -> None:
    """Stage-by-stage and end-to-end rates of the sample -> metric pipeline."""
    import importlib.util
    import tempfile

    spec = importlib.util.spec_from_file_location("bench_config", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    exp = run_lib.build(config)
    bs = int(config.eval.batch_size)
    config = run_lib.override(config, {"eval.num_samples": num})
    if workdir:
        params, step = run_lib.load_ema(config, exp, workdir)
        origin = f"EMA checkpoint {step} of {workdir}"
    else:
        params = run_lib.init_params(config, exp)
        origin = "freshly initialised parameters"
    net = eval_lib.feature_network(config)
    names = evaluation.metric_names(net)
    s = config.sampling
    print(f"\n### Sample -> metric pipeline: {config_path} ({origin})\n")
    print(f"{num} samples, eval.batch_size {bs}, sampler {s.method}/{s.predictor}/{s.corrector}, "
          f"{config.model.num_scales} steps; feature network {net.identity} "
          f"({', '.join(names.values())}); median of {repeats} timed calls\n")

    tmp = tempfile.mkdtemp(prefix="bench_eval_")
    ref_config = run_lib.override(config, {"eval.stats_path": os.path.join(tmp, "ref.npz")})
    _, t_stats = timed(eval_lib.fid_stats, ref_config, tmp)
    ref = eval_lib.reference_stats(ref_config, tmp, net)

    gen = run_lib.get_generator(config, exp, bs)
    key = jax.random.PRNGKey(0)
    (x, nfe), t_first = timed(gen, key, params)
    t_gen = statistics.median(timed(gen, jax.random.fold_in(key, i), params)[1]
                              for i in range(repeats))
    inverse = datasets.get_data_inverse_scaler(config.data.centered)
    images = eval_lib._net_images(net, inverse(np.asarray(x)))
    (f, lg), f_first = timed(evaluation.network_features, net, images)
    t_feat = statistics.median(timed(evaluation.network_features, net, images)[1]
                               for _ in range(repeats))
    rounds = -(-num // bs)  # the metrics see `num` rows, as in --mode eval
    feats, logits = np.tile(f, (rounds, 1))[:num], np.tile(lg, (rounds, 1))[:num]

    def metrics():
        st = evaluation.FeatureStats().update(feats)
        evaluation.frechet_distance(st.mean, st.cov, ref[0], ref[1])
        evaluation.kid(feats, ref[2], min(int(config.eval.kid_subset_size), num), 100)
        evaluation.inception_score(logits, 10)

    _, t_metrics = timed(metrics)
    work = tempfile.mkdtemp(prefix="bench_eval_run_")
    _, t_total = timed(eval_lib.sample_metrics, config, exp, params, net, ref, 0, work)

    print("| stage | images/s | s per batch | first call s (incl. compile) |")
    print("|---|---:|---:|---:|")
    print(f"| sampling ({nfe} NFE per image) | {bs / t_gen:.1f} | {t_gen:.2f} | {t_first:.1f} |")
    print(f"| features ({net.identity}) | {bs / t_feat:.1f} | {t_feat:.3f} | {f_first:.1f} |")
    print(f"| Frechet distance + KID + IS on {num} | {num / t_metrics:.0f} | | |")
    steady = num / (t_gen * num / bs + t_feat * num / bs + t_metrics)
    print(f"| pipeline, steady state (sum of the above) | {steady:.1f} | | |")
    print(f"| eval_lib.sample_metrics end to end, compile included | {num / t_total:.1f} | "
          f"{t_total:.1f} s total | |")
    print(f"\nReference statistics of the training split (--mode fid_stats): {t_stats:.1f} s.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--config", default="configs/digits/vp_ddpmpp.py")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--skip-inception", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()

    print(f"{machine()}\n")
    if not args.skip_inception:
        net = inception.from_state_dict(inception.random_state_dict(0), "random", published=False)
        print(f"### FID Inception-v3 features ({args.image_size}x{args.image_size} inputs resized "
              f"to 299); median of {args.repeats} timed calls after a warm-up call\n")
        print("| batch | images/s | s/batch | first call s (incl. compile) |")
        print("|---:|---:|---:|---:|")
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            first, per_batch = time_batch(net, batch, args.image_size, args.repeats)
            print(f"| {batch} | {batch / per_batch:.1f} | {per_batch:.2f} | {first:.1f} |")
    digits = evaluation.load_digits_classifier()
    print(f"\n### Digits classifier features ({digits.identity}, 16x16x1 inputs)\n")
    print("| batch | images/s | s/batch | first call s (incl. compile) |")
    print("|---:|---:|---:|---:|")
    for batch in (64, 297):
        images = np.random.default_rng(0).uniform(size=(batch, 16, 16, 1)).astype(np.float32)
        _, first = timed(feature_net.features, digits, images, batch)
        per = statistics.median(timed(feature_net.features, digits, images, batch)[1]
                                for _ in range(args.repeats))
        print(f"| {batch} | {batch / per:.0f} | {per:.4f} | {first:.1f} |")
    if not args.skip_pipeline:
        pipeline(args.config, args.workdir, args.num_samples, args.repeats)


if __name__ == "__main__":
    main()
