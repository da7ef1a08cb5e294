"""Orbax checkpoints of the train state, the running metric sums and the history."""

import os
from typing import Any

import orbax.checkpoint as ocp


class Checkpointer:
  """Saves every ``every_steps`` steps into ``<workdir>/checkpoints`` and restores the latest.

  The state is saved as host NumPy arrays (one copy, whatever the parallel
  mode), so a run can resume under a different ``--config.parallel``.
  """

  def __init__(self, workdir: str, every_steps: int, max_to_keep: int = 2):
    if every_steps <= 0:
      raise ValueError(f'--config.checkpoint_every_steps={every_steps} must be positive.')
    self._every_steps = every_steps
    self._manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, 'checkpoints')),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def due(self, step: int) -> bool:
    """Whether the save interval has come round at ``step``."""
    return step % self._every_steps == 0

  def save(self, step: int, arrays: Any, meta: dict) -> None:
    """Saves ``arrays`` (a pytree of NumPy arrays) and JSON ``meta`` at ``step``."""
    self._manager.save(
        step,
        args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)),
        force=True,
    )

  def restore(self, step: int, arrays_like: Any = None) -> tuple[Any, dict]:
    """Restores ``(arrays, meta)`` saved at ``step``.

    Args:
      step: a saved step, e.g. :meth:`latest_step`.
      arrays_like: the expected pytree of arrays; ``None`` restores what was saved.
    """
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(
            arrays=ocp.args.StandardRestore(arrays_like), meta=ocp.args.JsonRestore()
        ),
    )
    return restored.arrays, restored.meta

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
