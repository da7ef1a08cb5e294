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

from examples.training import checkpointing, metrics_log, parallel, steps
from examples.training.task import DataSource, Task, means

TRAIN_PREFIX = 'train_'
EVAL_PREFIX = 'test_'


def _metric_sums_to_json(metric_sums) -> dict[str, list]:
  return {name: [value.item(), str(value.dtype)] for name, value in metric_sums.items()}


def _metric_sums_from_json(saved: dict[str, list]) -> dict[str, np.ndarray]:
  return {name: np.asarray(value, dtype) for name, (value, dtype) in saved.items()}


def fit(
    config: ml_collections.ConfigDict,
    workdir: str,
    task: Task,
    data: DataSource,
    optimizer: optax.GradientTransformation,
) -> list[dict[str, Any]]:
  """Trains ``task``'s model on ``data`` and evaluates it after every epoch.

  Args:
    config: reads ``seed``, ``parallel`` (``sharded``, ``pmap`` or ``none``),
      ``batch_size`` (global), ``num_epochs``, ``log_every_steps``,
      ``checkpoint_every_steps``, ``resume`` and ``progress_bar``.
    workdir: receives ``metrics.jsonl`` and ``checkpoints/``.
    task: the model and loss of the task.
    data: process-local batches.
    optimizer: e.g. :func:`examples.training.methods.make_optimizer`.

  Returns:
    One record per epoch: ``epoch``, ``step``, ``train_<metric>`` and
    ``test_<metric>`` means, ``train_images_per_second``. With ``resume`` the
    epochs restored from the checkpoint are included.
  """
  os.makedirs(workdir, exist_ok=True)
  data_parallel = parallel.make(config.parallel)
  axis_name = data_parallel.batch_norm_axis_name
  model = task.create_model(nnx.Rngs(config.seed), axis_name)
  graphdef, host_state = nnx.split((model, nnx.Optimizer(model, optimizer, wrt=nnx.Param)))
  state_leaves, state_treedef = jax.tree.flatten(host_state)
  del model, host_state

  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every_steps)
  log = metrics_log.MetricsLog(workdir)
  history, first_step, train_sums = [], 0, None
  if config.resume and checkpointer.latest_step() is not None:
    first_step = checkpointer.latest_step()
    state_leaves, meta = checkpointer.restore(first_step, [np.asarray(x) for x in state_leaves])
    history = meta['history']
    if meta['train_sums'] is not None:
      train_sums = data_parallel.put_state(_metric_sums_from_json(meta['train_sums']))
  log.rewrite(history)
  state = data_parallel.put_state(jax.tree.unflatten(state_treedef, state_leaves))

  train_step = data_parallel.compile(steps.train_step(task, graphdef, axis_name), donate_argnums=(0,))
  eval_step = data_parallel.compile(steps.eval_step(task, graphdef, axis_name), donate_argnums=())

  def save(step: int, *, force: bool = False):
    if not (force or checkpointer.due(step)):
      return
    sums = None if train_sums is None else _metric_sums_to_json(data_parallel.get_state(train_sums))
    leaves = jax.tree.leaves(data_parallel.get_state(state))
    checkpointer.save(step, leaves, {'history': history, 'train_sums': sums})

  try:
    steps_per_epoch = data.steps_per_epoch
    show_progress = config.progress_bar and jax.process_index() == 0
    for epoch in range(first_step // steps_per_epoch, config.num_epochs):
      start_in_epoch = first_step - epoch * steps_per_epoch if epoch == first_step // steps_per_epoch else 0
      progress = tqdm.tqdm(
          total=steps_per_epoch, initial=start_in_epoch, desc=f'epoch {epoch + 1}/{config.num_epochs}',
          disable=not show_progress, leave=False, unit='step',
      )
      epoch_start = interval_start = time.perf_counter()
      interval_steps = 0
      for step_in_epoch, batch in enumerate(data.train_batches(epoch, start_in_epoch), start_in_epoch):
        state, batch_sums = train_step(state, data_parallel.put_batch(batch))
        train_sums = steps.accumulate(train_sums, batch_sums)
        step = epoch * steps_per_epoch + step_in_epoch + 1
        interval_steps += 1
        progress.update()
        if interval_steps == config.log_every_steps and show_progress:
          running = means(data_parallel.get_state(train_sums))  # The only host sync per interval.
          now = time.perf_counter()
          progress.set_postfix(
              loss=f'{running["loss"]:.4f}',
              images_per_s=f'{interval_steps * config.batch_size / (now - interval_start):.0f}',
          )
          interval_start, interval_steps = now, 0
        if step_in_epoch + 1 < steps_per_epoch:
          save(step)
      progress.close()
      jax.block_until_ready(train_sums)
      train_seconds = time.perf_counter() - epoch_start

      eval_sums = None
      for batch in data.eval_batches():
        eval_sums = steps.accumulate(eval_sums, eval_step(state, data_parallel.put_batch(batch)))
      record = {
          'epoch': epoch + 1,
          'step': (epoch + 1) * steps_per_epoch,
          **means(data_parallel.get_state(train_sums), TRAIN_PREFIX),
          **means(data_parallel.get_state(eval_sums), EVAL_PREFIX),
          'train_images_per_second': (steps_per_epoch - start_in_epoch) * config.batch_size / train_seconds,
      }
      history.append(record)
      log.write(record)
      train_sums = None
      save(record['step'], force=epoch + 1 == config.num_epochs)
  finally:
    checkpointer.close()  # Also finishes a save in flight when training stops early.
  return history
