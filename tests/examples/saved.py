"""Reading what the training core saved, for tests of both examples."""

import contextlib

from examples.training import checkpointing


def final_state(workdir) -> tuple:
  """``(model, optimizer)`` arrays of the newest intact checkpoint in ``workdir``, as saved."""
  with contextlib.closing(checkpointing.Checkpointer(str(workdir), read_only=True)) as checkpointer:
    restored = checkpointer.restore_latest()
  return restored.model, restored.optimizer


def saved_steps(workdir) -> list[int]:
  """The checkpointed steps in ``workdir``, newest first."""
  with contextlib.closing(checkpointing.Checkpointer(str(workdir), read_only=True)) as checkpointer:
    return checkpointer.steps()
