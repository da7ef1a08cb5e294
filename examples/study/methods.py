"""The gradient methods the paper compares, by name, as optax optimizers.

Every method is Adam with one change to the gradient (or, for weight decay, to
the update), so a sweep over method names is a controlled comparison. The
study builds every example's optimizer through :func:`make_optimizer`.
"""

from collections.abc import Callable
from typing import NamedTuple

import optax

import znorm_optax

LearningRate = float | optax.Schedule

_CLIP_THRESHOLD = 0.1  # The paper clips elementwise at 0.1.


def _adamw(weight_decay: float):
  def make(learning_rate: LearningRate) -> optax.GradientTransformation:
    return optax.adamw(learning_rate, weight_decay=weight_decay)

  return make


class Method(NamedTuple):
  """A method: a change to the gradient, then Adam (or AdamW)."""

  gradient_transform: optax.GradientTransformation | None
  """Applied to the raw gradient before Adam's moments; ``None``: the gradient as it is."""
  adam: Callable[[LearningRate], optax.GradientTransformation]
  """Factory of the Adam-type optimizer that follows, from a learning rate."""


METHODS: dict[str, Method] = {
    'adam': Method(None, optax.adam),
    'znorm': Method(znorm_optax.znorm(), optax.adam),
    'gc': Method(znorm_optax.centralize(), optax.adam),
    'clip': Method(optax.clip(_CLIP_THRESHOLD), optax.adam),
    'wd1e-3': Method(None, _adamw(1e-3)),
    'wd1e-4': Method(None, _adamw(1e-4)),
}
"""Method name -> its :class:`Method`."""

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


def check_methods(config) -> None:
  """Checks ``config.method`` and every name in ``config.sweep.methods``; see :func:`check_method`."""
  for name in (config.method, *config.sweep.methods):
    check_method(name)


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
  method = METHODS[check_method(name)]
  optimizer = method.adam(learning_rate)
  if method.gradient_transform is None:
    return optimizer
  return optax.chain(method.gradient_transform, optimizer)


def gradient_transform(name: str) -> optax.GradientTransformation:
  """What a named method does to the gradient before Adam's moments.

  It is the first part of :func:`make_optimizer`'s chain, stateless, so the
  gradient it feeds to Adam can be recomputed, e.g. for
  ``--config.log_gradient_statistics``.

  Args:
    name: one of :data:`METHODS`.

  Returns:
    :func:`znorm_optax.znorm`, :func:`znorm_optax.centralize` or
    ``optax.clip(0.1)``; ``optax.identity()`` for ``adam`` and the AdamW
    methods, whose weight decay acts on the update, not on the gradient.

  Raises:
    ValueError: if ``name`` is not a registered method; the message lists them.
  """
  transform = METHODS[check_method(name)].gradient_transform
  return optax.identity() if transform is None else transform
