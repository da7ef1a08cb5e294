"""U-Net segmentation (the paper's Table 3) as the study's :class:`Example` record.

Each run is trained by the shared core, then predicts the whole evaluation split with its final
weights and scores every image with ``metrics`` (F1, IoU, Tversky, Hausdorff); their means over
images join the run's last epoch record as ``test_f1``, ``test_hausdorff``, ... (and ``*_std``),
so the sweep's table shows their mean ± std over seeds.

Work directory of a sweep (``python -m examples.main``)::

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
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from examples.study import sweep
from examples.study.example import Example
from examples.training import parallel
from examples.unet_segmentation import input_pipeline
from examples.unet_segmentation import metrics
from examples.unet_segmentation import models
from examples.unet_segmentation import visualize
from examples.unet_segmentation.configs import default
from examples.unet_segmentation.task import IMAGE
from examples.unet_segmentation.task import LABEL
from examples.unet_segmentation.task import make_task
from examples.unet_segmentation.task import predict


def check_image_size(config: ml_collections.ConfigDict) -> None:
  """Checks that ``config.image_size`` fits every model of the sweep with its depth.

  Raises:
    ValueError: naming ``--config.image_size`` and the multiple it must be.
  """
  for model_name in sweep.grid(config)[0]:
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


def resumable_keys(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The example's fields that a resumed run may change.

  The data's location, the other models' settings and the final scoring's settings: none of
  them changes what this run trains.
  """
  other_models = tuple(f'model_kwargs.{name}' for name in config.model_kwargs
                       if name != config.model)
  return ('data_dir', 'manual_dir', 'num_example_images', 'tversky_alpha',
          'tversky_beta') + other_models


def score(config: ml_collections.ConfigDict, workdir: str, model: nnx.Module,
          dataset: input_pipeline.Dataset) -> dict[str, float]:
  """Predicts the evaluation split with the final ``model`` and scores every image.

  Process 0 writes ``test_metrics.json`` and the shown images' ``predictions.npz``.

  Returns:
    ``test_f1``, ``test_iou``, ``test_tversky``, ``test_hausdorff`` and their ``_std``: means
    and standard deviations over images.
  """
  evaluation = dataset.evaluation
  predictions = predict(model, evaluation[IMAGE], parallel.process_batch_size(config))
  per_image = metrics.per_image_metrics(predictions, evaluation[LABEL], config.tversky_alpha,
                                        config.tversky_beta)
  summary = metrics.summarize(per_image)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'test_metrics.json'), 'w') as f:
      json.dump(dict(summary, num_images=len(predictions)), f, indent=1)
    shown = visualize.example_indices(evaluation[LABEL], config.num_example_images)
    np.savez_compressed(os.path.join(workdir, 'predictions.npz'), indices=shown,
                        predictions=predictions[shown])
  logging.info('%s / %s / seed %d: %s', config.model, config.method, config.seed, summary)
  return {f'test_{name}': value for name, value in summary.items()}


def write_figures(config: ml_collections.ConfigDict, workdir: str,
                  results: Sequence[sweep.RunResult], dataset: input_pipeline.Dataset) -> None:
  """``predictions_<model>.png``: every method's prediction of the same images (first seed)."""
  shown_runs = collections.defaultdict(dict)  # model -> method -> first seed's run directory.
  for result in results:
    shown_runs[result.model].setdefault(
        result.method, sweep.run_directory(workdir, result.model, result.method, result.seed))
  visualize.write_prediction_grids(shown_runs, workdir, dataset.evaluation)


EXAMPLE = Example(
    fields=default.FIELDS,
    datasets=input_pipeline.DATASETS,
    check_model=models.check_model,
    validate_config=check_image_size,
    load_data=input_pipeline.load,
    make_task=lambda config, dataset: make_task(config, config.model),
    table_columns=(
        ('test_f1', 'Test F1', 3),
        ('test_tversky', 'Test Tversky', 3),
        ('test_hausdorff', 'Test Hausdorff Dist', 3),
    ),
    curves=(
        ('train_loss', 'train loss', 4),
        ('test_loss', 'test loss', 4),
        ('test_dice', 'test Dice', 3),
    ),
    learning_rate=learning_rate_schedule,
    resumable_keys=resumable_keys,
    score=score,
    write_figures=write_figures,
)
