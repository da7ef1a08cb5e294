"""The classification :class:`~examples.training.task.Task`: a ResNet and cross-entropy."""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from examples.image_classification import models
from examples.training.task import MASK
from examples.training.task import Batch
from examples.training.task import Metrics
from examples.training.task import Task


def classification_metrics(logits: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Mean cross-entropy over the real examples, and the sums of loss and accuracy."""
  mask = batch[MASK]
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), batch['label']
  )
  correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
  sums = {'loss': jnp.sum(losses * mask), 'accuracy': jnp.sum(correct * mask)}
  return sums['loss'] / jnp.maximum(jnp.sum(mask), 1.0), sums


def classification_task(model: str, *, num_classes: int, in_channels: int,
                        width: int | None = None, skip_connections: bool = True,
                        bn_momentum: float = 0.9) -> Task:
  """The :class:`Task` that trains ``model`` (:func:`models.create_model`) on labelled images."""

  def create_model(rngs: nnx.Rngs, data_axis_name: str | None) -> nnx.Module:
    return models.create_model(
        model, num_classes=num_classes, in_channels=in_channels, width=width,
        skip_connections=skip_connections, bn_momentum=bn_momentum,
        batch_norm_axis_name=data_axis_name, rngs=rngs,
    )

  return Task(
      create_model=create_model,
      train_loss=lambda model, batch: classification_metrics(model(batch['image']), batch),
      eval_metrics=lambda model, batch: classification_metrics(model(batch['image']), batch)[1],
  )
