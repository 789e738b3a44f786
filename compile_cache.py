"""JAX's persistent compilation cache for scorelab: one directory shared by every run and test.

Directory: `--compile_cache_dir`, else $SCORELAB_COMPILE_CACHE, else ~/.cache/scorelab/jax;
the value 'off' disables the cache. Call `setup` once, before the first compilation.
"""

from __future__ import annotations

import os

from absl import logging

from utils import ConfigError

ENV_VAR = "SCORELAB_COMPILE_CACHE"
DEFAULT_DIR = os.path.join("~", ".cache", "scorelab", "jax")
OFF = "off"


def resolve(value: str | None = None) -> str | None:
    """The cache directory named by `value`, else by $SCORELAB_COMPILE_CACHE, else the default.

    Args:
      value: a directory, 'off', or None / '' for "not given".

    Returns:
      an absolute path, or None when the setting is 'off'.
    """
    value = value or os.environ.get(ENV_VAR) or DEFAULT_DIR
    if value.strip().lower() == OFF:
        return None
    return os.path.abspath(os.path.expanduser(value))


def setup(value: str | None = None) -> str | None:
    """Point JAX's persistent cache at `resolve(value)` (every program cached, however small
    or quick to compile), or switch JAX's cache off for 'off'.

    Args:
      value: as for `resolve`; an explicit directory that cannot be created is a ConfigError,
        the default one only a warning (the run goes on without a cache).

    Returns:
      the directory in use, or None.
    """
    import jax

    directory = resolve(value)
    if directory is not None:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            explicit = bool(value or os.environ.get(ENV_VAR))
            if explicit:
                raise ConfigError(f"compile_cache_dir: cannot create {directory} ({e.strerror}); "
                                  f"give a writable directory or '{OFF}'") from None
            logging.warning("compilation cache off: cannot create %s (%s)", directory, e)
            directory = None
    if directory is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return directory
