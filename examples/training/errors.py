"""Why a run stopped before its end: the faults the training core reports in one line.

:func:`examples.training.cli.run` prints the message of a :class:`RunStopped`
as one line and exits with its ``exit_status``.
"""

import os
import re


class RunStopped(Exception):
  """A run that stopped on purpose or on a fault it names; nothing saved before it is lost."""

  exit_status = 1


class Interrupted(RunStopped):
  """SIGTERM or SIGINT (or, in a multi-process run, a preemption notice to another process).

  The run finished its step in flight and saved a verified checkpoint; its exit status is
  the one of a process that the signal ended, 128 + the signal's number (143 for SIGTERM, 130 for
  SIGINT).
  """

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_status = 128 + signum


class WriteError(RunStopped):
  """An ``OSError`` (a full disk, an I/O error, a read-only directory) while writing ``path``."""

  def __init__(self, path: str, error: OSError):
    # The system's text for a numbered error: a wrapper's own text may run over many lines.
    reason = os.strerror(error.errno) if error.errno else error.strerror or str(error)
    code = f'[Errno {error.errno}] ' if error.errno else ''
    super().__init__(f'cannot write {path}: {code}{reason}; the run stopped.')


class WorkdirInUseError(RunStopped):
  """Another run holds the work directory's lock."""


_TENSORSTORE_OS_ERROR = re.compile(r"\[os_error_code='?(\d+)'?\]")


def os_error_in(error: BaseException | None) -> OSError | None:
  """The first ``OSError`` in ``error``'s chain of causes, if any (orbax wraps them).

  TensorStore, which writes orbax's arrays, raises a ``ValueError`` that names the
  error number (``... File too large [os_error_code='27']``); it counts as that ``OSError``.
  """
  seen, without_number = set(), None
  while error is not None and id(error) not in seen:
    if isinstance(error, OSError) and error.errno:
      return error
    if code := _TENSORSTORE_OS_ERROR.search(str(error)):
      return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
    # An OSError with no number (orbax re-raises some so) may wrap TensorStore's text.
    if isinstance(error, OSError) and without_number is None:
      without_number = error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return without_number
