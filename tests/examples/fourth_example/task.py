"""The fourth example's :class:`~examples.training.task.Task`: the MLP and cross-entropy."""

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from examples.training.task import MASK
from examples.training.task import Batch
from examples.training.task import Metrics
from examples.training.task import Task
from tests.examples.fourth_example import models


def _metrics(model: nnx.Module, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Mean cross-entropy over the real examples, and the sums of loss and accuracy."""
  logits = model(batch['pixels'])
  mask = batch[MASK]
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
  sums = {'loss': jnp.sum(losses * mask), 'accuracy': jnp.sum(correct * mask)}
  return sums['loss'] / jnp.maximum(jnp.sum(mask), 1.0), sums


def make_task(config: ml_collections.ConfigDict, dataset) -> Task:
  """``config.model`` with ``config.hidden`` units."""
  del dataset  # The pixels and classes are fixed.

  def create_model(rngs: nnx.Rngs, data_axis_name: str | None) -> nnx.Module:
    del data_axis_name  # No layer reduces over the batch.
    return models.create_model(config.model, hidden=config.hidden, rngs=rngs)

  return Task(create_model=create_model, train_loss=_metrics,
              eval_metrics=lambda model, batch: _metrics(model, batch)[1])
