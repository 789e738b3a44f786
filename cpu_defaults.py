"""CPU settings scorelab uses by default, each measured (bench/train_vs_torch.py,
bench/digits_train.py; figures in the README's "CPU speed" section).

- `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` (XLA_FLAGS): convolutions
  run on XLA:CPU's Eigen kernels instead of YNNPACK. With jaxlib 0.10.2 on 2 cores, a profile
  of the DDPM CIFAR-10 train step showed half of its YNNPACK convolutions (the 32x32 ones among
  them) running on one thread while the other idled; with Eigen the step takes 1.92 s instead
  of 2.02 s, and the digits default's step, scanned over 10 steps, 104 ms instead of 133 ms.
- Computations run on the calling thread (`jax_cpu_enable_async_dispatch=False`), and glibc's
  malloc keeps large blocks in its heap instead of mapping fresh pages for each
  (`mallopt(M_MMAP_MAX, 0)`, and freed memory returns to the system only past 2 GiB at the
  heap's top). XLA:CPU allocates one temporary block per call of a compiled program (about
  680 MB for the DDPM CIFAR-10 step). From JAX's dispatch thread that block was always a new
  mapping, and its pages were faulted in and zeroed by the kernel on every call: 173k page
  faults and 0.32 s of system time per step. On the calling thread, with these malloc settings,
  it is reused: no page faults, and the step takes 1.74 s instead of 1.95 s. JAX still
  dispatches multi-device computations asynchronously; single-device calls return when done,
  which costs nothing here since every train loop reads its losses anyway.

The values are the same computations (tests/test_conv.py compares 20 train steps with all
defaults on against a process with them off). `apply` sets them unless XLA_FLAGS already names
the flag, or SCORELAB_XLA_DEFAULTS=off. XLA reads XLA_FLAGS and JAX its dispatch mode when JAX
starts its backend, so `apply` runs before the first computation (main.py, the benchmarks and
the test session call it first). The flags only concern the CPU backend; the versions are
pinned in requirements.txt, since XLA stops a process whose XLA_FLAGS names a flag it does not
know. The malloc settings need glibc (Linux) and are skipped elsewhere.
"""

from __future__ import annotations

import ctypes
import os

ENV_VAR = "SCORELAB_XLA_DEFAULTS"
CPU_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": "-individual_convolution"}
# glibc mallopt parameters (malloc.h) and the values set.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes (an int): 2 GiB
ASYNC_DISPATCH = "jax_cpu_enable_async_dispatch=False"
MALLOC = "malloc: M_MMAP_MAX=0, M_TRIM_THRESHOLD=2GiB"


def apply(environ=os.environ, process: bool | None = None) -> list[str]:
    """Set the defaults missing from environ['XLA_FLAGS'] and, for this process (the default
    when environ is os.environ), JAX's CPU dispatch mode and the malloc settings. Returns what
    it set."""
    if environ.get(ENV_VAR, "").strip().lower() == "off":
        return []
    current = environ.get("XLA_FLAGS", "")
    added = [f"{name}={value}" for name, value in CPU_FLAGS.items() if name not in current]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    if process if process is not None else environ is os.environ:
        import jax  # importing JAX does not start its backend

        jax.config.update("jax_cpu_enable_async_dispatch", False)
        added.append(ASYNC_DISPATCH)
        if _malloc_keeps_large_blocks():
            added.append(MALLOC)
    return added


def _malloc_keeps_large_blocks() -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
