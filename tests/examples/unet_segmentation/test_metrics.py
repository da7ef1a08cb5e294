"""Segmentation metrics against hand-made masks with known answers."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import directed_hausdorff

from examples.unet_segmentation import metrics


def _mask(shape, *boxes):
  """A boolean mask with the given (row_start, row_stop, col_start, col_stop) boxes set."""
  mask = np.zeros(shape, bool)
  for row_start, row_stop, col_start, col_stop in boxes:
    mask[row_start:row_stop, col_start:col_stop] = True
  return mask


def test_single_pixels_at_known_distance():
  prediction = _mask((10, 10), (2, 3, 3, 4))  # Pixel (2, 3).
  target = _mask((10, 10), (5, 6, 7, 8))  # Pixel (5, 7): 3-4-5 triangle.
  assert metrics.hausdorff_distance(prediction, target) == pytest.approx(5.0)
  assert metrics.f1_score(prediction, target) == 0.0
  assert metrics.iou_score(prediction, target) == 0.0
  assert metrics.tversky_index(prediction, target) == 0.0


def test_square_against_shifted_square():
  target = _mask((12, 12), (2, 6, 2, 6))  # 4 x 4 square.
  prediction = _mask((12, 12), (3, 7, 4, 8))  # Shifted by (1, 2): 3 x 2 = 6 pixels overlap.
  assert metrics.f1_score(prediction, target) == pytest.approx(2 * 6 / (16 + 16))
  assert metrics.iou_score(prediction, target) == pytest.approx(6 / (16 + 16 - 6))
  # The far corner of each square is (1, 2) away from the other square.
  assert metrics.hausdorff_distance(prediction, target) == pytest.approx(math.sqrt(5))


def test_square_inside_square_weighs_false_negatives_by_beta():
  target = _mask((8, 8), (2, 6, 2, 6))  # 16 pixels.
  prediction = _mask((8, 8), (3, 5, 3, 5))  # Its 4 central pixels: TP 4, FP 0, FN 12.
  assert metrics.f1_score(prediction, target) == pytest.approx(8 / 20)
  assert metrics.tversky_index(prediction, target) == pytest.approx(4 / (4 + 0.7 * 12))
  assert metrics.tversky_index(prediction, target, alpha=0.9, beta=0.1) == pytest.approx(
      4 / (4 + 0.1 * 12))
  assert metrics.tversky_index(prediction, target, alpha=0.5, beta=0.5) == pytest.approx(
      metrics.f1_score(prediction, target))
  # The target's corners are one diagonal step from the inner square.
  assert metrics.hausdorff_distance(prediction, target) == pytest.approx(math.sqrt(2))


def test_identical_masks_are_perfect():
  mask = _mask((9, 9), (1, 4, 2, 8), (6, 8, 0, 3))
  assert metrics.f1_score(mask, mask) == 1.0
  assert metrics.iou_score(mask, mask) == 1.0
  assert metrics.tversky_index(mask, mask) == 1.0
  assert metrics.hausdorff_distance(mask, mask) == 0.0


def test_both_masks_empty_is_a_perfect_score():
  empty = np.zeros((8, 10), bool)
  assert metrics.f1_score(empty, empty) == 1.0
  assert metrics.iou_score(empty, empty) == 1.0
  assert metrics.tversky_index(empty, empty) == 1.0
  assert metrics.hausdorff_distance(empty, empty) == 0.0


@pytest.mark.parametrize('empty_side', ['prediction', 'target'])
def test_exactly_one_empty_mask_is_the_worst_score(empty_side):
  empty = np.zeros((8, 10), bool)
  lesion = _mask((8, 10), (3, 4, 3, 4))
  prediction, target = (empty, lesion) if empty_side == 'prediction' else (lesion, empty)
  assert metrics.f1_score(prediction, target) == 0.0
  assert metrics.iou_score(prediction, target) == 0.0
  assert metrics.tversky_index(prediction, target) == 0.0
  assert metrics.hausdorff_distance(prediction, target) == pytest.approx(math.hypot(7, 9))


def test_hausdorff_matches_scipy_point_set_reference_on_random_masks():
  rng = np.random.default_rng(0)
  for _ in range(5):
    prediction = rng.random((16, 20)) < 0.1
    target = rng.random((16, 20)) < 0.1
    points_p, points_t = np.argwhere(prediction), np.argwhere(target)
    expected = max(directed_hausdorff(points_p, points_t)[0],
                   directed_hausdorff(points_t, points_p)[0])
    assert metrics.hausdorff_distance(prediction, target) == pytest.approx(expected)


def test_per_image_metrics_and_summary():
  target = np.stack([_mask((8, 8), (2, 6, 2, 6)), np.zeros((8, 8), bool)])[..., None]
  prediction = np.stack([_mask((8, 8), (3, 5, 3, 5)), np.zeros((8, 8), bool)])[..., None]
  per_image = metrics.per_image_metrics(prediction, target)
  np.testing.assert_allclose(per_image['f1'], [0.4, 1.0])
  np.testing.assert_allclose(per_image['hausdorff'], [math.sqrt(2), 0.0])
  summary = metrics.summarize(per_image)
  assert summary['f1'] == pytest.approx(0.7)
  assert summary['f1_std'] == pytest.approx(0.3)
  assert set(summary) == {f'{n}{s}' for n in metrics.METRIC_NAMES for s in ('', '_std')}


def test_mismatched_shapes_raise():
  with pytest.raises(ValueError, match='shape'):
    metrics.f1_score(np.zeros((4, 4)), np.zeros((4, 5)))
  with pytest.raises(ValueError, match='alpha'):
    metrics.tversky_index(np.zeros((4, 4)), np.zeros((4, 4)), alpha=-1)
