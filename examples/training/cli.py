"""The command line the examples share: ``--config`` and ``--workdir``, multi-host start, clean errors.

An example's ``main.py`` calls :func:`define_flags` at import and
:func:`run` under ``if __name__ == '__main__'``.
"""

import contextlib
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable

import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from examples.training import datasets
from examples.training import errors
from examples.training import stop_signals

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


def _config_path(argv: list[str]) -> str:
  """The ``--config`` file named in ``argv`` (without ml_collections' ``:argument``)."""
  values = [arg.split('=', 1)[1] for arg in argv if arg.startswith('--config=')]
  return values[-1].split(':')[0] if values else ''


def _config_file_error(error: BaseException, path: str) -> str | None:
  """``--config=<path>, line <n>, does not load: <error>`` if ``error`` arose in that file."""
  cause = error
  while cause.__cause__ is not None:
    cause = cause.__cause__
  text = str(cause)
  # ml_collections wraps some errors in a flags.Error whose message holds the traceback.
  lines = [int(n) for n in re.findall(rf'File "{re.escape(path)}", line (\d+)', text)]
  lines += [frame.lineno for frame in traceback.extract_tb(cause.__traceback__)
            if path and os.path.abspath(frame.filename) == os.path.abspath(path)]
  if not path or not lines:
    return None
  if 'Traceback (most recent call last)' in text:
    reason = text.strip().splitlines()[-1].strip()  # The traceback's last line: the error.
  else:
    reason = f'{type(cause).__name__}: {_one_line(text)}'
  return f'--config={path}, line {lines[-1]}, does not load: {reason}'


def _parse_flags(argv: list[str], flag_values: flags.FlagValues = FLAGS) -> list[str]:
  """Parses ``argv``; a bad flag ends the program with one line that names it."""
  try:
    return flag_values(argv)
  except SyntaxError as error:  # In the --config file.
    sys.exit(f'error: --config: {error.msg} in {error.filename}, line {error.lineno}')
  except Exception as error:  # A config file can raise anything; named in one line.
    in_file = _config_file_error(error, _config_path(argv))
    if in_file is not None:
      sys.exit(f'error: {in_file}')
    if isinstance(error, flags.Error):
      sys.exit(f'error: {_one_line(str(error))}')
    if isinstance(error, (AttributeError, LookupError)):  # An unknown --config.<field>.
      sys.exit(f'error: {_unknown_field_message(error, argv)}')
    raise


def _load_config() -> ml_collections.ConfigDict:
  """``FLAGS.config``; a config file that does not load ends the program with one line."""
  try:
    config = FLAGS.config
    config.get('coordinator_address')  # ml_collections defers a load failure to the first use.
  except Exception as error:  # noqa: BLE001 (a config file can raise anything; named in one line)
    path = FLAGS['config'].config_filename
    in_file = _config_file_error(error, path)
    if in_file is None:
      cause = error
      while cause.__cause__ is not None:
        cause = cause.__cause__
      in_file = f'--config: {str(cause).strip().splitlines()[-1].strip()}'  # ml_collections' own.
    sys.exit(f'error: {in_file}')
  return config


def _remove_empty_directories(top: str) -> None:
  """Removes ``top`` and the directories under it if they hold no file: what a refused run made."""
  for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
    with contextlib.suppress(OSError):  # Not empty: it holds something to keep.
      os.rmdir(directory)


@contextlib.contextmanager
def workdir_removed_if_left_empty(workdir: str):
  """Removes ``workdir`` at the end, also at a signal's exit, if it was made here and holds no file.

  A run refused for something only the data shows (a batch larger than the dataset) leaves
  no work directory behind.
  """
  if os.path.lexists(workdir):
    yield
    return
  forget = stop_signals.on_exit_at_once(lambda: _remove_empty_directories(workdir))
  try:
    yield
  finally:
    forget()
    if os.path.isdir(workdir):
      _remove_empty_directories(workdir)


_CACHE_ERROR = re.compile(
    r"Error (writing|reading) persistent compilation cache entry for '[^']*': (.*)", re.DOTALL)


def report_compilation_cache_errors_in_one_line() -> None:
  """Makes JAX's warnings of a compilation cache entry that could not be written or read one
  log line each, once per process.

  A full disk or a file size limit fails every later entry too, two lines each, before the
  line that stops the run; an entry such a write cut short fails every later run's read.
  """
  show_warning = warnings.showwarning
  reported = set()

  def show(message, category, filename, lineno, file=None, line=None):
    cache_error = _CACHE_ERROR.fullmatch(str(message))
    if cache_error is None:
      show_warning(message, category, filename, lineno, file, line)
      return
    action, reason = cache_error.groups()
    if action not in reported:
      # JAX is imported by now (it compiles); the command line imports it only then.
      import jax  # pylint: disable=import-outside-toplevel

      reported.add(action)
      directory = jax.config.jax_compilation_cache_dir
      if action == 'writing':
        logging.warning('cannot write the compilation cache %s: %s; the run compiles without '
                        'caching what it could not write.', directory, _one_line(reason))
      else:
        logging.warning('cannot read an entry of the compilation cache %s (a write cut short?): '
                        '%s; it is compiled again. Delete %s to rebuild the cache.',
                        directory, _one_line(reason), directory)

  warnings.showwarning = show


def run(main: Callable[[ml_collections.ConfigDict, str], None],
        check_config: Callable[[ml_collections.ConfigDict], None] | None = None) -> None:
  """Parses the flags and calls ``main(config, workdir)``.

  First it calls ``check_config(config)``, which raises ``ValueError`` for a bad
  field, and starts ``jax.distributed`` when ``config.coordinator_address`` is
  set. A bad flag (an unknown ``--config.<field>``, a value of the wrong type or
  range, a config file that does not load), ``ValueError`` (bad flag values)
  and :class:`~examples.training.datasets.DatasetUnavailableError` end the program
  with a one-line message and exit status 1, without a traceback; so does a
  :class:`~examples.training.errors.RunStopped` (a failed write, a work
  directory in use), with its own exit status (128 + the signal's number after
  SIGTERM or SIGINT). A work directory that this run created is removed again
  if it stops with nothing in it (a refusal that needed the data, such as a
  batch larger than the dataset). Logging is at WARNING unless ``--verbosity``
  is given, because orbax logs every checkpoint at INFO. A compilation cache
  entry that cannot be written or read (a full disk) is one warning line, once.
  """

  def absl_main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if not FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    report_compilation_cache_errors_in_one_line()
    config = _load_config()
    try:
      with workdir_removed_if_left_empty(FLAGS.workdir):
        if check_config is not None:
          check_config(config)
        # JAX only now: a bad flag is refused without importing it, in a fraction of a second.
        from examples.training import distributed  # pylint: disable=import-outside-toplevel

        distributed.initialize(config.coordinator_address, config.num_processes,
                               config.process_id)
        main(config, FLAGS.workdir)
    except errors.Interrupted as error:
      print(_one_line(str(error)), file=sys.stderr)
      sys.exit(error.exit_status)
    except (ValueError, datasets.DatasetUnavailableError, errors.RunStopped) as error:
      print(f'error: {_one_line(str(error))}', file=sys.stderr)
      sys.exit(getattr(error, 'exit_status', 1))

  app.run(absl_main, flags_parser=_parse_flags)
