"""Training loss for binary segmentation: a weighted sum of BCE and soft Dice."""

import jax
import jax.numpy as jnp
import optax


def soft_dice_loss(logits: jax.Array, masks: jax.Array, smooth: float = 1.0) -> jax.Array:
  """1 - soft Dice per image, averaged over the batch.

  The soft Dice uses sigmoid probabilities in place of hard masks. ``smooth`` is added to the
  numerator and the denominator so that an empty target predicted empty scores a loss of 0
  instead of 0 / 0.

  Args:
    logits: Predicted logits, shape (N, H, W, 1).
    masks: Binary targets in {0, 1}, same shape.
    smooth: Additive smoothing, > 0.

  Returns:
    A scalar loss in [0, 1].
  """
  probabilities = jax.nn.sigmoid(logits.astype(jnp.float32))
  masks = masks.astype(jnp.float32)
  spatial_axes = tuple(range(1, logits.ndim))
  intersection = jnp.sum(probabilities * masks, axis=spatial_axes)
  total = jnp.sum(probabilities, axis=spatial_axes) + jnp.sum(masks, axis=spatial_axes)
  return jnp.mean(1.0 - (2.0 * intersection + smooth) / (total + smooth))


def bce_dice_loss(logits: jax.Array,
                  masks: jax.Array,
                  bce_weight: float = 1.0,
                  dice_weight: float = 1.0,
                  dice_smooth: float = 1.0) -> jax.Array:
  """``bce_weight`` * mean pixel BCE + ``dice_weight`` * soft Dice loss.

  BCE gives well-scaled per-pixel gradients from the first step; the Dice term counters the
  class imbalance of small lesions on large backgrounds.

  Args:
    logits: Predicted logits, shape (N, H, W, 1).
    masks: Binary targets in {0, 1}, same shape.
    bce_weight: Weight of the binary cross-entropy term (0 turns it off).
    dice_weight: Weight of the soft Dice term (0 turns it off).
    dice_smooth: Smoothing of the soft Dice, see `soft_dice_loss`.

  Returns:
    The scalar loss.
  """
  if logits.shape != masks.shape:
    raise ValueError(f'logits {logits.shape} and masks {masks.shape} must have one shape.')
  bce = jnp.mean(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32),
                                                    masks.astype(jnp.float32)))
  return bce_weight * bce + dice_weight * soft_dice_loss(logits, masks, dice_smooth)
