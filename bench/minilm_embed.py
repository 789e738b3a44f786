"""Speed of caching frozen MiniLM (all-MiniLM-L6-v2) caption embeddings, as a markdown table.

Embeds N captions from the shapes grammar ("a small red circle on the left", ...) with
`models.minilm.embed_captions` and reports tokenizing, compiling (first batch) and steady-state
embedding separately, with the size of the cached [N, L, 384] float32 array.

    python bench/minilm_embed.py [--num-captions 1000] [--max-lengths 16,32]
        [--batch-sizes 64,256]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import minilm  # noqa: E402

COLOURS = ["red", "green", "blue", "yellow", "magenta", "cyan", "white"]
SHAPES = ["circle", "square", "triangle"]
SIZES = ["small ", "large ", ""]
PLACES = ["on the left", "on the right", "at the top", "at the bottom", "in the centre", ""]


def captions(n: int) -> list[str]:
    """`n` captions cycling over the grammar's (size, colour, shape, position) combinations."""
    grammar = itertools.cycle(itertools.product(SIZES, COLOURS, SHAPES, PLACES))
    return [f"a {s}{c} {k} {p}".strip() for s, c, k, p in itertools.islice(grammar, n)]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, jax {jax.__version__} on {jax.devices()[0].platform}"


def measure(encoder, texts, max_length: int, batch_size: int) -> dict:
    """Seconds to tokenize, to compile + run the first batch, and to embed all `texts`."""
    module, params, tokenize = encoder
    t0 = time.perf_counter()
    tokenize(texts, max_length)
    t1 = time.perf_counter()
    minilm.embed_captions(module, params, tokenize, texts[:batch_size], max_length, batch_size)
    t2 = time.perf_counter()
    hidden, _ = minilm.embed_captions(module, params, tokenize, texts, max_length, batch_size)
    t3 = time.perf_counter()
    return dict(tokenize=t1 - t0, first=t2 - t1, embed=t3 - t2, mb=hidden.nbytes / 2**20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-captions", type=int, default=1000)
    parser.add_argument("--max-lengths", default="16,32")
    parser.add_argument("--batch-sizes", default="64,256")
    args = parser.parse_args()

    t0 = time.perf_counter()
    encoder = minilm.load_minilm()
    load_s = time.perf_counter() - t0
    texts = captions(args.num_captions)
    print(f"machine: {machine()}; load_minilm: {load_s:.1f} s; {len(texts)} captions\n")
    print(
        "| max_length | batch | tokenize (s) | first batch incl. compile (s) | "
        "embed all (s) | captions/s | cache (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for max_length in map(int, args.max_lengths.split(",")):
        for batch_size in map(int, args.batch_sizes.split(",")):
            r = measure(encoder, texts, max_length, batch_size)
            print(
                f"| {max_length} | {batch_size} | {r['tokenize']:.3f} | {r['first']:.1f} | "
                f"{r['embed']:.2f} | {len(texts) / r['embed']:.0f} | {r['mb']:.1f} |"
            )


if __name__ == "__main__":
    main()
