"""Trains U-Net models on binary segmentation and evaluates them as the paper's Table 3.

``train_and_evaluate`` runs the sweep ``config.sweep.models`` x ``methods`` x ``seeds`` of the
task in ``task`` with the shared training core (``examples.training``): parallel modes, orbax
checkpoints and resume, tqdm progress and ``metrics.jsonl`` come from there. Each run then
predicts the whole evaluation split with its final weights and scores every image with
``metrics`` (F1, IoU,
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
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from examples.training import datasets
from examples.training import loop
from examples.training import methods
from examples.training import parallel
from examples.training import report
from examples.training import sweep
from examples.training import validation
from examples.training.data import ArraySource
from examples.unet_segmentation import input_pipeline
from examples.unet_segmentation import metrics
from examples.unet_segmentation import models
from examples.unet_segmentation import visualize
from examples.unet_segmentation.task import IMAGE
from examples.unet_segmentation.task import LABEL
from examples.unet_segmentation.task import make_task
from examples.unet_segmentation.task import predict

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
  datasets.check_dataset(config.dataset, input_pipeline.DATASETS)
  methods.check_methods(config)
  validation.validate(config)
  if not (math.isfinite(config.lr_decay_factor) and config.lr_decay_factor > 0):
    raise ValueError(f'--config.lr_decay_factor={config.lr_decay_factor} must be a finite '
                     'positive number.')
  if config.lr_decay_every_epochs <= 0:
    raise ValueError(f'--config.lr_decay_every_epochs={config.lr_decay_every_epochs} must be > 0.')
  model_names, _, _ = sweep.grid(config)
  for model_name in model_names:
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
  """The optimizer of ``config.method`` with ``learning_rate_schedule``."""
  return methods.make_optimizer(config.method, learning_rate_schedule(config, steps_per_epoch))


def resumable_keys(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Fields besides the core's that a resumed run may change (see ``loop.check_same_run``).

  The data's location, the sweep's lists, the other models' settings and the final scoring's
  settings: none of them changes what this run trains.
  """
  other_models = tuple(f'model_kwargs.{name}' for name in config.model_kwargs
                       if name != config.model)
  return ('data_dir', 'manual_dir', 'sweep', 'num_example_images', 'tversky_alpha',
          'tversky_beta') + other_models


def train_one(config: ml_collections.ConfigDict, run_dir: str, train: dict[str, np.ndarray],
              evaluation: dict[str, np.ndarray]) -> list[dict[str, Any]]:
  """Trains ``config.model`` with ``config.method`` and ``config.seed``, then scores it.

  Returns:
    The per-epoch history of ``loop.fit``; its last record also holds the final per-image metrics
    (``test_f1``, ``test_iou``, ``test_tversky``, ``test_hausdorff`` and their ``_std``).
  """
  process_batch_size = parallel.process_batch_size(config)
  data = ArraySource(train, evaluation, global_batch_size=config.batch_size,
                     process_batch_size=process_batch_size, seed=config.seed)
  task = make_task(config, config.model)
  optimizer = make_optimizer(config, data.steps_per_epoch)
  history = loop.fit(config, run_dir, task, data, optimizer,
                     resumable_keys=resumable_keys(config),
                     gradient_transform=methods.gradient_transform(config.method),
                     name=f'{config.model} {config.method} seed {config.seed}')

  model = loop.load_model(config, run_dir, task, resumable_keys=resumable_keys(config))
  predictions = predict(model, evaluation[IMAGE], process_batch_size)
  per_image = metrics.per_image_metrics(predictions, evaluation[LABEL], config.tversky_alpha,
                                        config.tversky_beta)
  summary = metrics.summarize(per_image)
  history[-1].update({f'test_{name}': value for name, value in summary.items()})
  if jax.process_index() == 0:
    with open(os.path.join(run_dir, 'test_metrics.json'), 'w') as f:
      json.dump(dict(summary, num_images=len(predictions)), f, indent=1)
    shown = visualize.example_indices(evaluation[LABEL], config.num_example_images)
    np.savez_compressed(os.path.join(run_dir, 'predictions.npz'), indices=shown,
                        predictions=predictions[shown])
  logging.info('%s / %s / seed %d: %s', config.model, config.method, config.seed, summary)
  return history


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> list[sweep.RunResult]:
  """Runs the sweep of ``config.sweep`` (see ``sweep.grid``) and reports it.

  Args:
    config: see ``configs/default.py``.
    workdir: receives the sweep's results, report and each run's work directory.

  Returns:
    One ``sweep.RunResult`` per run.
  """
  train, evaluation = input_pipeline.load(config)
  shown_runs = collections.defaultdict(dict)  # model -> method -> first seed's run directory.

  def run_one(run_config: ml_collections.ConfigDict, run_dir: str):
    shown_runs[run_config.model].setdefault(run_config.method, run_dir)
    return train_one(run_config, run_dir, train, evaluation)

  results = sweep.run_sweep(run_one, config, workdir)
  if jax.process_index() == 0:
    table, _ = report.write_report(results, workdir, dataset=config.dataset,
                                   table_columns=TABLE_COLUMNS, curves=CURVES)
    logging.info('Results:\n%s', table)
    visualize.write_prediction_grids(shown_runs, workdir, evaluation)
  return results
