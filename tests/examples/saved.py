"""Reading what the training core saved (checkpoints, histories), for tests of both examples."""

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


def without_timing(history: list[dict]) -> list[dict]:
  """The records of a history without their throughput, which differs from run to run."""
  return [{k: v for k, v in record.items() if k != 'train_examples_per_second'}
          for record in history]
