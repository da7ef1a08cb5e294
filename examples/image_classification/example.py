"""Image classification (the paper's Tables 1 and 2) as the study's :class:`Example` record.

``examples.study.experiment.train_and_evaluate(EXAMPLE, config, workdir)`` trains one
configuration; ``python -m examples.main`` runs it, or the sweep of models x methods x seeds
with its table and curves.
"""

import ml_collections

from examples.image_classification import input_pipeline
from examples.image_classification import models
from examples.image_classification.configs import default
from examples.image_classification.preprocessing import Dataset
from examples.image_classification.task import classification_task
from examples.study.example import Example
from examples.training.task import Task


def make_task(config: ml_collections.ConfigDict, dataset: Dataset) -> Task:
  """``config.model`` for the dataset's classes and channels, with cross-entropy."""
  return classification_task(
      config.model, num_classes=dataset.num_classes, in_channels=dataset.image_shape[-1],
      width=config.width, skip_connections=config.skip_connections, bn_momentum=config.bn_momentum,
  )


EXAMPLE = Example(
    fields=default.FIELDS,
    datasets=input_pipeline.DATASETS,
    check_model=models.check_model,
    load_data=input_pipeline.load,
    make_task=make_task,
    table_columns=(('test_accuracy', 'Test Accuracy', 3), ('train_loss', 'Train Loss', 4)),
    curves=(('test_accuracy', 'test accuracy', 3), ('train_loss', 'train loss', 4)),
    resumable_keys=lambda config: ('data_dir', 'download'),
)
