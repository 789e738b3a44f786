"""XLA:CPU settings scorelab uses by default, each measured (bench/train_vs_torch.py,
bench/digits_train.py; figures in the README's "CPU speed" section).

- `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`: convolutions run on
  XLA:CPU's Eigen kernels instead of YNNPACK. With jaxlib 0.10.2 on 2 cores, a profile of the
  DDPM CIFAR-10 train step showed half of its YNNPACK convolutions (the 32x32 ones among them)
  running on one thread while the other idled; with Eigen the step takes 1.92 s instead of
  2.02 s, and the digits default's step, scanned over 10 steps, 104 ms instead of 133 ms.
  The values are the same convolutions (tests/test_conv.py compares 20 train steps).

`apply` appends each flag to XLA_FLAGS unless XLA_FLAGS already sets it, or
SCORELAB_XLA_DEFAULTS=off. XLA reads XLA_FLAGS when JAX starts its backend, so `apply` runs
before the first computation (main.py and the test session call it first). The flags only
concern the CPU backend; the versions are pinned in requirements.txt, since XLA stops a process
whose XLA_FLAGS names a flag it does not know.
"""

from __future__ import annotations

import os

ENV_VAR = "SCORELAB_XLA_DEFAULTS"
CPU_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": "-individual_convolution"}


def apply(environ=os.environ) -> list[str]:
    """Append the defaults missing from environ['XLA_FLAGS']; returns the flags added."""
    if environ.get(ENV_VAR, "").strip().lower() == "off":
        return []
    current = environ.get("XLA_FLAGS", "")
    added = [f"{name}={value}" for name, value in CPU_FLAGS.items() if name not in current]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
