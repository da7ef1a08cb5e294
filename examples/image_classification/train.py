"""Image classification (the paper's Tables 1 and 2) as the study's :class:`Example` record.

:func:`train_and_evaluate` trains one configuration; ``python -m examples.main``
runs it, or the sweep of models x methods x seeds with its table and curves.
"""

from typing import Any

import ml_collections

from examples.image_classification import input_pipeline
from examples.image_classification import models
from examples.image_classification.configs import default
from examples.image_classification.preprocessing import Dataset
from examples.image_classification.task import classification_task
from examples.study import defaults as study_defaults
from examples.study import experiment
from examples.study import sweep
from examples.study.example import Example
from examples.training import datasets
from examples.training import defaults as training_defaults
from examples.training import fields
from examples.training.task import Task

_FIELDS = {**training_defaults.FIELDS, **study_defaults.FIELDS, **default.FIELDS}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field against its declaration, then the dataset and every model of the sweep.

  Raises:
    ValueError: naming the bad flag and what it accepts.
  """
  fields.check(config, _FIELDS)
  datasets.check_dataset(config.dataset, input_pipeline.DATASETS)
  fields.check_names('--config.sweep.models' if config.sweep.models else '--config.model',
                     sweep.grid(config)[0], models.check_model, 'model')


def make_task(config: ml_collections.ConfigDict, dataset: Dataset) -> Task:
  """``config.model`` for the dataset's classes and channels, with cross-entropy."""
  return classification_task(
      config.model, num_classes=dataset.num_classes, in_channels=dataset.image_shape[-1],
      width=config.width, skip_connections=config.skip_connections, bn_momentum=config.bn_momentum,
  )


EXAMPLE = Example(
    validate_config=validate_config,
    load_data=input_pipeline.load,
    make_task=make_task,
    table_columns=(('test_accuracy', 'Test Accuracy', 3), ('train_loss', 'Train Loss', 4)),
    curves=(('test_accuracy', 'test accuracy', 3), ('train_loss', 'train loss', 4)),
    resumable_keys=lambda config: ('data_dir', 'download'),
)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, Any]]:
  """Trains ``config.model`` with ``config.method`` and evaluates it after every epoch.

  Args:
    config: see ``configs/default.py``.
    workdir: receives ``metrics.jsonl``, the event files and ``checkpoints/``.

  Returns:
    Per-epoch records (``train_loss``, ``train_accuracy``, ``test_loss``,
    ``test_accuracy``, ...), as in ``metrics.jsonl``.

  Raises:
    ValueError: naming the first bad flag, before anything is loaded or written.
  """
  fields.check(config, _FIELDS)  # First: the study's checks read its fields as numbers.
  experiment.validate_config(EXAMPLE, config)
  return experiment.train_and_evaluate(EXAMPLE, config, workdir)
