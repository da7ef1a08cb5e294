"""Checks of the settings the training core reads, before anything is written or compiled."""

import os
import tempfile

import jax
import ml_collections

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
  parallel.check_mode(config.parallel)
  parallel.check_mesh(config)
  _check_platform(config.platform)
  check_seed(config.seed)
  for name in ('num_epochs', 'log_every_steps', 'checkpoint_every_steps', 'max_nonfinite_steps'):
    if config[name] <= 0:
      raise ValueError(f'--config.{name}={config[name]} must be positive.')
  for name in ('resume', 'progress_bar', 'log_gradient_statistics'):
    if not isinstance(config[name], bool):
      # A ValueError, which cli.run reports as a bad flag.
      raise ValueError(f'--config.{name}={config[name]!r} must be True or False.')  # noqa: TRY004
  if config.on_nonfinite not in ON_NONFINITE:
    raise ValueError(f'Unknown --config.on_nonfinite={config.on_nonfinite!r}; valid values are: '
                     f'{", ".join(ON_NONFINITE)}.')
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
