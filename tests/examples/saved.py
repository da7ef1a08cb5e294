"""What the examples' tests share: reading what the training core saved (checkpoints, histories,
event files), and an example whose training batches a test changes."""

import contextlib
import dataclasses
import glob
import struct

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


def tensorboard_events(path) -> list:
  """The events of one event file: TFRecord framing (length, its CRC, data, its CRC)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel

  events = []
  with open(path, 'rb') as f:
    while header := f.read(12):
      (length,) = struct.unpack('<Q', header[:8])
      events.append(event_pb2.Event.FromString(f.read(length)))
      f.read(4)
  return events


def tensorboard_scalars(workdir) -> dict[str, dict[int, float]]:
  """Tag -> step -> value of the one event file in ``workdir``."""
  (events_file,) = glob.glob(f'{workdir}/events.out.tfevents.*')
  scalars = {}
  for event in tensorboard_events(events_file):
    for value in event.summary.value:
      if value.HasField('simple_value'):
        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


class _ChangedBatches:
  """An example's data whose sources' training batches pass through ``change_batches``."""

  def __init__(self, data, change_batches):
    self._data, self._change_batches = data, change_batches

  def __getattr__(self, name):
    return getattr(self._data, name)

  def make_source(self, config):
    source = self._data.make_source(config)
    real_batches = source.train_batches
    source.train_batches = lambda epoch, start_step=0: self._change_batches(
        source, epoch, start_step, real_batches(epoch, start_step))
    return source


def example_with_batches(example, change_batches):
  """``example`` whose training batches pass through ``change_batches``.

  ``change_batches(source, epoch, start_step, batches)`` yields the batches to train on.
  """
  return dataclasses.replace(
      example, load_data=lambda config: _ChangedBatches(example.load_data(config), change_batches))


class Interrupted(Exception):
  """Raised by :func:`interrupted_at` in place of the batch of a step: a run killed mid-way."""


def interrupted_at(step):
  """A ``change_batches`` for :func:`example_with_batches` that raises at global ``step`` (0-based)."""

  def change_batches(source, epoch, start_step, batches):
    for index, batch in enumerate(batches, start_step):
      if epoch * source.steps_per_epoch + index == step:
        raise Interrupted
      yield batch

  return change_batches


@contextlib.contextmanager
def persistent_compilation_cache(directory):
  """Compiled programs persist in ``directory``: runs that repeat a configuration load them."""
  import jax  # pylint: disable=import-outside-toplevel
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=import-outside-toplevel

  previous = jax.config.jax_compilation_cache_dir
  jax.config.update('jax_compilation_cache_dir', str(directory))
  compilation_cache.reset_cache()
  try:
    yield
  finally:
    jax.config.update('jax_compilation_cache_dir', previous)
    compilation_cache.reset_cache()
