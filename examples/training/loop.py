"""The generic training loop: epochs of jitted steps, evaluation, logging, checkpoints."""

import signal
import time
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from flax import nnx

from examples.training import checkpointing
from examples.training import errors
from examples.training import gradient_log
from examples.training import metrics_log
from examples.training import parallel
from examples.training import resume
from examples.training import steps
from examples.training import stop_signals
from examples.training import tensorboard_log
from examples.training import validation
from examples.training import workdir_lock
from examples.training.task import DataSource
from examples.training.task import Metrics
from examples.training.task import Task
from examples.training.task import means

TRAIN_PREFIX = 'train_'
EVAL_PREFIX = 'test_'

class NonFiniteError(ValueError):
  """Training met a NaN or an Inf (``--config.on_nonfinite``)."""


def _epoch_means(metric_sums, prefix: str) -> dict[str, float]:
  """Means per example, and the count of skipped steps (``on_nonfinite=skip``) as it is."""
  metric_sums = dict(metric_sums)
  skipped = metric_sums.pop(steps.SKIPPED, None)
  record = means(metric_sums, prefix)
  if skipped is not None:
    record[prefix + steps.SKIPPED] = int(skipped)
  return record


@jax.jit
def _add_sums_compiled(metric_sums: Metrics, new: Metrics) -> Metrics:
  return steps.accumulate(metric_sums, new)


def _add_sums(metric_sums: Metrics | None, new: Metrics) -> Metrics:
  """``metric_sums + new`` on device, from zeros for ``None``.

  One program for every step, the first included, so that it compiles in the
  run's first step, which the throughput leaves out.
  """
  if metric_sums is None:
    metric_sums = jax.tree.map(jnp.zeros_like, new)
  return _add_sums_compiled(metric_sums, new)


def _pure(state: nnx.State) -> dict:
  return jax.tree.map(np.asarray, nnx.to_pure_dict(state))


def _initial_state(config, task: Task, optimizer, axis_name: str | None):
  """``nnx.split`` of a fresh ``(model, optimizer)``, on the host."""
  model = task.create_model(nnx.Rngs(config.seed), axis_name)
  graphdef, state = nnx.split((model, nnx.Optimizer(model, optimizer, wrt=nnx.Param)))
  return graphdef, jax.device_get(state)


class _Run:
  """One training run's placed state, compiled steps and bookkeeping."""

  def __init__(self, config, workdir, task, data, optimizer, resumable_keys,
               gradient_statistics: gradient_log.StepStatistics | None,
               stop: stop_signals.StopSignals, name: str):
    self.config, self.data, self.stop, self.name = config, data, stop, name
    self.data_parallel = parallel.from_config(config)
    self.devices = parallel.describe_devices(config)
    axis_name = self.data_parallel.data_axis_name
    graphdef, host_state = _initial_state(config, task, optimizer, axis_name)
    self.gradient_statistics = gradient_statistics if config.log_gradient_statistics else None
    skip = config.on_nonfinite == 'skip'
    gather = self.data_parallel.gather_variables
    self.train_step = self.data_parallel.compile(
        steps.train_step(task, graphdef, axis_name, skip_nonfinite=skip,
                         max_consecutive=config.max_nonfinite_steps if skip else 1,
                         gradient_statistics=self.gradient_statistics, gather_variables=gather),
        donate_argnums=(0,),
    )
    self.eval_step = self.data_parallel.compile(
        steps.eval_step(task, graphdef, axis_name, gather_variables=gather), donate_argnums=()
    )

    self.config_json = resume.config_to_json(config)
    self.checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every_steps)
    self.log = metrics_log.MetricsLog(workdir)
    self.history: list[dict[str, Any]] = []
    self.step = 0
    self.compiled = False  # Whether this process has run (and so compiled) the train step.
    self.examples_per_second: float | None = None  # The last epoch's, without the compile.
    self.train_sums: Metrics | None = None  # Running sums of the current epoch, on device.
    try:
      saved_steps = self.checkpointer.steps()
      if saved_steps and not config.resume:
        raise ValueError(
            f'{workdir} already holds checkpoints (latest step {saved_steps[0]}); pass '
            '--config.resume=True to continue from them, or choose a new --workdir.'
        )
      if saved_steps:
        self._restore(host_state, resumable_keys)
      self.log.start(self.history)
      self.gradient_log = gradient_log.GradientStatisticsLog(workdir)
      self.gradient_log.start(self.step)
    except BaseException:
      self.checkpointer.close()
      raise
    self.state = self.data_parallel.put_state(host_state)
    self.health = self.data_parallel.put_state(steps.initial_health(self.step))
    # Last: nothing after it raises, so fit's clean-up always closes it.
    self.tensorboard = tensorboard_log.TensorBoardLog(
        workdir, start_step=self.step, config_json=self.config_json)

  def close(self) -> None:
    """Flushes and closes the event files, and finishes and verifies a save in flight."""
    try:
      self.tensorboard.close()
    finally:
      self.checkpointer.close()

  def _restore(self, host_state, resumable_keys) -> None:
    """Loads the newest intact checkpoint into ``host_state`` and the bookkeeping."""

    def check(restored: checkpointing.Restored) -> None:
      resume.check_same_run(restored.config, self.config, restored.path, resumable_keys)
      resume.check_same_devices(restored.loop.get('devices'), self.devices, self.config,
                                restored.path)
      if restored.loop['steps_per_epoch'] != self.data.steps_per_epoch:
        raise ValueError(
            f'--config.resume=True, but the checkpoint {restored.path} was trained with '
            f'{restored.loop["steps_per_epoch"]} steps per epoch and this data gives '
            f'{self.data.steps_per_epoch}: the data is not the same.'
        )

    restored = self.checkpointer.restore_latest(
        model_like=_pure(host_state[0]), optimizer_like=_pure(host_state[1]), check=check)
    if restored is None:
      logging.warning('No checkpoint in %s could be restored; training starts from step 0.',
                      self.checkpointer.directory)
      return
    nnx.replace_by_pure_dict(host_state[0], restored.model)
    nnx.replace_by_pure_dict(host_state[1], restored.optimizer)
    self.step = restored.loop['step']
    self.history = restored.loop['history']
    if restored.loop['train_sums'] is not None:
      self.train_sums = self.data_parallel.put_state(
          checkpointing.metric_sums_from_json(restored.loop['train_sums']))

  def check_finite(self) -> None:
    """Stops the run if the train steps recorded a stop for NaN/Inf (one small device read).

    Raises:
      NonFiniteError: naming the step, what was non-finite and the last good checkpoint.
    """
    health = self.data_parallel.get_state(self.health)
    stop_step = int(health['stop_step'])
    if stop_step < 0:
      return
    what = steps.describe_parts(int(health['stop_parts']))
    if self.config.on_nonfinite == 'skip':
      cause = (f'{self.config.max_nonfinite_steps} steps in a row were skipped '
               f'(--config.max_nonfinite_steps), the last for non-finite {what}')
    else:
      cause = (f'the {what} became non-finite (NaN or Inf; --config.on_nonfinite=skip skips '
               'such steps)')
    saved = self.checkpointer.steps()
    kept = (f'the last good checkpoint, {self.checkpointer.step_path(saved[0])} (step '
            f'{saved[0]}), is kept; resume from it with --config.resume=True' if saved
            else 'no checkpoint was saved before it')
    raise NonFiniteError(f'training stopped at step {stop_step}: {cause}; {kept}.')

  def save(self, *, force: bool = False) -> None:
    """Checkpoints the state, the epoch's running sums and the history if due (or forced).

    A state that went non-finite is never saved: :meth:`check_finite` stops first.
    """
    if not (force or self.checkpointer.due(self.step)):
      return
    self.check_finite()
    sums = self.train_sums
    if sums is not None:
      sums = checkpointing.metric_sums_to_json(self.data_parallel.get_state(sums))
    host_state = self.data_parallel.get_state(self.state)
    # The history is copied: the save writes in the background while the next epoch appends.
    self.checkpointer.save(
        self.step, model=_pure(host_state[0]), optimizer=_pure(host_state[1]),
        loop={'step': self.step, 'steps_per_epoch': self.data.steps_per_epoch,
              'history': list(self.history), 'train_sums': sums, 'devices': self.devices},
        config=self.config_json,
    )

  def train_epoch(self, epoch: int) -> bool:
    """Runs the rest of ``epoch``; ``False`` if :attr:`stop` asked to stop before its last step.

    The state is saved then. Sets :attr:`examples_per_second`, the epoch's
    training throughput. The run's first step compiles the train step, so the
    clock starts after it: the rate is over the epoch's later steps, and
    ``None`` for an epoch with none.
    """
    config, steps_per_epoch = self.config, self.data.steps_per_epoch
    first = self.step - epoch * steps_per_epoch
    show = config.progress_bar and jax.process_index() == 0
    progress = tqdm.tqdm(
        total=steps_per_epoch, initial=first, unit='step', leave=False, disable=not show,
        desc=f'{self.name} epoch {epoch + 1}/{config.num_epochs}',
    )
    self._start_interval()
    start, timed_from = time.perf_counter(), self.step
    for in_epoch, batch in enumerate(self.data.train_batches(epoch, first), first + 1):
      (self.state, self.health), outputs = self.train_step(
          (self.state, self.health), self.data_parallel.put_batch(batch))
      self.stop.training_started()
      batch_sums, statistics = outputs if self.gradient_statistics else (outputs, None)
      self.train_sums = _add_sums(self.train_sums, batch_sums)
      self.step += 1
      if not self.compiled:  # Keeps the compile out of the throughput: the clocks start here.
        jax.block_until_ready(self.state)
        self.compiled = True
        start, timed_from = time.perf_counter(), self.step
        self._interval_step, self._interval_time = self.step, start
      progress.update()
      if self.step % config.log_every_steps == 0:
        self._log_interval(statistics, progress)
      stopping = self.stop.check(self.step)
      if in_epoch < steps_per_epoch:  # Epoch ends are saved after their evaluation.
        self.save(force=stopping)
        if stopping:
          progress.close()
          return False
    self.check_finite()
    progress.close()
    self.examples_per_second = None if self.step == timed_from else (
        (self.step - timed_from) * config.batch_size / (time.perf_counter() - start))
    return True

  def _start_interval(self) -> None:
    sums = self.train_sums
    self._interval_sums = None if sums is None else self.data_parallel.get_state(sums)
    self._interval_step, self._interval_time = self.step, time.perf_counter()

  def _log_interval(self, statistics, progress: tqdm.tqdm) -> None:
    """Logs the interval that ends at this step; the loop's one wait for the device in it."""
    if statistics is not None:
      # Written before the finiteness check, so that a stopped run shows which leaves went bad.
      statistics = self.data_parallel.get_state(statistics)
      self.gradient_log.write(
          gradient_log.record(self.step, self.gradient_statistics.names, statistics))
      self.tensorboard.gradient_statistics(self.step, self.gradient_statistics.names, statistics)
    self.check_finite()
    sums = self.data_parallel.get_state(self.train_sums)
    interval_sums = sums if self._interval_sums is None else {
        name: value - self._interval_sums[name] for name, value in sums.items()}
    now = time.perf_counter()
    record = _epoch_means(interval_sums, TRAIN_PREFIX)
    if self.step > self._interval_step:  # Not for an interval that held only the compiling step.
      record[TRAIN_PREFIX + 'examples_per_second'] = (
          (self.step - self._interval_step) * self.config.batch_size / (now - self._interval_time))
    self.tensorboard.scalars('interval', record, self.step)
    progress.set_postfix(loss=f'{record[TRAIN_PREFIX + "loss"]:.4f}',
                         examples_per_s=_format(record.get(TRAIN_PREFIX + 'examples_per_second')))
    self._interval_sums, self._interval_step, self._interval_time = sums, self.step, now

  def evaluate(self) -> Metrics:
    eval_sums = None
    for batch in self.data.eval_batches():
      batch_sums = self.eval_step(self.state, self.data_parallel.put_batch(batch))
      eval_sums = steps.accumulate(eval_sums, batch_sums)
    return self.data_parallel.get_state(eval_sums)

  def end_epoch(self, epoch: int) -> None:
    record = {
        'epoch': epoch + 1,
        'step': self.step,
        **_epoch_means(self.data_parallel.get_state(self.train_sums), TRAIN_PREFIX),
        **_epoch_means(self.evaluate(), EVAL_PREFIX),
        'train_examples_per_second': self.examples_per_second,
    }
    self.history.append(record)
    self.log.write(record)
    self.tensorboard.scalars('epoch', {k: v for k, v in record.items()
                                       if k not in ('epoch', 'step') and v is not None}, self.step)
    self.tensorboard.flush()
    if jax.process_index() == 0:  # With the progress bar or without: a run shows each epoch.
      tqdm.tqdm.write(f'{self.name} epoch {epoch + 1}: {summary(record)}')
    self.train_sums = None
    self.save(force=epoch + 1 == self.config.num_epochs or self.stop.stopping)


def fit(
    config: ml_collections.ConfigDict,
    workdir: str,
    task: Task,
    data: DataSource,
    optimizer: optax.GradientTransformation,
    *,
    resumable_keys: Iterable[str] = (),
    gradient_statistics: gradient_log.StepStatistics | None = None,
    name: str = '',
) -> list[dict[str, Any]]:
  """Trains ``task``'s model on ``data`` and evaluates it after every epoch.

  Every step checks its loss, gradients and updated state for NaN and Inf on
  device; the loop reads the result every ``log_every_steps`` steps, before
  each checkpoint and at the end of each epoch. With ``on_nonfinite='stop'``
  the run stops at the first non-finite step; with ``'skip'`` such steps leave
  the state unchanged, are counted as ``train_skipped_steps`` and stop the run
  after ``max_nonfinite_steps`` in a row. A non-finite state is never saved.

  SIGTERM or SIGINT (:mod:`examples.training.stop_signals`) stops the run
  after the step in flight, with a verified checkpoint. ``workdir`` is locked
  for the run (:mod:`examples.training.workdir_lock`).

  Process 0 writes ``metrics.jsonl`` (one record per epoch) and TensorBoard
  event files (:mod:`examples.training.tensorboard_log`: the epoch records,
  the training means of every log interval and the config) into ``workdir``;
  with ``log_gradient_statistics`` also ``gradient_statistics.jsonl``
  (:mod:`examples.training.gradient_log`: what ``gradient_statistics``
  computes at every log step).

  Args:
    config: reads ``seed``, ``parallel`` (``sharded``, ``pmap`` or
      ``none``), ``platform``, ``batch_size`` (global), ``num_epochs``,
      ``log_every_steps``, ``checkpoint_every_steps``, ``resume``,
      ``on_nonfinite``, ``max_nonfinite_steps``, ``log_gradient_statistics``
      and ``progress_bar`` (see :mod:`examples.training.defaults`).
      Checkpoints store all of it, and a resumed run must match it except for
      :data:`examples.training.resume.RESUMABLE_KEYS` and ``resumable_keys``.
    workdir: receives ``metrics.jsonl``, the event files, ``checkpoints/``
      and ``gradient_statistics.jsonl``.
    task: the model and loss of the task.
    data: process-local batches.
    optimizer: any optax optimizer; it updates the ``nnx.Param`` leaves.
    resumable_keys: the caller's config fields that may change on resume,
      e.g. a data directory.
    gradient_statistics: the caller's statistics of each log step's
      gradient (e.g. :class:`examples.study.gradient_statistics.StepStatistics`);
      needed with ``log_gradient_statistics``, unused without it.
    name: the run's name on the progress bar and in the epoch summaries;
      ``seed <seed>`` by default.

  Returns:
    One record per epoch: ``epoch``, ``step``, ``train_<metric>`` and
    ``test_<metric>`` means, ``train_examples_per_second`` (and
    ``train_skipped_steps`` with ``on_nonfinite='skip'``). With ``resume`` the
    epochs restored from the checkpoint are included. The throughput leaves
    out the process's first step, which compiles the train step (``None``
    for an epoch that has no other step). Process 0 prints each record.

  Raises:
    ValueError: for a bad config field, a ``workdir`` that holds checkpoints
      without ``config.resume``, or a checkpoint of another run.
    NonFiniteError: when training meets NaN or Inf as described above.
    Interrupted: after SIGTERM or SIGINT, once the checkpoint is saved.
    WorkdirInUseError: if another run holds ``workdir``; nothing is written.
    WriteError: on an ``OSError`` while saving or logging, naming the path;
      the checkpoints verified before it are kept.
  """
  validation.validate(config)
  if config.log_gradient_statistics and gradient_statistics is None:
    raise ValueError('--config.log_gradient_statistics=True, but the caller passes no '
                     'gradient_statistics to fit.')
  validation.prepare_workdir(workdir)
  with workdir_lock.WorkdirLock(workdir), stop_signals.StopSignals() as stop:
    run = _Run(config, workdir, task, data, optimizer, resumable_keys, gradient_statistics,
               stop, name or f'seed {config.seed}')
    try:
      for epoch in range(run.step // data.steps_per_epoch, config.num_epochs):
        if not run.train_epoch(epoch):
          break
        run.end_epoch(epoch)
        if stop.stopping:
          break
    finally:
      run.close()  # Also when training stops early: its logs are complete, its save verified.
    if stop.received is not None or stop.stopping:
      raise _interrupted(run, stop)
  return run.history


def summary(record: dict[str, Any]) -> str:
  """``train_loss 2.31, test_loss 2.4, ...``: a record's values but its epoch and step."""
  return ', '.join(f'{key} {_format(value)}' for key, value in record.items()
                   if key not in ('epoch', 'step'))


def _format(value) -> str:
  return 'n/a' if value is None else f'{value:.4g}'


def _interrupted(run: _Run, stop: stop_signals.StopSignals) -> errors.Interrupted:
  saved = run.checkpointer.steps()
  if saved and saved[0] == run.step == run.config.num_epochs * run.data.steps_per_epoch:
    return errors.Interrupted(
        f'{stop.describe()} received in the last step: training is complete; checkpoint '
        f'{run.checkpointer.step_path(run.step)} is saved and verified.',
        stop.received or signal.SIGTERM)
  if saved and saved[0] == run.step:
    kept = f'checkpoint {run.checkpointer.step_path(run.step)} is saved and verified'
  elif saved:
    kept = f'the newest checkpoint is {run.checkpointer.step_path(saved[0])} (step {saved[0]})'
  else:
    kept = 'no checkpoint could be saved'
  return errors.Interrupted(
      f'training stopped at step {run.step} by {stop.describe()}: {kept}; continue with '
      '--config.resume=True.', stop.received or signal.SIGTERM)
