"""Checks of the settings the training core reads, before anything is written or compiled."""

import math
import os
import tempfile
from collections.abc import Iterable

import jax
import ml_collections

from examples.training import distributed
from examples.training import parallel

ON_NONFINITE = ('stop', 'skip')
"""``--config.on_nonfinite``: stop the run, or skip the step (see :func:`examples.training.loop.fit`)."""


def _check_platform(platform: str) -> None:
  if not platform:
    return
  try:
    jax.devices(platform)
  except RuntimeError as error:
    raise ValueError(f'--config.platform={platform!r} has no devices here: '
                     f'{str(error).splitlines()[0]}') from error


def validate(config: ml_collections.ConfigDict, seeds: Iterable[int] = ()) -> None:
  """Checks every field :func:`examples.training.loop.fit` reads.

  Args:
    config: reads ``parallel``, ``platform``, ``batch_size``, ``seed``,
      ``learning_rate``, ``num_epochs``, ``log_every_steps``,
      ``checkpoint_every_steps``, ``on_nonfinite`` and ``max_nonfinite_steps``.
    seeds: further seeds to check, e.g. a sweep's.

  Raises:
    ValueError: naming the first bad flag and what it accepts.
  """
  parallel.check_mode(config.parallel)
  _check_platform(config.platform)
  for seed in (config.seed, *seeds):
    if not isinstance(seed, int) or seed < 0:
      raise ValueError(f'--config.seed={seed} must be a non-negative integer.')
  for name in ('num_epochs', 'log_every_steps', 'checkpoint_every_steps', 'max_nonfinite_steps'):
    if config[name] <= 0:
      raise ValueError(f'--config.{name}={config[name]} must be positive.')
  if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
    raise ValueError(f'--config.learning_rate={config.learning_rate} must be a finite positive '
                     'number.')
  if config.on_nonfinite not in ON_NONFINITE:
    raise ValueError(f'Unknown --config.on_nonfinite={config.on_nonfinite!r}; valid values are: '
                     f'{", ".join(ON_NONFINITE)}.')
  distributed.process_batch_size(config.batch_size,
                                 parallel.device_count(config.parallel, config.platform))


def prepare_workdir(workdir: str) -> None:
  """Creates ``workdir`` if needed and checks that files can be written in it.

  Call it after the config is validated: it is the first write of a run.

  Raises:
    ValueError: naming ``workdir`` if it is a file or cannot be written.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f'--workdir={workdir} is a file, not a directory.')
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as error:
    raise ValueError(f'--workdir={workdir} is not writable: {error.strerror}.') from error
