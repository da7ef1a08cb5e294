"""A byte-level transformer language model as the study's :class:`Example` record.

:func:`train_and_evaluate` trains one configuration; ``python -m examples.main``
runs it, or the sweep of models x methods x seeds with its table and curves.
The blocks are stacked with ``nnx.scan``; the record reads each parameter's
layer axis from the model (:func:`models.stacked_axes`), so ``znorm`` and
``gc`` take statistics per layer.
"""

from typing import Any

import ml_collections
import optax

from examples.language_model import input_pipeline
from examples.language_model import models
from examples.language_model.configs import default
from examples.language_model.input_pipeline import Dataset
from examples.language_model.task import language_model_task
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
  """``config.model`` over ``config.context`` bytes, with next-byte cross-entropy."""
  del dataset
  return language_model_task(config.model, context=config.context, dtype=config.dtype,
                             scan_layers=config.scan_layers)


def learning_rate(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Linear warmup to ``config.learning_rate``, then cosine decay to a tenth of it."""
  total = max(config.num_epochs * steps_per_epoch, config.warmup_steps + 1)
  return optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, warmup_steps=config.warmup_steps, decay_steps=total,
      end_value=config.learning_rate / 10)


EXAMPLE = Example(
    validate_config=validate_config,
    load_data=input_pipeline.load,
    make_task=make_task,
    table_columns=(('test_bits_per_byte', 'Validation Bits/Byte', 3),
                   ('train_loss', 'Train Loss', 4)),
    curves=(('test_bits_per_byte', 'validation bits per byte', 3),
            ('train_loss', 'train loss (nats)', 4)),
    learning_rate=learning_rate,
    resumable_keys=lambda config: ('data_dir', 'download'),
    stacked_axes=models.stacked_axes,
)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, Any]]:
  """Trains ``config.model`` with ``config.method`` and evaluates it after every epoch.

  Args:
    config: see ``configs/default.py``.
    workdir: receives ``metrics.jsonl``, the event files and ``checkpoints/``.

  Returns:
    Per-epoch records (``train_loss``, ``train_bits_per_byte``, ``test_loss``,
    ``test_bits_per_byte``, ...), as in ``metrics.jsonl``.

  Raises:
    ValueError: naming the first bad flag, before anything is loaded or written.
  """
  fields.check(config, _FIELDS)  # First: the study's checks read its fields as numbers.
  experiment.validate_config(EXAMPLE, config)
  return experiment.train_and_evaluate(EXAMPLE, config, workdir)
