"""The language model :class:`~examples.training.task.Task`: next-byte cross-entropy."""

import math

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from examples.language_model import models
from examples.training.task import MASK
from examples.training.task import Batch
from examples.training.task import Metrics
from examples.training.task import Task


def next_byte_metrics(model: nnx.Module, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Mean next-byte cross-entropy (nats) over the real windows, and the sums of it in nats and bits.

  Every window has ``context`` predicted bytes, so the mean over windows of
  each window's mean is the mean per byte: ``bits_per_byte`` is its sum / ln 2.
  """
  tokens = batch['tokens'].astype(jnp.int32)
  logits = model(tokens[:, :-1])
  nats = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean(axis=-1)
  mask = batch[MASK]
  loss_sum = jnp.sum(nats * mask)
  sums = {'loss': loss_sum, 'bits_per_byte': loss_sum / math.log(2)}
  return loss_sum / jnp.maximum(jnp.sum(mask), 1.0), sums


def language_model_task(model: str, *, context: int, dtype: str = 'float32',
                        scan_layers: bool = True) -> Task:
  """The :class:`Task` that trains ``model`` (:func:`models.create_model`) to predict bytes."""

  def create_model(rngs: nnx.Rngs, data_axis_name: str | None) -> nnx.Module:
    del data_axis_name  # No layer reduces over the batch.
    return models.create_model(model, context=context, dtype=dtype, scan_layers=scan_layers,
                               rngs=rngs)

  return Task(create_model=create_model, train_loss=next_byte_metrics,
              eval_metrics=lambda model, batch: next_byte_metrics(model, batch)[1])
