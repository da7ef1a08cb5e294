"""Trains U-Net models on binary segmentation and evaluates them as the paper's Table 3.

`train_and_evaluate` runs the sweep ``config.models`` x ``config.methods`` x ``config.seeds``
with the shared training core (`examples.training`): parallel modes, orbax checkpoints and
resume, tqdm progress and ``metrics.jsonl`` come from there. Each run then predicts the whole
evaluation split with its final weights and scores every image with `metrics` (F1, IoU,
Tversky, Hausdorff); their means over images are added to the run's last history record as
``test_f1``, ``test_hausdorff``, ... (and ``*_std``), so the sweep report's table shows their
mean ± std over seeds.

Work directory::

  results.json, results.csv      every run's per-epoch history (the last epoch with the final
                                 per-image metrics)
  table.md, curves.png           the Table 3 layout and loss / Dice curves
  predictions_<model>.png        image / ground truth / prediction of each method, same images
  runs/<model>/<method>/seed_<seed>/
    metrics.jsonl, checkpoints/  from the training core
    test_metrics.json            final per-image metrics: mean and std over images
    predictions.npz              predicted masks of the images shown in predictions_<model>.png
"""

import collections
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from examples.training import distributed
from examples.training import loop
from examples.training import methods
from examples.training import parallel
from examples.training import report
from examples.training import sweep
from examples.training import validation
from examples.training.data import ArraySource
from examples.training.data import pad_batch
from examples.training.task import MASK
from examples.training.task import Task
from examples.unet_segmentation import input_pipeline
from examples.unet_segmentation import losses
from examples.unet_segmentation import metrics
from examples.unet_segmentation import models
from examples.unet_segmentation import visualize

IMAGE, LABEL = 'image', 'label'

TABLE_COLUMNS = (
    ('test_f1', 'Test F1', 3),
    ('test_tversky', 'Test Tversky', 3),
    ('test_hausdorff', 'Test Hausdorff Dist', 3),
)
CURVES = (
    ('train_loss', 'train loss', 4),
    ('test_loss', 'test loss', 4),
    ('test_dice', 'test Dice', 3),
)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the flags before any data is loaded or model trained.

  Raises:
    ValueError: naming the bad flag and what it accepts.
  """
  input_pipeline.check_dataset(config.dataset)
  for method in config.methods:
    methods.check_method(method)
  validation.validate(config, seeds=config.seeds)
  if not (math.isfinite(config.lr_decay_factor) and config.lr_decay_factor > 0):
    raise ValueError(f'--config.lr_decay_factor={config.lr_decay_factor} must be a finite '
                     'positive number.')
  if config.lr_decay_every_epochs <= 0:
    raise ValueError(f'--config.lr_decay_every_epochs={config.lr_decay_every_epochs} must be > 0.')
  for model_name in config.models:
    models.check_model(model_name)
    # The model's structure without allocating its weights.
    model = nnx.eval_shape(lambda name=model_name: make_task(config, name).create_model(
        nnx.Rngs(0), None))
    if config.image_size % model.size_divisor:
      raise ValueError(f'--config.image_size={config.image_size} must be a multiple of '
                       f'{model.size_divisor} for {model_name} with its depth.')


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: int) -> optax.Schedule:
  """``config.learning_rate``, multiplied by ``lr_decay_factor`` every ``lr_decay_every_epochs``.

  The first decay happens after ``lr_decay_start_epoch`` epochs; the paper's 50 epochs with
  start 30, every 5 and factor 0.1 give 1e-2 until epoch 30, 1e-3 until 35, ..., 1e-6 from 45.
  """
  boundaries = {
      epoch * steps_per_epoch: config.lr_decay_factor
      for epoch in range(config.lr_decay_start_epoch, config.num_epochs,
                         config.lr_decay_every_epochs)
  }
  return optax.piecewise_constant_schedule(config.learning_rate, boundaries)


def make_optimizer(config: ml_collections.ConfigDict,
                   steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimizer of ``config.method`` with `learning_rate_schedule`."""
  return methods.make_optimizer(config.method, learning_rate_schedule(config, steps_per_epoch))


def _scale_images(images: jax.Array) -> jax.Array:
  return images.astype(jnp.float32) / 255.0


def hard_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-image F1 (Dice) of the thresholded prediction, 1 when both masks are empty."""
  predictions = (logits > 0).astype(jnp.float32)
  labels = labels.astype(jnp.float32)
  axes = tuple(range(1, logits.ndim))
  intersection = jnp.sum(predictions * labels, axis=axes)
  total = jnp.sum(predictions, axis=axes) + jnp.sum(labels, axis=axes)
  return jnp.where(total > 0, 2 * intersection / jnp.maximum(total, 1), 1.0)


def make_task(config: ml_collections.ConfigDict, model_name: str) -> Task:
  """The segmentation task of ``model_name``: BCE + Dice loss, Dice evaluated on device."""
  model_kwargs = (config.model_kwargs[model_name].to_dict()
                  if model_name in config.model_kwargs else {})

  def create_model(rngs: nnx.Rngs, batch_norm_axis_name: str | None) -> nnx.Module:
    return models.create_model(model_name, rngs=rngs, bn_momentum=config.bn_momentum,
                               bn_axis_name=batch_norm_axis_name, **model_kwargs)

  def logits_and_losses(model, batch):
    logits = model(_scale_images(batch[IMAGE]))
    return logits, losses.bce_dice_loss(logits, batch[LABEL], config.bce_weight,
                                        config.dice_weight, config.dice_smooth)

  def train_loss(model, batch):
    _, per_image = logits_and_losses(model, batch)
    loss_sum = jnp.sum(per_image * batch[MASK])
    return loss_sum / jnp.maximum(jnp.sum(batch[MASK]), 1), {'loss': loss_sum}

  def eval_metrics(model, batch):
    logits, per_image = logits_and_losses(model, batch)
    return {'loss': jnp.sum(per_image * batch[MASK]),
            'dice': jnp.sum(hard_dice(logits, batch[LABEL]) * batch[MASK])}

  return Task(create_model=create_model, train_loss=train_loss, eval_metrics=eval_metrics)


def predict(model: nnx.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
  """Binary masks (N, H, W, 1) predicted in evaluation mode; one compilation, padded batches."""
  model.eval()
  graphdef, state = nnx.split(model)

  @jax.jit
  def predict_batch(state, images):
    return nnx.merge(graphdef, state)(_scale_images(images)) > 0

  predictions = []
  for start in range(0, len(images), batch_size):
    batch = pad_batch({IMAGE: images[start:start + batch_size]}, batch_size)
    real = int(batch[MASK].sum())
    predictions.append(np.asarray(predict_batch(state, batch[IMAGE]))[:real])
  return np.concatenate(predictions)


def example_indices(labels: np.ndarray, count: int) -> np.ndarray:
  """``count`` evaluation images with a lesion, evenly spread; the same for every run."""
  with_lesion = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
  candidates = with_lesion if len(with_lesion) >= count else np.arange(len(labels))
  return candidates[np.linspace(0, len(candidates) - 1, min(count, len(candidates))).astype(int)]


def single_run_config(config: ml_collections.ConfigDict, model: str, method: str,
                      seed: int) -> ml_collections.ConfigDict:
  """A copy of the sweep's ``config`` for one run: ``model``, ``method`` and ``seed`` set."""
  run_config = config.copy_and_resolve_references()
  run_config.unlock()
  run_config.update(model=model, method=method, seed=seed)
  return run_config


def resumable_keys(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Fields besides the core's that a resumed run may change (see `loop.check_same_run`).

  The data's location, the sweep's lists, the other models' settings and the final scoring's
  settings: none of them changes what this run trains.
  """
  other_models = tuple(f'model_kwargs.{name}' for name in config.model_kwargs
                       if name != config.model)
  return ('data_dir', 'manual_dir', 'models', 'methods', 'seeds', 'num_example_images',
          'tversky_alpha', 'tversky_beta') + other_models


def train_one(config: ml_collections.ConfigDict, run_dir: str, train: dict[str, np.ndarray],
              evaluation: dict[str, np.ndarray]) -> list[dict[str, Any]]:
  """Trains ``config.model`` with ``config.method`` and ``config.seed``, then scores it.

  Returns:
    The per-epoch history of `loop.fit`; its last record also holds the final per-image metrics
    (``test_f1``, ``test_iou``, ``test_tversky``, ``test_hausdorff`` and their ``_std``).
  """
  num_devices = parallel.device_count(config.parallel, config.platform)
  process_batch_size = distributed.process_batch_size(config.batch_size, num_devices)
  data = ArraySource(train, evaluation, global_batch_size=config.batch_size,
                     process_batch_size=process_batch_size, seed=config.seed)
  task = make_task(config, config.model)
  optimizer = make_optimizer(config, data.steps_per_epoch)
  history = loop.fit(config, run_dir, task, data, optimizer,
                     resumable_keys=resumable_keys(config))

  model = loop.load_model(config, run_dir, task, resumable_keys=resumable_keys(config))
  predictions = predict(model, evaluation[IMAGE], process_batch_size)
  per_image = metrics.per_image_metrics(predictions, evaluation[LABEL], config.tversky_alpha,
                                        config.tversky_beta)
  summary = metrics.summarize(per_image)
  history[-1].update({f'test_{name}': value for name, value in summary.items()})
  if jax.process_index() == 0:
    with open(os.path.join(run_dir, 'test_metrics.json'), 'w') as f:
      json.dump(dict(summary, num_images=len(predictions)), f, indent=1)
    shown = example_indices(evaluation[LABEL], config.num_example_images)
    np.savez_compressed(os.path.join(run_dir, 'predictions.npz'), indices=shown,
                        predictions=predictions[shown])
  logging.info('%s / %s / seed %d: %s', config.model, config.method, config.seed, summary)
  return history


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> list[sweep.RunResult]:
  """Runs the sweep of ``config.models`` x ``config.methods`` x ``config.seeds`` and reports it.

  Args:
    config: See ``configs/default.py``.
    workdir: Receives the sweep's results, report and each run's work directory.

  Returns:
    One `sweep.RunResult` per run.
  """
  train, evaluation = input_pipeline.load(config)
  shown_runs = collections.defaultdict(dict)  # model -> method -> first seed's run directory.

  def run_one(model: str, method: str, seed: int, run_dir: str):
    shown_runs[model].setdefault(method, run_dir)
    return train_one(single_run_config(config, model, method, seed), run_dir, train, evaluation)

  results = sweep.run_sweep(run_one, models=config.models, methods=config.methods,
                            seeds=config.seeds, workdir=workdir)
  if jax.process_index() == 0:
    table, _ = report.write_report(results, workdir, dataset=config.dataset,
                                   table_columns=TABLE_COLUMNS, curves=CURVES)
    logging.info('Results:\n%s', table)
    visualize.write_prediction_grids(shown_runs, workdir, evaluation)
  return results
