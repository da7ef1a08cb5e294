"""The command line the examples share: ``--config`` and ``--workdir``, multi-host start, clean errors.

An example's ``main.py`` calls :func:`define_flags` at import and
:func:`run` under ``if __name__ == '__main__'``.
"""

import re
import sys
from collections.abc import Callable

import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from examples.training import datasets
from examples.training import distributed
from examples.training import errors

FLAGS = flags.FLAGS
_CONFIG_PREFIX = '--config.'


def define_flags() -> None:
  """Defines ``--workdir`` and ``--config`` (a ``configs/*.py`` file; fields as ``--config.x``)."""
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and sweep results.')
  config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.', lock_config=True)
  flags.mark_flags_as_required(['config', 'workdir'])


def _one_line(text: str) -> str:
  return ' '.join(text.replace('\\n', ' ').split())


def _unknown_field_message(error: LookupError | AttributeError, argv: list[str]) -> str:
  """Names the ``--config.<field>`` flag that ml_collections could not find in the config."""
  text = _one_line(str(error)).replace("\\'", "'")
  missing = re.search(r"'([^' ]+)'", text)
  suggestion = re.search(r'Did you mean "([^"]+)"', text)
  field = missing.group(1) if missing else ''
  overrides = [arg.split('=')[0] for arg in argv if arg.startswith(_CONFIG_PREFIX)]
  flag = next((o for o in overrides if field in o[len(_CONFIG_PREFIX):].split('.')), '--config')
  hint = f'; did you mean {suggestion.group(1)!r}?' if suggestion else '.'
  return f'{flag}: the config has no field {field!r}{hint}'


def _parse_flags(argv: list[str]) -> list[str]:
  """Parses ``argv``; a bad flag ends the program with one line that names it."""
  try:
    return FLAGS(argv)
  except flags.Error as error:
    sys.exit(f'error: {_one_line(str(error))}')
  except (AttributeError, LookupError) as error:  # An unknown --config.<field>.
    sys.exit(f'error: {_unknown_field_message(error, argv)}')
  except SyntaxError as error:  # In the --config file.
    sys.exit(f'error: --config: {error.msg} in {error.filename}, line {error.lineno}')


def _load_config() -> ml_collections.ConfigDict:
  """``FLAGS.config``; a config file that does not load ends the program with one line."""
  config = FLAGS.config
  try:
    config.get('coordinator_address')  # ml_collections defers a load failure to the first use.
  except OSError as error:
    cause = error
    while cause.__cause__ is not None:
      cause = cause.__cause__
    reason = str(cause).strip().splitlines()[-1].strip()  # ml_collections puts the reason last.
    sys.exit(f'error: --config: {reason}')
  return config


def run(main: Callable[[ml_collections.ConfigDict, str], None]) -> None:
  """Parses the flags and calls ``main(config, workdir)``.

  Before ``main``, it starts ``jax.distributed`` when ``config.coordinator_address``
  is set. A bad flag (an unknown ``--config.<field>``, a value of the wrong
  type, a config file that does not load), ``ValueError`` (bad flag values)
  and :class:`~examples.training.datasets.DatasetUnavailableError` end the program
  with a one-line message and exit status 1, without a traceback; so does a
  :class:`~examples.training.errors.RunStopped` (a failed write, a work
  directory in use), with its own exit status (128 + the signal's number after
  SIGTERM or SIGINT). Logging is
  at WARNING unless ``--verbosity`` is given, because orbax logs every
  checkpoint at INFO.
  """

  def absl_main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if not FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    config = _load_config()
    try:
      distributed.initialize(config.coordinator_address, config.num_processes, config.process_id)
      main(config, FLAGS.workdir)
    except errors.Interrupted as error:
      print(_one_line(str(error)), file=sys.stderr)
      sys.exit(error.exit_status)
    except (ValueError, datasets.DatasetUnavailableError, errors.RunStopped) as error:
      print(f'error: {_one_line(str(error))}', file=sys.stderr)
      sys.exit(getattr(error, 'exit_status', 1))

  app.run(absl_main, flags_parser=_parse_flags)
