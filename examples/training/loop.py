"""The generic training loop: epochs of jitted steps, evaluation, logging, checkpoints.

:class:`_Run` trains epoch by epoch and hands each other job to a part: the
compiled steps (:func:`_compiled_steps`), the checkpoints' restore and saves
(:class:`_Checkpoints`), the NaN/Inf record (:class:`_Health`), the log
intervals (:class:`_IntervalLog`), the epochs' records (:class:`_EpochLog`) and
the evaluation (:func:`_evaluate`); placing the state and batches on the
devices is the parallel mode's (:mod:`examples.training.parallel`).
"""

import dataclasses
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


def _compiled_steps(config, task: Task, graphdef, data_parallel: parallel.DataParallel,
                    gradient_statistics: gradient_log.StepStatistics | None):
  """The train and eval steps, compiled for ``data_parallel``'s devices."""
  axis_name, gather = data_parallel.data_axis_name, data_parallel.gather_variables
  skip = config.on_nonfinite == 'skip'
  train_step = data_parallel.compile(
      steps.train_step(task, graphdef, axis_name, skip_nonfinite=skip,
                       max_consecutive=config.max_nonfinite_steps if skip else 1,
                       gradient_statistics=gradient_statistics, gather_variables=gather),
      donate_argnums=(0,),
  )
  eval_step = data_parallel.compile(
      steps.eval_step(task, graphdef, axis_name, gather_variables=gather), donate_argnums=())
  return train_step, eval_step


@dataclasses.dataclass
class _Progress:
  """Where a run stands: what a checkpoint's ``loop`` item holds besides the devices."""

  step: int = 0
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  train_sums: Metrics | None = None
  """The running sums of the current epoch, on device."""


class _Checkpoints:
  """The run's checkpoints: the refusal of another run's, the restore and the saves."""

  def __init__(self, config, workdir: str, data: DataSource,
               data_parallel: parallel.DataParallel, resumable_keys):
    self._config, self._workdir, self._data = config, workdir, data
    self._data_parallel, self._resumable_keys = data_parallel, resumable_keys
    self._devices = parallel.describe_devices(config)
    self.config_json = resume.config_to_json(config)
    self.checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every_steps)

  def restore(self, host_state) -> _Progress:
    """Loads the newest intact checkpoint into ``host_state``; a fresh start if there is none.

    Raises:
      ValueError: for checkpoints without ``--config.resume``, or of another run.
    """
    saved_steps = self.checkpointer.steps()
    if saved_steps and not self._config.resume:
      raise ValueError(
          f'{self._workdir} already holds checkpoints (latest step {saved_steps[0]}); pass '
          '--config.resume=True to continue from them, or choose a new --workdir.'
      )
    if not saved_steps:
      return _Progress()
    restored = self.checkpointer.restore_latest(
        model_like=_pure(host_state[0]), optimizer_like=_pure(host_state[1]), check=self._check)
    if restored is None:
      logging.warning('No checkpoint in %s could be restored; training starts from step 0.',
                      self.checkpointer.directory)
      return _Progress()
    nnx.replace_by_pure_dict(host_state[0], restored.model)
    nnx.replace_by_pure_dict(host_state[1], restored.optimizer)
    sums = restored.loop['train_sums']
    if sums is not None:
      sums = self._data_parallel.put_state(checkpointing.metric_sums_from_json(sums))
    return _Progress(restored.loop['step'], restored.loop['history'], sums)

  def _check(self, restored: checkpointing.Restored) -> None:
    resume.check_same_run(restored.config, self._config, restored.path, self._resumable_keys)
    resume.check_same_devices(restored.loop.get('devices'), self._devices, self._config,
                              restored.path)
    steps_per_epoch = self._data.steps_per_epoch
    if restored.loop['steps_per_epoch'] != steps_per_epoch:
      raise ValueError(
          f'--config.resume=True, but the checkpoint {restored.path} was trained with '
          f'{restored.loop["steps_per_epoch"]} steps per epoch and this data gives '
          f'{steps_per_epoch}: the data is not the same.'
      )

  def save(self, progress: _Progress, state) -> None:
    """Starts saving ``state`` (on device) and ``progress`` at its step."""
    sums = progress.train_sums
    if sums is not None:
      sums = checkpointing.metric_sums_to_json(self._data_parallel.get_state(sums))
    host_state = self._data_parallel.get_state(state)
    # The history is copied: the save writes in the background while the next epoch appends.
    self.checkpointer.save(
        progress.step, model=_pure(host_state[0]), optimizer=_pure(host_state[1]),
        loop={'step': progress.step, 'steps_per_epoch': self._data.steps_per_epoch,
              'history': list(progress.history), 'train_sums': sums, 'devices': self._devices},
        config=self.config_json,
    )


class _Health:
  """The train steps' record of NaN and Inf, on device, and the stop it calls for."""

  def __init__(self, config, data_parallel: parallel.DataParallel,
               checkpointer: checkpointing.Checkpointer, step: int):
    self._config, self._data_parallel, self._checkpointer = config, data_parallel, checkpointer
    self.value = data_parallel.put_state(steps.initial_health(step))
    """What the train step carries and updates beside the state."""

  def check(self) -> None:
    """Stops the run if the train steps recorded a stop for NaN/Inf (one small device read).

    Raises:
      NonFiniteError: naming the step, what was non-finite and the last good checkpoint.
    """
    health = self._data_parallel.get_state(self.value)
    stop_step = int(health['stop_step'])
    if stop_step < 0:
      return
    what = steps.describe_parts(int(health['stop_parts']))
    if self._config.on_nonfinite == 'skip':
      cause = (f'{self._config.max_nonfinite_steps} steps in a row were skipped '
               f'(--config.max_nonfinite_steps), the last for non-finite {what}')
    else:
      cause = (f'the {what} became non-finite (NaN or Inf; --config.on_nonfinite=skip skips '
               'such steps)')
    saved = self._checkpointer.steps()
    kept = (f'the last good checkpoint, {self._checkpointer.step_path(saved[0])} (step '
            f'{saved[0]}), is kept; resume from it with --config.resume=True' if saved
            else 'no checkpoint was saved before it')
    raise NonFiniteError(f'training stopped at step {stop_step}: {cause}; {kept}.')


class _IntervalLog:
  """Each log interval's training means and throughput, and the log step's gradient statistics.

  They go to TensorBoard and the progress bar, the statistics to ``gradient_statistics.jsonl``.
  """

  def __init__(self, config, data_parallel: parallel.DataParallel,
               tensorboard: tensorboard_log.TensorBoardLog,
               statistics_log: gradient_log.GradientStatisticsLog,
               gradient_statistics: gradient_log.StepStatistics | None):
    self._batch_size, self._data_parallel = config.batch_size, data_parallel
    self._tensorboard, self._statistics_log = tensorboard, statistics_log
    self._gradient_statistics = gradient_statistics

  def start(self, step: int, train_sums: Metrics | None) -> None:
    """Starts an interval at ``step``, from the epoch's running sums there."""
    self._sums = None if train_sums is None else self._data_parallel.get_state(train_sums)
    self.restart_clock(step, time.perf_counter())

  def restart_clock(self, step: int, now: float) -> None:
    """Times the interval from ``step``, e.g. after the step that compiled."""
    self._step, self._time = step, now

  def write_gradient_statistics(self, step: int, statistics) -> None:
    names = self._gradient_statistics.names
    statistics = self._data_parallel.get_state(statistics)
    self._statistics_log.write(gradient_log.record(step, names, statistics))
    self._tensorboard.gradient_statistics(step, names, statistics)

  def write_means(self, step: int, train_sums: Metrics, progress: tqdm.tqdm) -> None:
    """Logs the means of the interval that ends at ``step``; the loop's one wait for the device in it."""
    sums = self._data_parallel.get_state(train_sums)
    interval_sums = sums if self._sums is None else {
        name: value - self._sums[name] for name, value in sums.items()}
    now = time.perf_counter()
    record = _epoch_means(interval_sums, TRAIN_PREFIX)
    if step > self._step:  # Not for an interval that held only the compiling step.
      record[TRAIN_PREFIX + 'examples_per_second'] = (
          (step - self._step) * self._batch_size / (now - self._time))
    self._tensorboard.scalars('interval', record, step)
    progress.set_postfix(loss=f'{record[TRAIN_PREFIX + "loss"]:.4f}',
                         examples_per_s=_format(record.get(TRAIN_PREFIX + 'examples_per_second')))
    self._sums, self._step, self._time = sums, step, now


class _EpochLog:
  """Each epoch's record: ``metrics.jsonl``, TensorBoard and the printed summary."""

  def __init__(self, metrics: metrics_log.MetricsLog, tensorboard: tensorboard_log.TensorBoardLog,
               name: str):
    self._metrics, self._tensorboard, self._name = metrics, tensorboard, name

  def write(self, record: dict[str, Any]) -> None:
    self._metrics.write(record)
    self._tensorboard.scalars('epoch', {k: v for k, v in record.items()
                                        if k not in ('epoch', 'step') and v is not None},
                              record['step'])
    self._tensorboard.flush()
    if jax.process_index() == 0:  # With the progress bar or without: a run shows each epoch.
      tqdm.tqdm.write(f'{self._name} epoch {record["epoch"]}: {summary(record)}')


def _evaluate(eval_step, state, data: DataSource, data_parallel: parallel.DataParallel) -> Metrics:
  """The metric sums over the evaluation data, on the host."""
  eval_sums = None
  for batch in data.eval_batches():
    batch_sums = eval_step(state, data_parallel.put_batch(batch))
    eval_sums = steps.accumulate(eval_sums, batch_sums)
  return data_parallel.get_state(eval_sums)


class _Run:
  """One training run, epoch by epoch; each other job is a part's (see ``__init__``)."""

  def __init__(self, config, workdir, task, data, optimizer, resumable_keys,
               gradient_statistics: gradient_log.StepStatistics | None,
               stop: stop_signals.StopSignals, name: str):
    self.config, self.data, self.stop, self.name = config, data, stop, name
    self.data_parallel = parallel.from_config(config)
    graphdef, host_state = _initial_state(config, task, optimizer,
                                          self.data_parallel.data_axis_name)
    self.gradient_statistics = gradient_statistics if config.log_gradient_statistics else None
    self.train_step, self.eval_step = _compiled_steps(config, task, graphdef, self.data_parallel,
                                                      self.gradient_statistics)
    self.checkpoints = _Checkpoints(config, workdir, data, self.data_parallel, resumable_keys)
    self.compiled = False  # Whether this process has run (and so compiled) the train step.
    self.examples_per_second: float | None = None  # The last epoch's, without the compile.
    try:
      self.progress = self.checkpoints.restore(host_state)
      metrics = metrics_log.MetricsLog(workdir)
      metrics.start(self.progress.history)
      statistics_log = gradient_log.GradientStatisticsLog(workdir)
      statistics_log.start(self.progress.step)
    except BaseException:
      self.checkpoints.checkpointer.close()
      raise
    self.state = self.data_parallel.put_state(host_state)
    self.health = _Health(config, self.data_parallel, self.checkpoints.checkpointer,
                          self.progress.step)
    # Last: nothing after it raises, so fit's clean-up always closes it.
    self.tensorboard = tensorboard_log.TensorBoardLog(
        workdir, start_step=self.progress.step, config_json=self.checkpoints.config_json)
    self.interval_log = _IntervalLog(config, self.data_parallel, self.tensorboard, statistics_log,
                                     self.gradient_statistics)
    self.epoch_log = _EpochLog(metrics, self.tensorboard, name)

  def close(self) -> None:
    """Flushes and closes the event files, and finishes and verifies a save in flight."""
    try:
      self.tensorboard.close()
    finally:
      self.checkpoints.checkpointer.close()

  def save(self, *, force: bool = False) -> None:
    """Checkpoints the state, the epoch's running sums and the history if due (or forced).

    A state that went non-finite is never saved: the health check stops first.
    """
    if not (force or self.checkpoints.checkpointer.due(self.progress.step)):
      return
    self.health.check()
    self.checkpoints.save(self.progress, self.state)

  def train_epoch(self, epoch: int) -> bool:
    """Runs the rest of ``epoch``; ``False`` if :attr:`stop` asked to stop before its last step.

    The state is saved then. Sets :attr:`examples_per_second`, the epoch's
    training throughput. The run's first step compiles the train step, so the
    clock starts after it: the rate is over the epoch's later steps, and
    ``None`` for an epoch with none.
    """
    config, steps_per_epoch, progress = self.config, self.data.steps_per_epoch, self.progress
    first = progress.step - epoch * steps_per_epoch
    show = config.progress_bar and jax.process_index() == 0
    progress_bar = tqdm.tqdm(
        total=steps_per_epoch, initial=first, unit='step', leave=False, disable=not show,
        desc=f'{self.name} epoch {epoch + 1}/{config.num_epochs}',
    )
    self.interval_log.start(progress.step, progress.train_sums)
    start, timed_from = time.perf_counter(), progress.step
    for in_epoch, batch in enumerate(self.data.train_batches(epoch, first), first + 1):
      (self.state, self.health.value), outputs = self.train_step(
          (self.state, self.health.value), self.data_parallel.put_batch(batch))
      self.stop.training_started()
      batch_sums, statistics = outputs if self.gradient_statistics else (outputs, None)
      progress.train_sums = _add_sums(progress.train_sums, batch_sums)
      progress.step += 1
      if not self.compiled:  # Keeps the compile out of the throughput: the clocks start here.
        jax.block_until_ready(self.state)
        self.compiled = True
        start, timed_from = time.perf_counter(), progress.step
        self.interval_log.restart_clock(progress.step, start)
      progress_bar.update()
      if progress.step % config.log_every_steps == 0:
        self._log_interval(statistics, progress_bar)
      stopping = self.stop.check(progress.step)
      if in_epoch < steps_per_epoch:  # Epoch ends are saved after their evaluation.
        self.save(force=stopping)
        if stopping:
          progress_bar.close()
          return False
    self.health.check()
    progress_bar.close()
    self.examples_per_second = None if progress.step == timed_from else (
        (progress.step - timed_from) * config.batch_size / (time.perf_counter() - start))
    return True

  def _log_interval(self, statistics, progress_bar: tqdm.tqdm) -> None:
    if statistics is not None:
      # Written before the finiteness check, so that a stopped run shows which leaves went bad.
      self.interval_log.write_gradient_statistics(self.progress.step, statistics)
    self.health.check()
    self.interval_log.write_means(self.progress.step, self.progress.train_sums, progress_bar)

  def end_epoch(self, epoch: int) -> None:
    """Evaluates, records the epoch and saves."""
    record = {
        'epoch': epoch + 1,
        'step': self.progress.step,
        **_epoch_means(self.data_parallel.get_state(self.progress.train_sums), TRAIN_PREFIX),
        **_epoch_means(_evaluate(self.eval_step, self.state, self.data, self.data_parallel),
                       EVAL_PREFIX),
        'train_examples_per_second': self.examples_per_second,
    }
    self.progress.history.append(record)
    self.epoch_log.write(record)
    self.progress.train_sums = None
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
      for epoch in range(run.progress.step // data.steps_per_epoch, config.num_epochs):
        if not run.train_epoch(epoch):
          break
        run.end_epoch(epoch)
        if stop.stopping:
          break
    finally:
      run.close()  # Also when training stops early: its logs are complete, its save verified.
    if stop.received is not None or stop.stopping:
      raise _interrupted(run, stop)
  return run.progress.history


def summary(record: dict[str, Any]) -> str:
  """``train_loss 2.31, test_loss 2.4, ...``: a record's values but its epoch and step."""
  return ', '.join(f'{key} {_format(value)}' for key, value in record.items()
                   if key not in ('epoch', 'step'))


def _format(value) -> str:
  return 'n/a' if value is None else f'{value:.4g}'


def _interrupted(run: _Run, stop: stop_signals.StopSignals) -> errors.Interrupted:
  checkpointer, step = run.checkpoints.checkpointer, run.progress.step
  saved = checkpointer.steps()
  if saved and saved[0] == step == run.config.num_epochs * run.data.steps_per_epoch:
    return errors.Interrupted(
        f'{stop.describe()} received in the last step: training is complete; checkpoint '
        f'{checkpointer.step_path(step)} is saved and verified.',
        stop.received or signal.SIGTERM)
  if saved and saved[0] == step:
    kept = f'checkpoint {checkpointer.step_path(step)} is saved and verified'
  elif saved:
    kept = f'the newest checkpoint is {checkpointer.step_path(saved[0])} (step {saved[0]})'
  else:
    kept = 'no checkpoint could be saved'
  return errors.Interrupted(
      f'training stopped at step {step} by {stop.describe()}: {kept}; continue with '
      '--config.resume=True.', stop.received or signal.SIGTERM)
