"""TensorBoard event files beside ``metrics.jsonl`` (written by process 0 only).

tensorboardX writes them; it needs neither TensorFlow nor TensorBoard. Tags:

* ``epoch/<key>``: every value of the epoch's ``metrics.jsonl`` record, e.g.
  ``epoch/train_loss`` and ``epoch/test_accuracy``, at the epoch's last step;
* ``interval/train_<metric>`` and ``interval/train_examples_per_second``: means
  over each log interval (``--config.log_every_steps``); the throughput, like
  the epoch's, leaves out the run's first step, which compiles the train step;
* ``gradient_norm_before/<leaf>`` (and ``gradient_std_before``,
  ``gradient_norm_after``, ``gradient_std_after``) with
  ``--config.log_gradient_statistics``;
* the text ``config``: the run's config as JSON.

A run that starts at step ``s`` (0, or a checkpoint's step on resume) hides
the values a previous run in the same directory logged after step ``s``
(tensorboardX's ``purge_step``), so a resumed run's curves do not double back.

tensorboardX writes from a thread of its own, which an ``OSError`` (a full
disk) would end, leaving its queue to fill and the next log call to hang. The
thread's writes go through :class:`_KeepsWriteErrors` instead, and the next
call from the loop raises :class:`~examples.training.errors.WriteError` naming
the event file.
"""

import json
import os
import time

import jax
import numpy as np
import tensorboardX

from examples.training import errors
from examples.training import gradient_log


class _KeepsWriteErrors:
  """tensorboardX's ``EventsWriter``, keeping the first ``OSError`` instead of raising it."""

  def __init__(self, events_writer):
    self._events_writer = events_writer
    self.path = events_writer._file_name
    self.error: OSError | None = None

  def _call(self, method, *args):
    if self.error is None:
      try:
        getattr(self._events_writer, method)(*args)
      except OSError as error:
        self.error = error

  def write_event(self, event) -> None:
    self._call('write_event', event)

  def flush(self) -> None:
    self._call('flush')

  def close(self) -> None:
    self._call('close')


class TensorBoardLog:
  """The run's ``SummaryWriter``; every method does nothing on processes other than 0.

  Args:
    workdir: the run's work directory; the event files go right into it.
    start_step: the step this run starts at.
    config_json: the run's config, logged as text at ``start_step``.
  """

  def __init__(self, workdir: str, *, start_step: int, config_json: dict):
    self._writer = None
    self._events = None
    self._reported = False
    if jax.process_index() == 0:
      # Everything up to start_step was logged before its checkpoint was saved; the rest was not.
      # tensorboardX names a file by the second and the host and opens it with 'wb', so a run
      # resumed within the same second would truncate the last one's file. TensorBoard reads
      # files in name order: the nanosecond suffix keeps them unique and in time order.
      suffix = f'.{time.time_ns()}.{os.getpid()}'
      try:
        self._writer = tensorboardX.SummaryWriter(
            workdir, purge_step=start_step + 1, filename_suffix=suffix)
      except OSError as error:
        raise errors.WriteError(os.path.join(workdir, 'events.out.tfevents.*'), error) from error
      file_writer = self._writer._get_file_writer().event_writer
      self._events = _KeepsWriteErrors(file_writer._ev_writer)
      file_writer._ev_writer = file_writer._worker._record_writer = self._events
      # Indented four spaces: a code block in the text plugin's Markdown.
      text = json.dumps(config_json, indent=2, sort_keys=True).replace('\n', '\n    ')
      self._writer.add_text('config', '    ' + text, start_step)

  def _check(self) -> None:
    """Raises the event thread's first write error, once; the thread writes nothing after it."""
    if self._events is not None and self._events.error is not None and not self._reported:
      self._reported = True
      raise errors.WriteError(self._events.path, self._events.error) from self._events.error

  def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
    """Logs ``values`` as ``<prefix>/<key>`` at ``step``."""
    self._check()
    if self._writer is not None:
      for key, value in values.items():
        self._writer.add_scalar(f'{prefix}/{key}', value, step)

  def gradient_statistics(self, step: int, names: list[str], statistics: np.ndarray) -> None:
    """Logs the ``(4, leaves)`` array of :mod:`examples.training.gradient_log` per leaf."""
    for name, row in zip(gradient_log.STATISTICS, statistics, strict=True):
      self.scalars(f'gradient_{name}', dict(zip(names, map(float, row), strict=True)), step)

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()
    self._check()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
    self._check()
