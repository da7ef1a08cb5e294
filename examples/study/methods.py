"""The gradient methods the paper compares, by name, as optax optimizers.

Every method is Adam with one change to the gradient (or, for weight decay, to
the update), so a sweep over method names is a controlled comparison. The
study builds every example's optimizer through :func:`make_optimizer`.
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import optax

import znorm_optax

LearningRate = float | optax.Schedule
StackedAxes = Any
"""``None``, or a pure dict shaped like the parameters (``nnx.to_pure_dict``)
whose leaves are each parameter's stacked axes (an int, a tuple or ``None``)."""

_CLIP_THRESHOLD = 0.1  # The paper clips elementwise at 0.1.
_GLOBAL_NORM = 1.0  # GPT-2's and most language models' global-norm clip.


def _adamw(weight_decay: float):
  def make(learning_rate: LearningRate) -> optax.GradientTransformation:
    return optax.adamw(learning_rate, weight_decay=weight_decay)

  return make


def by_path(stacked_axes: StackedAxes) -> Callable[[Any], Any] | None:
  """``stacked_axes`` as a callable of any tree with the parameters' key paths.

  ``nnx.Optimizer`` hands the transforms ``nnx.State`` trees and the gradient
  log pure dicts; both flatten to the same ``'blocks/qkv/kernel'`` paths.
  """
  if stacked_axes is None:
    return None
  flat = {_path_name(path): axes for path, axes in jax.tree_util.tree_flatten_with_path(
      stacked_axes, is_leaf=lambda x: x is None or isinstance(x, tuple))[0]}
  return lambda tree: jax.tree_util.tree_map_with_path(
      lambda path, _: flat.get(_path_name(path)), tree)


def _path_name(path) -> str:
  return jax.tree_util.keystr(path, simple=True, separator='/')


class Method(NamedTuple):
  """A method: a change to the gradient, then Adam (or AdamW)."""

  gradient_transform: Callable[[Callable | None], optax.GradientTransformation] | None
  """Factory of what is applied to the raw gradient before Adam's moments, from
  the parameters' stacked axes (see :func:`by_path`); ``None``: the gradient as it is."""
  adam: Callable[[LearningRate], optax.GradientTransformation]
  """Factory of the Adam-type optimizer that follows, from a learning rate."""


def _ignores_stacked_axes(transform: optax.GradientTransformation):
  return lambda stacked_axes: transform


METHODS: dict[str, Method] = {
    'adam': Method(None, optax.adam),
    'znorm': Method(lambda stacked_axes: znorm_optax.znorm(stacked_axes=stacked_axes), optax.adam),
    'znorm_pooled': Method(_ignores_stacked_axes(znorm_optax.znorm()), optax.adam),
    'gc': Method(lambda stacked_axes: znorm_optax.centralize(stacked_axes=stacked_axes),
                 optax.adam),
    'clip': Method(_ignores_stacked_axes(optax.clip(_CLIP_THRESHOLD)), optax.adam),
    'clip_norm': Method(_ignores_stacked_axes(optax.clip_by_global_norm(_GLOBAL_NORM)),
                        optax.adam),
    'wd1e-3': Method(None, _adamw(1e-3)),
    'wd1e-4': Method(None, _adamw(1e-4)),
}
"""Method name -> its :class:`Method`. ``znorm`` and ``gc`` take statistics per
layer of a stack; ``znorm_pooled`` pools a stack's layers (what ``znorm()``
without ``stacked_axes`` does to an ``nnx.scan`` model)."""

DESCRIPTIONS = {
    'adam': 'Baseline (Adam)',
    'znorm': 'ZNorm',
    'znorm_pooled': 'ZNorm, layers pooled',
    'gc': 'Gradient Centralization',
    'clip': 'Gradient Clipping (0.1)',
    'clip_norm': 'Global-norm Clipping (1.0)',
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


def make_optimizer(name: str, learning_rate: LearningRate,
                   stacked_axes: StackedAxes = None) -> optax.GradientTransformation:
  """Builds the optimizer of a named method.

  Args:
    name: one of :data:`METHODS`: ``adam`` (baseline), ``znorm``
      (:func:`znorm_optax.znorm` before Adam, per layer of a stack),
      ``znorm_pooled`` (``znorm()`` before Adam, a stack's layers pooled),
      ``gc`` (:func:`znorm_optax.centralize` before Adam), ``clip``
      (elementwise ``optax.clip(0.1)`` before Adam), ``clip_norm``
      (``optax.clip_by_global_norm(1.0)`` before Adam), ``wd1e-3`` /
      ``wd1e-4`` (:func:`optax.adamw` with that decay).
    learning_rate: a float or an optax schedule.
    stacked_axes: the parameters' stacked axes (see :data:`StackedAxes`),
      which ``znorm`` and ``gc`` give statistics of their own.

  Returns:
    An :class:`optax.GradientTransformation`.

  Raises:
    ValueError: if ``name`` is not a registered method; the message lists them.
  """
  method = METHODS[check_method(name)]
  optimizer = method.adam(learning_rate)
  if method.gradient_transform is None:
    return optimizer
  return optax.chain(gradient_transform(name, stacked_axes), optimizer)


def gradient_transform(name: str, stacked_axes: StackedAxes = None) -> optax.GradientTransformation:
  """What a named method does to the gradient before Adam's moments.

  It is the first part of :func:`make_optimizer`'s chain, stateless, so the
  gradient it feeds to Adam can be recomputed, e.g. for
  ``--config.log_gradient_statistics``.

  Args:
    name: one of :data:`METHODS`.
    stacked_axes: as for :func:`make_optimizer`.

  Returns:
    :func:`znorm_optax.znorm`, :func:`znorm_optax.centralize`,
    ``optax.clip(0.1)`` or ``optax.clip_by_global_norm(1.0)``;
    ``optax.identity()`` for ``adam`` and the AdamW methods, whose weight decay
    acts on the update, not on the gradient.

  Raises:
    ValueError: if ``name`` is not a registered method; the message lists them.
  """
  factory = METHODS[check_method(name)].gradient_transform
  return optax.identity() if factory is None else factory(by_path(stacked_axes))
