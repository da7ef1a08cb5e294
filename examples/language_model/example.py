"""A byte-level transformer language model as the study's :class:`Example` record.

``examples.study.experiment.train_and_evaluate(EXAMPLE, config, workdir)`` trains one
configuration; ``python -m examples.main`` runs it, or the sweep of models x methods x seeds
with its table and curves.
The blocks are stacked with ``nnx.scan``; the record reads each parameter's
layer axis from the model (:func:`models.stacked_axes`), so ``znorm`` and
``gc`` take statistics per layer.
"""

import ml_collections
import optax

from examples.language_model import input_pipeline
from examples.language_model import models
from examples.language_model.configs import default
from examples.language_model.input_pipeline import Dataset
from examples.language_model.task import language_model_task
from examples.study.example import Example
from examples.training.task import Task


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
    fields=default.FIELDS,
    datasets=input_pipeline.DATASETS,
    check_model=models.check_model,
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
