"""Throughput of the FID Inception-v3 feature network (images/s), printed as a markdown table.

    python bench/eval_throughput.py [--batch-sizes 8,32] [--repeats 3] [--image-size 32]

Synthetic weights (timing does not depend on their values); inputs are image_size^2 RGB images,
resized to 299x299 inside the network as for FID. The compile time is reported separately.
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

import inception  # noqa: E402


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()

    net = inception.from_state_dict(inception.random_state_dict(0), "random", published=False)
    print(
        f"FID Inception-v3 features ({args.image_size}x{args.image_size} inputs resized to "
        f"299), {machine()}; median of {args.repeats} timed calls after a warm-up call\n"
    )
    print("| batch | images/s | s/batch | first call (compile) s |")
    print("|---:|---:|---:|---:|")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        first, per_batch = time_batch(net, batch, args.image_size, args.repeats)
        print(f"| {batch} | {batch / per_batch:.1f} | {per_batch:.2f} | {first:.1f} |")


if __name__ == "__main__":
    main()
