"""SIGTERM and SIGINT as a request to stop: save after the step in flight, then exit.

A preemptible VM, Slurm and Kubernetes send SIGTERM some seconds before they kill;
Ctrl-C sends SIGINT. While :func:`examples.training.loop.fit` runs, the first of
either sets a flag that the loop reads after every step (a Python bool, no wait
for the device); the loop then saves and verifies a checkpoint, closes its logs
and raises :class:`~examples.training.errors.Interrupted`. A second signal gets
the signal's default action at once (the process ends by it), also where the
signal was ignored when the process started.

The command line (:func:`catch_from_start`, the first thing ``examples/main.py``
does) catches both from its first line: until the first training step is compiled
and dispatched, and again once training has ended, there is nothing to save, and a
signal ends the process at once with one line (``stopped before training by
SIGTERM: nothing to save.``, status 128 + the signal's number). A thread watches
for the signals, so this holds while the main thread is busy in C++ (an import, a
long XLA compile), where Python runs no handler; it also stops the process at a
second signal there. In a multi-process run the processes stop together instead.

In a multi-process run (``jax.distributed``), every process must save at the
same step. JAX's preemption service owns SIGTERM there: a notice to any process
reaches all of them, and ``multihost_utils.reached_preemption_sync_point``,
called at every step, turns true at the same step everywhere. SIGINT is passed
on to it as a SIGTERM.
"""

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable

from absl import logging

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _FromStart:
  """What :func:`catch_from_start` keeps: whether training has begun, and what to undo at exit."""

  def __init__(self):
    self.exiting = threading.Lock()
    self.training: StopSignals | None = None  # The fit in progress, once its first step runs.
    self.coordinated = False  # A multi-process fit: its processes stop together, not at once.
    self.trained = False  # Whether a fit has ended: its checkpoints are saved.
    self.seen = 0  # Signals the watcher has read since training began.
    self.cleanups: list[Callable[[], None]] = []


_from_start: _FromStart | None = None


def catch_from_start() -> None:
  """Catches SIGTERM and SIGINT from now on in this process (call it from the main thread).

  Outside training, either ends the process at once with one line on stderr; in
  training, :class:`StopSignals` handles them.
  """
  global _from_start
  _from_start = _FromStart()
  for signum in reversed(_SIGNALS):  # SIGTERM last: once it is caught, both are.
    signal.signal(signum, _before_training)
  read_end, write_end = os.pipe()
  os.set_blocking(write_end, False)
  signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
  threading.Thread(target=_watch, args=(read_end,), daemon=True, name='stop_signals').start()


def on_exit_at_once(cleanup: Callable[[], None]) -> Callable[[], None]:
  """Runs ``cleanup`` if a signal ends the process at once; returns what unregisters it."""
  if _from_start is None:
    return lambda: None
  _from_start.cleanups.append(cleanup)
  return lambda: _from_start.cleanups.remove(cleanup)


def _exit_at_once(signum: int, message: str) -> None:
  if not _from_start.exiting.acquire(blocking=False):
    return  # The other thread is exiting already.
  for cleanup in reversed(_from_start.cleanups):
    with contextlib.suppress(OSError):  # A file left behind is handled by the next run.
      cleanup()
  os.write(sys.stderr.fileno(), (message + '\n').encode())  # No lock the main thread may hold.
  os._exit(128 + signum)


def _nothing_to_save(signum: int) -> None:
  name = signal.Signals(signum).name
  _exit_at_once(signum, f'stopped by {name} outside training: every checkpoint is saved; rerun '
                        'with --config.resume=True to go on.' if _from_start.trained else
                f'stopped before training by {name}: nothing to save.')


def _before_training(signum: int, frame) -> None:
  del frame
  _nothing_to_save(signum)


def _watch(read_end: int) -> None:
  """Acts on signals while the main thread may run no Python (the C handler wrote their numbers)."""
  while data := os.read(read_end, 64):
    for signum in data:
      if signum not in _SIGNALS or _from_start.coordinated:
        continue
      if _from_start.training is None:
        _nothing_to_save(signum)
      else:
        _from_start.seen += 1
        if _from_start.seen > 1:
          _exit_at_once(signum, f'{signal.Signals(signum).name} received again: stopped at once.')


class StopSignals:
  """Catches SIGTERM and SIGINT while in a ``with`` block (only in the main thread).

  Attributes:
    received: the first signal this process received, or ``None``.
    stopping: whether :meth:`check` said to stop; it stays true.
  """

  def __init__(self):
    self.received: int | None = None
    self.stopping = False
    self._previous: dict[int, object] = {}
    self._coordinated = False

  def __enter__(self):
    import jax  # pylint: disable=import-outside-toplevel (catch_from_start runs before jax loads)

    if threading.current_thread() is not threading.main_thread():
      return self  # Python delivers signals to the main thread only.
    # jax.distributed.initialize starts the preemption service, whose notifier owns SIGTERM.
    self._coordinated = jax.process_count() > 1 and jax.config.jax_enable_preemption_service
    if _from_start is not None:
      _from_start.coordinated = self._coordinated
    for signum in _SIGNALS:
      if signum == signal.SIGTERM and self._coordinated:
        continue
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    self._restore()
    if _from_start is not None:
      _from_start.trained |= _from_start.training is self
      _from_start.training, _from_start.coordinated = None, False

  def _restore(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum: int, frame) -> None:
    del frame
    if _from_start is not None and _from_start.training is None and not self._coordinated:
      _nothing_to_save(signum)  # No step has run: the command line exits at once.
      return
    if self.received is not None:
      self._restore()
      signal.signal(signum, signal.SIG_DFL)  # Not the previous handler: it may ignore it.
      signal.raise_signal(signum)
      return
    self.received = signum
    logging.warning('%s received: stopping after the step in flight, once a checkpoint is saved '
                    '(send it again to stop at once).', signal.Signals(signum).name)
    if self._coordinated:
      os.kill(os.getpid(), signal.SIGTERM)  # To JAX's preemption notifier.

  def training_started(self) -> None:
    """Call it once the first step is compiled and dispatched: from then on a signal saves first."""
    if _from_start is not None and _from_start.training is None:
      _from_start.training, _from_start.seen = self, 0

  def check(self, step: int) -> bool:
    """Whether to stop after ``step``; call it after every step, with the steps run so far."""
    if self._coordinated:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

      self.stopping |= multihost_utils.reached_preemption_sync_point(step)
    else:
      self.stopping |= self.received is not None
    return self.stopping

  def describe(self) -> str:
    """What asked to stop, for the message."""
    if self.received is not None:
      return signal.Signals(self.received).name
    return 'a preemption notice (SIGTERM to a process of this run)'
