"""SIGTERM and SIGINT as a request to stop: save after the step in flight, then exit.

A preemptible VM, Slurm and Kubernetes send SIGTERM some seconds before they kill;
Ctrl-C sends SIGINT. While :func:`examples.training.loop.fit` runs, the first of
either sets a flag that the loop reads after every step (a Python bool, no wait
for the device); the loop then saves and verifies a checkpoint, closes its logs
and raises :class:`~examples.training.errors.Interrupted`. A second signal gets
the signal's usual action at once: SIGTERM ends the process, SIGINT raises
``KeyboardInterrupt``.

In a multi-process run (``jax.distributed``), every process must save at the
same step. JAX's preemption service owns SIGTERM there: a notice to any process
reaches all of them, and ``multihost_utils.reached_preemption_sync_point``,
called at every step, turns true at the same step everywhere. SIGINT is passed
on to it as a SIGTERM.
"""

import os
import signal
import threading

import jax
from absl import logging
from jax.experimental import multihost_utils

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
    if threading.current_thread() is not threading.main_thread():
      return self  # Python delivers signals to the main thread only.
    # jax.distributed.initialize starts the preemption service, whose notifier owns SIGTERM.
    self._coordinated = jax.process_count() > 1 and jax.config.jax_enable_preemption_service
    for signum in _SIGNALS:
      if signum == signal.SIGTERM and self._coordinated:
        continue
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    self._restore()

  def _restore(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum: int, frame) -> None:
    del frame
    if self.received is not None:
      self._restore()
      signal.raise_signal(signum)  # Its usual action, at once.
      return
    self.received = signum
    logging.warning('%s received: stopping after the step in flight, once a checkpoint is saved '
                    '(send it again to stop at once).', signal.Signals(signum).name)
    if self._coordinated:
      os.kill(os.getpid(), signal.SIGTERM)  # To JAX's preemption notifier.

  def check(self, step: int) -> bool:
    """Whether to stop after ``step``; call it after every step, with the steps run so far."""
    if self._coordinated:
      self.stopping |= multihost_utils.reached_preemption_sync_point(step)
    else:
      self.stopping |= self.received is not None
    return self.stopping

  def describe(self) -> str:
    """What asked to stop, for the message."""
    if self.received is not None:
      return signal.Signals(self.received).name
    return 'a preemption notice (SIGTERM to a process of this run)'
