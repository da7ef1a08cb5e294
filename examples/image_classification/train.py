"""ResNet image classification on the shared training core.

:func:`train_and_evaluate` runs one configuration; :func:`run_sweep` runs the
paper's models x methods x seeds comparison and writes its table and curves.
"""

from typing import Any

import ml_collections

from examples.image_classification import input_pipeline
from examples.image_classification import models
from examples.image_classification.task import classification_task
from examples.training import distributed
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
  input_pipeline.check_dataset(config.dataset)
  for model in config.sweep.models or (config.model,):
    models.check_model(model)
  for method in config.sweep.methods or (config.method,):
    methods.check_method(method)
  validation.validate(config, seeds=config.sweep.seeds)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, Any]]:
  """Trains ``config.model`` with ``config.method`` and evaluates after every epoch.

  Args:
    config: see ``configs/default.py``.
    workdir: receives ``metrics.jsonl`` and ``checkpoints/``.

  Returns:
    Per-epoch records (``train_loss``, ``train_accuracy``, ``test_loss``,
    ``test_accuracy``, ...), as in ``metrics.jsonl``.
  """
  num_devices = parallel.device_count(config.parallel, config.platform)
  process_batch_size = distributed.process_batch_size(config.batch_size, num_devices)
  dataset = input_pipeline.load(config, process_batch_size)
  task = classification_task(
      config.model, num_classes=dataset.num_classes, in_channels=dataset.image_shape[-1],
      width=config.width, skip_connections=config.skip_connections, bn_momentum=config.bn_momentum,
  )
  optimizer = methods.make_optimizer(config.method, config.learning_rate)
  return loop.fit(config, workdir, task, dataset.source, optimizer, resumable_keys=RESUMABLE_KEYS)


def run_sweep(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, str]:
  """Runs ``config.sweep`` and writes results, ``table.md`` and ``curves.png`` to ``workdir``.

  Returns:
    The markdown table and the path of the curves PNG.
  """

  def run_one(model: str, method: str, seed: int, run_dir: str):
    run_config = config.copy_and_resolve_references()
    run_config.model, run_config.method, run_config.seed = model, method, seed
    return train_and_evaluate(run_config, run_dir)

  results = sweep.run_sweep(
      run_one,
      models=config.sweep.models or (config.model,),
      methods=config.sweep.methods,
      seeds=config.sweep.seeds or (config.seed,),
      workdir=workdir,
  )
  return report.write_report(results, workdir, dataset=config.dataset,
                             table_columns=TABLE_COLUMNS, curves=CURVES)
