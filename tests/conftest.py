"""pytest session setup: one JAX persistent compilation cache (compile_cache.py) shared by the
in-process tests and, through $SCORELAB_COMPILE_CACHE, by every subprocess they start.

The directory is $SCORELAB_COMPILE_CACHE when set (CI points it at its own temporary folder),
else a fresh temporary folder for this session.
"""

import os
import tempfile

import compile_cache
import cpu_defaults


def pytest_configure(config):
    del config
    cpu_defaults.apply()  # the CPU defaults of main.py, here and in subprocesses
    if not os.environ.get(compile_cache.ENV_VAR):
        os.environ[compile_cache.ENV_VAR] = tempfile.mkdtemp(prefix="scorelab_jax_cache_")
    compile_cache.setup()
