"""BCE + Dice loss against a float64 NumPy reference."""

import numpy as np
import pytest

from examples.unet_segmentation import losses


def _reference(logits, labels, bce_weight, dice_weight, smooth):
  logits, labels = logits.astype(np.float64), labels.astype(np.float64)
  # Numerically stable BCE with logits: max(x, 0) - x y + log(1 + exp(-|x|)).
  bce = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
  probabilities = 1 / (1 + np.exp(-logits))
  axes = (1, 2, 3)
  dice = (2 * (probabilities * labels).sum(axes) + smooth) / (
      probabilities.sum(axes) + labels.sum(axes) + smooth)
  return bce_weight * bce.mean(axes) + dice_weight * (1 - dice)


@pytest.mark.parametrize('bce_weight, dice_weight, smooth', [(1, 1, 1), (0.5, 2, 0.1), (0, 1, 1),
                                                             (1, 0, 1)])
def test_matches_float64_reference(bce_weight, dice_weight, smooth):
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, (4, 6, 5, 1)).astype(np.float32)
  labels = (rng.random((4, 6, 5, 1)) < 0.3).astype(np.float32)
  labels[0] = 0  # An empty target.
  got = losses.bce_dice_loss(logits, labels, bce_weight, dice_weight, smooth)
  np.testing.assert_allclose(got, _reference(logits, labels, bce_weight, dice_weight, smooth),
                             rtol=1e-5, atol=1e-6)


def test_confident_correct_prediction_has_near_zero_loss():
  labels = np.zeros((2, 8, 8, 1), np.float32)
  labels[0, 2:5, 2:5] = 1  # One lesion, one empty image.
  logits = np.where(labels > 0, 30.0, -30.0).astype(np.float32)
  np.testing.assert_allclose(losses.bce_dice_loss(logits, labels), [0, 0], atol=1e-6)


def test_shape_mismatch_raises():
  with pytest.raises(ValueError, match='one shape'):
    losses.bce_dice_loss(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4)))
