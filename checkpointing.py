"""Checkpoints in WORKDIR/checkpoints through an orbax CheckpointManager.

Orbax writes each step into a temporary directory and renames it when complete, so a run that
is killed mid-save leaves the previous checkpoints intact and no half-written step behind.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from utils import ConfigError


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def get_manager(workdir: str, max_to_keep: int = 3, keep_period: int | None = None,
                read_only: bool = False) -> ocp.CheckpointManager:
    """Step-numbered manager: keeps the last `max_to_keep` steps plus every `keep_period`-th."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        keep_period=keep_period,
        create=not read_only,
        read_only=read_only,
        enable_async_checkpointing=not read_only,
        cleanup_tmp_directories=not read_only,
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(manager: ocp.CheckpointManager, step: int, state) -> None:
    """Start an (asynchronous) save of `state` at `step`."""
    manager.save(int(step), args=ocp.args.StandardSave(state))


def restore(manager: ocp.CheckpointManager, abstract_state, step: int | None = None):
    """Restore `step` (latest when None) into the structure/shardings of `abstract_state`.

    Returns:
      (state, step), or (None, None) when the directory holds no checkpoint.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        return None, None
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    state = manager.restore(int(step), args=ocp.args.StandardRestore(target))
    return state, int(step)


def require_checkpoint(workdir: str) -> int:
    """The latest checkpointed step of `workdir`, or a ConfigError naming the path."""
    path = checkpoint_dir(workdir)
    if not os.path.isdir(path):
        raise ConfigError(f"--workdir={workdir}: no checkpoints at {path}; train first "
                          "(--mode train)")
    steps = ocp.utils.checkpoint_steps(path)
    if not steps:
        raise ConfigError(f"--workdir={workdir}: {path} holds no finished checkpoint; "
                          "train first (--mode train)")
    return max(steps)


def available_steps(workdir: str) -> list[int]:
    """Steps of the finished checkpoints in `workdir` (empty if there are none)."""
    path = checkpoint_dir(workdir)
    return sorted(ocp.utils.checkpoint_steps(path)) if os.path.isdir(path) else []
