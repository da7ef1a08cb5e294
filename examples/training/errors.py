"""Why a run stopped before its end: the faults the training core reports in one line.

:func:`examples.training.cli.run` prints the message of a :class:`RunStopped`
as one line and exits with its ``exit_status``.
"""

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
    reason = error.strerror or str(error)
    code = f'[Errno {error.errno}] ' if error.errno else ''
    super().__init__(f'cannot write {path}: {code}{reason}; the run stopped.')


class WorkdirInUseError(RunStopped):
  """Another run holds the work directory's lock."""


def os_error_in(error: BaseException) -> OSError | None:
  """The first ``OSError`` in ``error``'s chain of causes, if any (orbax wraps them)."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, OSError):
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None
