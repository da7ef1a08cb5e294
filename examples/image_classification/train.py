"""Image classification on the shared training core.

:func:`train_and_evaluate` runs one configuration; :func:`run_sweep` runs the
paper's models x methods x seeds comparison and writes its table and curves.
"""

from typing import Any

import ml_collections

from examples.image_classification import input_pipeline
from examples.image_classification import models
from examples.image_classification.task import classification_task
from examples.training import datasets
from examples.training import loop
from examples.training import methods
from examples.training import parallel
from examples.training import report
from examples.training import sweep
from examples.training import validation

TABLE_COLUMNS = (('test_accuracy', 'Test Accuracy', 3), ('train_loss', 'Train Loss', 4))
CURVES = (('test_accuracy', 'test accuracy', 3), ('train_loss', 'train loss', 4))
RESUMABLE_KEYS = ('data_dir', 'download', 'compilation_cache', 'sweep')
"""Fields besides the core's (`loop.RESUMABLE_KEYS`) that a resumed run may change."""


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the flags before anything runs.

  Raises:
    ValueError: naming the bad flag and its valid values.
  """
  datasets.check_dataset(config.dataset, input_pipeline.DATASETS)
  for model in config.sweep.models or (config.model,):
    models.check_model(model)
  methods.check_methods(config)
  validation.validate(config)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, Any]]:
  """Trains ``config.model`` with ``config.method`` and evaluates after every epoch.

  Args:
    config: see ``configs/default.py``.
    workdir: receives ``metrics.jsonl`` and ``checkpoints/``.

  Returns:
    Per-epoch records (``train_loss``, ``train_accuracy``, ``test_loss``,
    ``test_accuracy``, ...), as in ``metrics.jsonl``.
  """
  dataset = input_pipeline.load(config, parallel.process_batch_size(config))
  task = classification_task(
      config.model, num_classes=dataset.num_classes, in_channels=dataset.image_shape[-1],
      width=config.width, skip_connections=config.skip_connections, bn_momentum=config.bn_momentum,
  )
  optimizer = methods.make_optimizer(config.method, config.learning_rate)
  return loop.fit(config, workdir, task, dataset.source, optimizer, resumable_keys=RESUMABLE_KEYS,
                  gradient_transform=methods.gradient_transform(config.method),
                  name=f'{config.model} {config.method} seed {config.seed}')


def run_sweep(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, str]:
  """Runs ``config.sweep`` and writes results, ``table.md`` and ``curves.png`` to ``workdir``.

  Returns:
    The markdown table and the path of the curves PNG.
  """

  results = sweep.run_sweep(train_and_evaluate, config, workdir)
  return report.write_report(results, workdir, dataset=config.dataset,
                             table_columns=TABLE_COLUMNS, curves=CURVES)
