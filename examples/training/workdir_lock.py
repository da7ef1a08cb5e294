"""One run per work directory: ``<workdir>/run.lock``, held while a run writes there.

The lock is an ``flock`` on that file, which the kernel releases when its process
ends, however it ends; the file names the holder's host and process id for the
message a second run gets. A file left by a process that ended without removing
it (a SIGKILL) is taken over with a warning. Readers (``load_model``, the
sweep's report) take no lock. In a multi-process run, process 0 holds it.
"""

import contextlib
import fcntl
import json
import os
import socket

import jax
from absl import logging

from examples.training import errors
from examples.training import stop_signals

FILENAME = 'run.lock'


def _holder(fd: int) -> dict | None:
  """The holder that the open lock file names, or ``None`` if it is empty or unreadable."""
  try:
    text = os.pread(fd, 4096, 0).decode()
    return json.loads(text) if text else None
  except (OSError, ValueError):
    return None


def _describe(holder: dict | None) -> str:
  if not holder:
    return 'an unknown process'
  return f'process {holder.get("pid")} on host {holder.get("host")}'


class WorkdirLock:
  """Holds ``<workdir>/run.lock`` from :meth:`__enter__` to :meth:`__exit__`.

  Raises:
    WorkdirInUseError: on entering, if another live process holds the lock;
      nothing is written then.
    WriteError: on entering, naming the lock file if it cannot be opened.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(os.path.abspath(workdir), FILENAME)
    self._fd: int | None = None
    self._forget_cleanup = lambda: None

  def __enter__(self):
    if jax.process_index() == 0:
      self._fd = self._acquire()
      self._forget_cleanup = stop_signals.on_exit_at_once(self._remove_file)
    return self

  def _remove_file(self) -> None:
    with contextlib.suppress(FileNotFoundError):  # The work directory may be gone.
      os.unlink(self.path)  # While still held, so no other run can have locked this file.

  def _acquire(self) -> int:
    while True:
      try:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      except OSError as error:  # A directory, or a file this user may not open.
        raise errors.WriteError(self.path, error) from error
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise errors.WorkdirInUseError(
            f'--workdir={os.path.dirname(self.path)} is in use by another run ({_describe(holder)}'
            f', lock {self.path}); wait for it to end, or choose another --workdir.') from None
      try:
        current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        current = False
      if current:
        break
      os.close(fd)  # Its holder removed the file as we opened it: lock the new one.
    left = _holder(fd)
    if left is not None:
      logging.warning('Taking over %s from %s, which ended without releasing it.', self.path,
                      _describe(left))
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps({'host': socket.gethostname(), 'pid': os.getpid()}).encode(), 0)
    except OSError as error:
      os.close(fd)
      raise errors.WriteError(self.path, error) from error
    return fd

  def __exit__(self, *exc_info) -> None:
    if self._fd is not None:
      self._forget_cleanup()
      self._remove_file()
      os.close(self._fd)
      self._fd = None
