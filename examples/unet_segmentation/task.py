"""The segmentation task: a U-Net from ``models``, BCE + Dice loss, Dice on device, prediction."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from examples.training.data import pad_batch
from examples.training.task import MASK
from examples.training.task import Task
from examples.unet_segmentation import losses
from examples.unet_segmentation import models

IMAGE, LABEL = 'image', 'label'


def scale_images(images: jax.Array) -> jax.Array:
  """uint8 images as the model's float32 input in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def hard_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-image F1 (Dice) of the thresholded prediction, 1 when both masks are empty."""
  predictions = (logits > 0).astype(jnp.float32)
  labels = labels.astype(jnp.float32)
  axes = tuple(range(1, logits.ndim))
  intersection = jnp.sum(predictions * labels, axis=axes)
  total = jnp.sum(predictions, axis=axes) + jnp.sum(labels, axis=axes)
  return jnp.where(total > 0, 2 * intersection / jnp.maximum(total, 1), 1.0)


def make_task(config: ml_collections.ConfigDict, model_name: str) -> Task:
  """The segmentation task of ``model_name``: BCE + Dice loss, Dice evaluated on device."""
  model_kwargs = (config.model_kwargs[model_name].to_dict()
                  if model_name in config.model_kwargs else {})

  def create_model(rngs: nnx.Rngs, data_axis_name: str | None) -> nnx.Module:
    return models.create_model(model_name, rngs=rngs, bn_momentum=config.bn_momentum,
                               batch_norm_axis_name=data_axis_name, **model_kwargs)

  def logits_and_losses(model, batch):
    logits = model(scale_images(batch[IMAGE]))
    return logits, losses.bce_dice_loss(logits, batch[LABEL], config.bce_weight,
                                        config.dice_weight, config.dice_smooth)

  def train_loss(model, batch):
    _, per_image = logits_and_losses(model, batch)
    loss_sum = jnp.sum(per_image * batch[MASK])
    return loss_sum / jnp.maximum(jnp.sum(batch[MASK]), 1), {'loss': loss_sum}

  def eval_metrics(model, batch):
    logits, per_image = logits_and_losses(model, batch)
    return {'loss': jnp.sum(per_image * batch[MASK]),
            'dice': jnp.sum(hard_dice(logits, batch[LABEL]) * batch[MASK])}

  return Task(create_model=create_model, train_loss=train_loss, eval_metrics=eval_metrics)


def predict(model: nnx.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
  """Binary masks (N, H, W, 1) predicted in evaluation mode; one compilation, padded batches."""
  model.eval()
  graphdef, state = nnx.split(model)

  @jax.jit
  def predict_batch(state, images):
    return nnx.merge(graphdef, state)(scale_images(images)) > 0

  predictions = []
  for start in range(0, len(images), batch_size):
    batch = pad_batch({IMAGE: images[start:start + batch_size]}, batch_size)
    real = int(batch[MASK].sum())
    predictions.append(np.asarray(predict_batch(state, batch[IMAGE]))[:real])
  return np.concatenate(predictions)
