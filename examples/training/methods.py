"""The gradient methods the paper compares, by name, as optax optimizers.

Every method is Adam with one change to the gradient (or, for weight decay, to
the update), so a sweep over method names is a controlled comparison. All
examples build their optimizer through :func:`make_optimizer`.
"""

from collections.abc import Callable

import optax

import znorm_optax

LearningRate = float | optax.Schedule

_CLIP_THRESHOLD = 0.1  # The paper clips elementwise at 0.1.


def _adam_after(gradient_transform: optax.GradientTransformation):
  def make(learning_rate: LearningRate) -> optax.GradientTransformation:
    return optax.chain(gradient_transform, optax.adam(learning_rate))

  return make


def _adamw(weight_decay: float):
  def make(learning_rate: LearningRate) -> optax.GradientTransformation:
    return optax.adamw(learning_rate, weight_decay=weight_decay)

  return make


METHODS: dict[str, Callable[[LearningRate], optax.GradientTransformation]] = {
    'adam': optax.adam,
    'znorm': _adam_after(znorm_optax.znorm()),
    'gc': _adam_after(znorm_optax.centralize()),
    'clip': _adam_after(optax.clip(_CLIP_THRESHOLD)),
    'wd1e-3': _adamw(1e-3),
    'wd1e-4': _adamw(1e-4),
}
"""Method name -> factory taking a learning rate (float or optax schedule)."""

DESCRIPTIONS = {
    'adam': 'Baseline (Adam)',
    'znorm': 'ZNorm',
    'gc': 'Gradient Centralization',
    'clip': 'Gradient Clipping (0.1)',
    'wd1e-3': 'Weight Decay 1E-3 (AdamW)',
    'wd1e-4': 'Weight Decay 1E-4 (AdamW)',
}
"""Method name -> the row label the paper's tables use."""


def check_method(name: str) -> str:
  """Returns ``name`` if it is a registered method, else raises ``ValueError``."""
  if name not in METHODS:
    raise ValueError(f'Unknown method {name!r}; valid methods are: {", ".join(METHODS)}.')
  return name


def make_optimizer(name: str, learning_rate: LearningRate) -> optax.GradientTransformation:
  """Builds the optimizer of a named method.

  Args:
    name: one of :data:`METHODS`: ``adam`` (baseline), ``znorm``
      (:func:`znorm_optax.znorm` before Adam), ``gc``
      (:func:`znorm_optax.centralize` before Adam), ``clip`` (elementwise
      ``optax.clip(0.1)`` before Adam), ``wd1e-3`` / ``wd1e-4``
      (:func:`optax.adamw` with that decay).
    learning_rate: a float or an optax schedule.

  Returns:
    An :class:`optax.GradientTransformation`.

  Raises:
    ValueError: if ``name`` is not a registered method; the message lists them.
  """
  return METHODS[check_method(name)](learning_rate)
