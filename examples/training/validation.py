"""Checks of the settings the training core reads, before anything is written or compiled."""

import os
import tempfile

import jax
import ml_collections

from examples.training import defaults
from examples.training import fields
from examples.training import parallel


def _check_platform(platform: str) -> None:
  if not platform:
    return
  try:
    jax.devices(platform)
  except RuntimeError as error:
    raise ValueError(f'--config.platform={platform!r} has no devices here: '
                     f'{str(error).splitlines()[0]}') from error


def check_seed(seed, flag: str = '--config.seed') -> None:
  """Raises ``ValueError`` naming ``flag`` unless ``seed`` is a non-negative integer."""
  if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
    raise ValueError(f'{flag}={seed} must be a non-negative integer.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field :func:`examples.training.loop.fit` reads.

  Those are the fields of :func:`examples.training.defaults.get_config`; an
  example checks its own fields (dataset, model, ...) besides.

  Raises:
    ValueError: naming the first bad flag and what it accepts.
  """
  fields.check(config, defaults.FIELDS)
  parallel.check_mesh(config)
  _check_platform(config.platform)
  parallel.process_batch_size(config)


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
