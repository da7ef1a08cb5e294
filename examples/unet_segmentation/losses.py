"""Training loss for binary segmentation: a weighted sum of BCE and soft Dice, per image."""

import jax
import jax.numpy as jnp
import optax


def soft_dice_loss(logits: jax.Array, labels: jax.Array, smooth: float = 1.0) -> jax.Array:
  """1 - soft Dice of each image.

  The soft Dice uses sigmoid probabilities in place of hard masks. ``smooth`` is added to the
  numerator and the denominator so that an empty target predicted empty scores a loss near 0
  instead of 0 / 0.

  Args:
    logits: predicted logits, shape (N, H, W, 1).
    labels: binary targets in {0, 1}, same shape.
    smooth: additive smoothing, > 0.

  Returns:
    Losses in [0, 1], shape (N,).
  """
  probabilities = jax.nn.sigmoid(logits.astype(jnp.float32))
  labels = labels.astype(jnp.float32)
  spatial_axes = tuple(range(1, logits.ndim))
  intersection = jnp.sum(probabilities * labels, axis=spatial_axes)
  total = jnp.sum(probabilities, axis=spatial_axes) + jnp.sum(labels, axis=spatial_axes)
  return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


def bce_dice_loss(logits: jax.Array,
                  labels: jax.Array,
                  bce_weight: float = 1.0,
                  dice_weight: float = 1.0,
                  dice_smooth: float = 1.0) -> jax.Array:
  """``bce_weight`` * pixel-mean BCE + ``dice_weight`` * soft Dice loss, per image.

  BCE gives well-scaled per-pixel gradients from the first step; the Dice term counters the
  class imbalance of small lesions on large backgrounds.

  Args:
    logits: predicted logits, shape (N, H, W, 1).
    labels: binary targets in {0, 1}, same shape.
    bce_weight: weight of the binary cross-entropy term (0 turns it off).
    dice_weight: weight of the soft Dice term (0 turns it off).
    dice_smooth: smoothing of the soft Dice, see ``soft_dice_loss``.

  Returns:
    The loss of each image, shape (N,).
  """
  if logits.shape != labels.shape:
    raise ValueError(f'logits {logits.shape} and labels {labels.shape} must have one shape.')
  bce = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels.astype(jnp.float32))
  bce = jnp.mean(bce, axis=tuple(range(1, logits.ndim)))
  return bce_weight * bce + dice_weight * soft_dice_loss(logits, labels, dice_smooth)
