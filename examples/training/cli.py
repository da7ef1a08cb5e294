"""The command line the examples share: ``--config`` and ``--workdir``, multi-host start, clean errors.

An example's ``main.py`` calls :func:`define_flags` at import and
:func:`run` under ``if __name__ == '__main__'``.
"""

import sys
from collections.abc import Callable

import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from examples.training import distributed

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines ``--workdir`` and ``--config`` (a ``configs/*.py`` file; fields as ``--config.x``)."""
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and sweep results.')
  config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.', lock_config=True)
  flags.mark_flags_as_required(['config', 'workdir'])


def run(main: Callable[[ml_collections.ConfigDict, str], None],
        user_errors: tuple[type[Exception], ...] = ()) -> None:
  """Parses the flags and calls ``main(config, workdir)``.

  Before ``main``, it starts ``jax.distributed`` when ``config.coordinator_address``
  is set. ``ValueError`` (bad flag values) and ``user_errors`` (e.g. a dataset
  that is not downloaded) end the program with their message alone, without a
  traceback. Logging is at WARNING unless ``--verbosity`` is given, because
  orbax logs every checkpoint at INFO.
  """

  def absl_main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if not FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    config = FLAGS.config
    try:
      distributed.initialize(config.coordinator_address, config.num_processes, config.process_id)
      main(config, FLAGS.workdir)
    except (ValueError, *user_errors) as error:
      sys.exit(f'error: {error}')

  app.run(absl_main)
