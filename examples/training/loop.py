"""The generic training loop: epochs of jitted steps, evaluation, logging, checkpoints."""

import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
import tqdm
from flax import nnx

from examples.training import checkpointing
from examples.training import metrics_log
from examples.training import parallel
from examples.training import steps
from examples.training.task import DataSource
from examples.training.task import Metrics
from examples.training.task import Task
from examples.training.task import means

TRAIN_PREFIX = 'train_'
EVAL_PREFIX = 'test_'


def _metric_sums_to_json(metric_sums) -> dict[str, list]:
  return {name: [value.item(), str(value.dtype)] for name, value in metric_sums.items()}


def _metric_sums_from_json(saved: dict[str, list]) -> dict[str, np.ndarray]:
  return {name: np.asarray(value, dtype) for name, (value, dtype) in saved.items()}


def _initial_state(config, task: Task, optimizer, axis_name: str | None):
  """``nnx.split`` of a fresh ``(model, optimizer)``: the layout checkpoints are saved in."""
  model = task.create_model(nnx.Rngs(config.seed), axis_name)
  return nnx.split((model, nnx.Optimizer(model, optimizer, wrt=nnx.Param)))


class _Run:
  """One training run's placed state, compiled steps and bookkeeping."""

  def __init__(self, config, workdir, task, data, optimizer):
    self.config, self.data = config, data
    self.data_parallel = parallel.make(config.parallel)
    axis_name = self.data_parallel.batch_norm_axis_name
    graphdef, host_state = _initial_state(config, task, optimizer, axis_name)
    self.train_step = self.data_parallel.compile(
        steps.train_step(task, graphdef, axis_name), donate_argnums=(0,)
    )
    self.eval_step = self.data_parallel.compile(
        steps.eval_step(task, graphdef, axis_name), donate_argnums=()
    )

    self.checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every_steps)
    self.log = metrics_log.MetricsLog(workdir)
    self.history: list[dict[str, Any]] = []
    self.step = 0
    self.train_sums: Metrics | None = None  # Running sums of the current epoch, on device.
    leaves, treedef = jax.tree.flatten(host_state)
    latest = self.checkpointer.latest_step()
    if latest is not None and not config.resume:
      self.checkpointer.close()
      raise ValueError(
          f'{workdir} already holds checkpoints (latest step {latest}); pass '
          '--config.resume=True to continue from them, or choose a new --workdir.'
      )
    if latest is not None:
      leaves = self._restore(leaves)
    self.log.rewrite(self.history)
    self.state = self.data_parallel.put_state(jax.tree.unflatten(treedef, leaves))

  def _restore(self, leaves):
    self.step = self.checkpointer.latest_step()
    leaves, meta = self.checkpointer.restore(self.step, [np.asarray(x) for x in leaves])
    self.history = meta['history']
    if meta['train_sums'] is not None:
      self.train_sums = self.data_parallel.put_state(_metric_sums_from_json(meta['train_sums']))
    return leaves

  def save(self, *, force: bool = False) -> None:
    """Checkpoints the state, the epoch's running sums and the history if due (or forced)."""
    if not (force or self.checkpointer.due(self.step)):
      return
    sums = self.train_sums
    sums = None if sums is None else _metric_sums_to_json(self.data_parallel.get_state(sums))
    leaves = jax.tree.leaves(self.data_parallel.get_state(self.state))
    self.checkpointer.save(self.step, leaves, {'history': self.history, 'train_sums': sums})

  def train_epoch(self, epoch: int) -> float:
    """Runs the rest of ``epoch``; returns its training images per second."""
    config, steps_per_epoch = self.config, self.data.steps_per_epoch
    first = self.step - epoch * steps_per_epoch
    show = config.progress_bar and jax.process_index() == 0
    progress = tqdm.tqdm(
        total=steps_per_epoch, initial=first, unit='step', leave=False, disable=not show,
        desc=f'{config.method} seed {config.seed} epoch {epoch + 1}/{config.num_epochs}',
    )
    start = interval_start = time.perf_counter()
    for in_epoch, batch in enumerate(self.data.train_batches(epoch, first), first + 1):
      self.state, batch_sums = self.train_step(self.state, self.data_parallel.put_batch(batch))
      self.train_sums = steps.accumulate(self.train_sums, batch_sums)
      self.step += 1
      progress.update()
      if show and (in_epoch - first) % config.log_every_steps == 0:
        running = means(self.data_parallel.get_state(self.train_sums))  # Syncs with the device.
        now = time.perf_counter()
        images = config.log_every_steps * config.batch_size
        progress.set_postfix(loss=f'{running["loss"]:.4f}',
                             images_per_s=f'{images / (now - interval_start):.0f}')
        interval_start = now
      if in_epoch < steps_per_epoch:  # Epoch ends are saved after their evaluation.
        self.save()
    jax.block_until_ready(self.train_sums)
    progress.close()
    return (steps_per_epoch - first) * config.batch_size / (time.perf_counter() - start)

  def evaluate(self) -> Metrics:
    eval_sums = None
    for batch in self.data.eval_batches():
      batch_sums = self.eval_step(self.state, self.data_parallel.put_batch(batch))
      eval_sums = steps.accumulate(eval_sums, batch_sums)
    return self.data_parallel.get_state(eval_sums)

  def end_epoch(self, epoch: int, images_per_second: float) -> None:
    record = {
        'epoch': epoch + 1,
        'step': self.step,
        **means(self.data_parallel.get_state(self.train_sums), TRAIN_PREFIX),
        **means(self.evaluate(), EVAL_PREFIX),
        'train_images_per_second': images_per_second,
    }
    self.history.append(record)
    self.log.write(record)
    if self.config.progress_bar and jax.process_index() == 0:
      summary = ', '.join(f'{k} {v:.4g}' for k, v in record.items() if k not in ('epoch', 'step'))
      tqdm.tqdm.write(f'{self.config.method} seed {self.config.seed} epoch {epoch + 1}: {summary}')
    self.train_sums = None
    self.save(force=epoch + 1 == self.config.num_epochs)


def fit(
    config: ml_collections.ConfigDict,
    workdir: str,
    task: Task,
    data: DataSource,
    optimizer: optax.GradientTransformation,
) -> list[dict[str, Any]]:
  """Trains ``task``'s model on ``data`` and evaluates it after every epoch.

  Args:
    config: reads ``seed``, ``method`` (for display), ``parallel`` (``sharded``,
      ``pmap`` or ``none``), ``batch_size`` (global), ``num_epochs``,
      ``log_every_steps``, ``checkpoint_every_steps``, ``resume`` and
      ``progress_bar``.
    workdir: receives ``metrics.jsonl`` and ``checkpoints/``.
    task: the model and loss of the task.
    data: process-local batches.
    optimizer: e.g. :func:`examples.training.methods.make_optimizer`.

  Returns:
    One record per epoch: ``epoch``, ``step``, ``train_<metric>`` and
    ``test_<metric>`` means, ``train_images_per_second``. With ``resume`` the
    epochs restored from the checkpoint are included.

  Raises:
    ValueError: if ``workdir`` holds checkpoints and ``config.resume`` is off.
  """
  os.makedirs(workdir, exist_ok=True)
  run = _Run(config, workdir, task, data, optimizer)
  try:
    for epoch in range(run.step // data.steps_per_epoch, config.num_epochs):
      images_per_second = run.train_epoch(epoch)
      run.end_epoch(epoch, images_per_second)
  finally:
    run.checkpointer.close()  # Also finishes a save in flight when training stops early.
  return run.history


def load_model(
    config: ml_collections.ConfigDict,
    workdir: str,
    task: Task,
    optimizer: optax.GradientTransformation,
) -> nnx.Module:
  """The trained model of the latest checkpoint that :func:`fit` wrote into ``workdir``.

  Raises:
    FileNotFoundError: if ``workdir`` holds no checkpoint.
  """
  graphdef, host_state = _initial_state(config, task, optimizer, axis_name=None)
  leaves, treedef = jax.tree.flatten(host_state)
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every_steps)
  try:
    step = checkpointer.latest_step()
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {workdir}.')
    leaves, _ = checkpointer.restore(step, [np.asarray(x) for x in leaves])
  finally:
    checkpointer.close()
  model, _ = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
  return model
