"""Per-image segmentation metrics of the paper's Table 3: F1 (Dice), IoU, Tversky, Hausdorff.

All metrics compare one binary predicted mask with one binary ground-truth mask; dataset scores
are the mean (and standard deviation) of the per-image scores, as in the paper, so that small
lesions weigh as much as large ones. They run on the host in float64 NumPy, with SciPy's exact
Euclidean distance transform for the Hausdorff distance.

Empty masks (real MRI has many slices without a lesion) follow these conventions:

* Both masks empty: the prediction is perfect, so F1 = IoU = Tversky = 1 and Hausdorff = 0.
* Exactly one mask empty (a missed or a hallucinated lesion): F1 = IoU = Tversky = 0 (their
  formulas give 0 there), and the Hausdorff distance, undefined for an empty set, is the image
  diagonal ``sqrt((H - 1)**2 + (W - 1)**2)``, the largest distance two pixels of the image can
  have. This keeps such images in the average with the worst possible score instead of dropping
  them or making the mean infinite.
"""

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

# Tversky weights of Salehi et al. (2017), common for lesion segmentation: false negatives
# (missed lesion) cost more than false positives. alpha = beta = 0.5 gives F1.
DEFAULT_TVERSKY_ALPHA = 0.3
DEFAULT_TVERSKY_BETA = 0.7

METRIC_NAMES = ('f1', 'iou', 'tversky', 'hausdorff')


def _as_binary_masks(prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Checks that two masks have one 2-D shape and returns them as boolean arrays."""
  prediction = np.asarray(prediction)
  target = np.asarray(target)
  if prediction.ndim == 3 and prediction.shape[-1] == 1:
    prediction = prediction[..., 0]
  if target.ndim == 3 and target.shape[-1] == 1:
    target = target[..., 0]
  if prediction.shape != target.shape or prediction.ndim != 2:
    raise ValueError(
        'Expected two masks of one shape (H, W) or (H, W, 1), got prediction '
        f'{prediction.shape} and target {target.shape}.')
  return prediction.astype(bool), target.astype(bool)


def _confusion_counts(prediction: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
  true_positives = float(np.sum(prediction & target))
  false_positives = float(np.sum(prediction & ~target))
  false_negatives = float(np.sum(~prediction & target))
  return true_positives, false_positives, false_negatives


def f1_score(prediction: np.ndarray, target: np.ndarray) -> float:
  """F1 score (Dice coefficient) 2 TP / (2 TP + FP + FN); 1 when both masks are empty."""
  prediction, target = _as_binary_masks(prediction, target)
  tp, fp, fn = _confusion_counts(prediction, target)
  denominator = 2 * tp + fp + fn
  return 1.0 if denominator == 0 else 2 * tp / denominator


def iou_score(prediction: np.ndarray, target: np.ndarray) -> float:
  """Intersection over union TP / (TP + FP + FN); 1 when both masks are empty."""
  prediction, target = _as_binary_masks(prediction, target)
  tp, fp, fn = _confusion_counts(prediction, target)
  denominator = tp + fp + fn
  return 1.0 if denominator == 0 else tp / denominator


def tversky_index(prediction: np.ndarray,
                  target: np.ndarray,
                  alpha: float = DEFAULT_TVERSKY_ALPHA,
                  beta: float = DEFAULT_TVERSKY_BETA) -> float:
  """Tversky index TP / (TP + alpha FP + beta FN); 1 when both masks are empty.

  Args:
    prediction: predicted binary mask, shape (H, W) or (H, W, 1).
    target: ground-truth binary mask of the same shape.
    alpha: weight of false positives (default 0.3).
    beta: weight of false negatives (default 0.7). alpha = beta = 0.5 gives the F1 score.

  Returns:
    The index in [0, 1].
  """
  if alpha < 0 or beta < 0:
    raise ValueError(f'Tversky alpha and beta must be >= 0, got alpha={alpha}, beta={beta}.')
  prediction, target = _as_binary_masks(prediction, target)
  tp, fp, fn = _confusion_counts(prediction, target)
  denominator = tp + alpha * fp + beta * fn
  if denominator == 0:  # Both masks empty, or only weight-0 errors on an empty target.
    return 1.0 if tp + fp + fn == 0 else 0.0
  return tp / denominator


def hausdorff_distance(prediction: np.ndarray, target: np.ndarray) -> float:
  """Symmetric Hausdorff distance in pixels between the foreground pixel sets of two masks.

  max(max_{p in P} min_{t in T} |p - t|, max_{t in T} min_{p in P} |t - p|), Euclidean, computed
  exactly with SciPy's distance transform. Both masks empty gives 0; exactly one empty gives the
  image diagonal (see the module docstring).

  Args:
    prediction: predicted binary mask, shape (H, W) or (H, W, 1).
    target: ground-truth binary mask of the same shape.

  Returns:
    The distance in pixels.
  """
  prediction, target = _as_binary_masks(prediction, target)
  prediction_empty, target_empty = not prediction.any(), not target.any()
  if prediction_empty and target_empty:
    return 0.0
  if prediction_empty or target_empty:
    height, width = prediction.shape
    return float(np.hypot(height - 1, width - 1))
  # distance_transform_edt(~mask)[i, j] is the distance from pixel (i, j) to the nearest pixel of
  # the mask, so its maximum over the other mask is a directed Hausdorff distance.
  distance_to_target = ndimage.distance_transform_edt(~target)
  distance_to_prediction = ndimage.distance_transform_edt(~prediction)
  return float(max(distance_to_target[prediction].max(), distance_to_prediction[target].max()))


def per_image_metrics(predictions: np.ndarray,
                      targets: np.ndarray,
                      tversky_alpha: float = DEFAULT_TVERSKY_ALPHA,
                      tversky_beta: float = DEFAULT_TVERSKY_BETA) -> dict[str, np.ndarray]:
  """All metrics of ``METRIC_NAMES`` for a batch of binary masks, one value per image.

  Args:
    predictions: binary predicted masks, shape (N, H, W) or (N, H, W, 1).
    targets: binary ground-truth masks of the same shape.
    tversky_alpha: Tversky weight of false positives.
    tversky_beta: Tversky weight of false negatives.

  Returns:
    A dict from metric name to a float64 array of shape (N,).
  """
  predictions = np.asarray(predictions)
  targets = np.asarray(targets)
  if predictions.shape != targets.shape:
    raise ValueError(f'predictions {predictions.shape} and targets {targets.shape} differ.')
  scores = {name: [] for name in METRIC_NAMES}
  for prediction, target in zip(predictions, targets):
    scores['f1'].append(f1_score(prediction, target))
    scores['iou'].append(iou_score(prediction, target))
    scores['tversky'].append(tversky_index(prediction, target, tversky_alpha, tversky_beta))
    scores['hausdorff'].append(hausdorff_distance(prediction, target))
  return {name: np.asarray(values, np.float64) for name, values in scores.items()}


def summarize(per_image: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Mean and standard deviation over images: {'f1': mean, 'f1_std': std, ...}."""
  summary = {}
  for name, values in per_image.items():
    values = np.asarray(values, np.float64)
    if values.size == 0:
      raise ValueError(f'No images to summarize for metric {name!r}.')
    summary[name] = float(values.mean())
    summary[f'{name}_std'] = float(values.std())
  return summary
