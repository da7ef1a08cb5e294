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
from flax import nnx

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


def _is_axes(value) -> bool:
  return value is None or isinstance(value, (int, tuple))


def _union(*stacked_axes: StackedAxes) -> StackedAxes:
  """One tree of stacked axes: each leaf gets every axis the trees give it; ``None`` if none is given.

  A leaf stacked in several trees (the layers and rows of a stack of
  embedding tables) gets all their axes. The trees are pure dicts of one
  model's parameters, so they share their structure.
  """
  trees = [tree for tree in stacked_axes if tree is not None]
  if not trees:
    return None

  def union(*axes):
    merged = sorted({a for leaf in axes if leaf is not None
                     for a in ((leaf,) if isinstance(leaf, int) else leaf)})
    return tuple(merged) or None

  return jax.tree.map(union, *trees, is_leaf=_is_axes)


def embedding_rows(model: nnx.Module) -> dict:
  """Each embedding table's row axis (``nnx.Embed``'s, one row per token), ``None`` elsewhere.

  A pure dict shaped like ``nnx.to_pure_dict(nnx.state(model, nnx.Param))``.
  The row axis is the table's second to last (a stack of tables keeps its
  layer axes in front). It works on the abstract model of ``nnx.eval_shape``.
  """
  tables = {path for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Embed)}
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: (leaf.ndim - 2 if tuple(_key(k) for k in path[:-1]) in tables
                          and _key(path[-1]) == 'embedding' else None), params)


def _key(entry) -> Any:
  return getattr(entry, 'key', getattr(entry, 'idx', entry))


class Method(NamedTuple):
  """A method: a change to the gradient, then Adam (or AdamW)."""

  gradient_transform: Callable[[StackedAxes, StackedAxes], optax.GradientTransformation] | None
  """Factory of what is applied to the raw gradient before Adam's moments, from
  the parameters' layer axes and the embedding tables' row axes (each a
  :data:`StackedAxes`); ``None``: the gradient as it is."""
  adam: Callable[[LearningRate], optax.GradientTransformation]
  """Factory of the Adam-type optimizer that follows, from a learning rate."""


def _ignores_stacked_axes(transform: optax.GradientTransformation):
  return lambda layers, embedding_rows: transform


def _znorm(*, pool_layers: bool = False, embeddings: str = 'rows'):
  """ZNorm per layer (or with a stack's layers pooled), and the embedding tables per ``embeddings``.

  ``'rows'``: each row of a table has statistics of its own, so the row of a
  token absent from the batch (a zero gradient) stays zero and Adam leaves it
  alone; ``'table'``: the whole table's, which give such a row ``-mean/std``;
  ``'adam'``: the tables are left out of ZNorm.
  """
  def make(layers, rows):
    layers = None if pool_layers else layers
    if embeddings == 'rows':
      return znorm_optax.znorm(stacked_axes=_union(layers, rows))
    mask = None
    if embeddings == 'adam' and any(axes is not None
                                    for axes in jax.tree.leaves(rows, is_leaf=_is_axes)):
      mask = jax.tree.map(lambda axes: axes is None, rows, is_leaf=_is_axes)
    return znorm_optax.znorm(stacked_axes=layers, mask=mask)

  return make


METHODS: dict[str, Method] = {
    'adam': Method(None, optax.adam),
    'znorm': Method(_znorm(), optax.adam),
    'znorm_pooled': Method(_znorm(pool_layers=True), optax.adam),
    'gc': Method(lambda layers, embedding_rows: znorm_optax.centralize(stacked_axes=layers),
                 optax.adam),
    'clip': Method(_ignores_stacked_axes(optax.clip(_CLIP_THRESHOLD)), optax.adam),
    'clip_norm': Method(_ignores_stacked_axes(optax.clip_by_global_norm(_GLOBAL_NORM)),
                        optax.adam),
    'wd1e-3': Method(None, _adamw(1e-3)),
    'wd1e-4': Method(None, _adamw(1e-4)),
    'znorm_table': Method(_znorm(embeddings='table'), optax.adam),
    'znorm_masked': Method(_znorm(embeddings='adam'), optax.adam),
}
"""Method name -> its :class:`Method`. ``znorm`` takes statistics per layer of a
stack and per row of an embedding table; ``znorm_pooled`` pools a stack's
layers (what ``znorm()`` without ``stacked_axes`` does to an ``nnx.scan``
model), ``znorm_table`` takes an embedding table's statistics over the whole
table, ``znorm_masked`` leaves the tables to Adam alone; each is otherwise
``znorm``. ``gc`` centralizes per layer. For a model without stacks or
embedding tables the four ZNorm methods are one."""

DESCRIPTIONS = {
    'adam': 'Baseline (Adam)',
    'znorm': 'ZNorm',
    'znorm_pooled': 'ZNorm, layers pooled',
    'gc': 'Gradient Centralization',
    'clip': 'Gradient Clipping (0.1)',
    'clip_norm': 'Global-norm Clipping (1.0)',
    'wd1e-3': 'Weight Decay 1E-3 (AdamW)',
    'wd1e-4': 'Weight Decay 1E-4 (AdamW)',
    'znorm_table': 'ZNorm, embedding tables whole',
    'znorm_masked': 'ZNorm, embeddings to Adam alone',
}
"""Method name -> the row label the paper's tables use."""


def check_method(name: str) -> str:
  """Returns ``name`` if it is a registered method, else raises ``ValueError``."""
  if name not in METHODS:
    raise ValueError(f'Unknown method {name!r}; valid methods are: {", ".join(METHODS)}.')
  return name


def check_methods(config) -> None:
  """Checks ``config.method`` and every name in ``config.sweep.methods``; a refusal names the flag."""
  for flag, names in (('--config.method', (config.method,)),
                      ('--config.sweep.methods', config.sweep.methods)):
    for name in names:
      try:
        check_method(name)
      except ValueError as error:
        raise ValueError(f'{flag}: {error}') from error


def make_optimizer(name: str, learning_rate: LearningRate, stacked_axes: StackedAxes = None,
                   embedding_rows: StackedAxes = None) -> optax.GradientTransformation:
  """Builds the optimizer of a named method.

  Args:
    name: one of :data:`METHODS`: ``adam`` (baseline), ``znorm``
      (:func:`znorm_optax.znorm` before Adam, per layer of a stack and per
      row of an embedding table), ``znorm_pooled`` (a stack's layers pooled),
      ``znorm_table`` (an embedding table's statistics over the whole table),
      ``znorm_masked`` (the embedding tables left to Adam alone), ``gc``
      (:func:`znorm_optax.centralize` before Adam), ``clip`` (elementwise
      ``optax.clip(0.1)`` before Adam), ``clip_norm``
      (``optax.clip_by_global_norm(1.0)`` before Adam), ``wd1e-3`` /
      ``wd1e-4`` (:func:`optax.adamw` with that decay).
    learning_rate: a float or an optax schedule.
    stacked_axes: the parameters' layer axes (see :data:`StackedAxes`),
      which ``znorm`` and ``gc`` give statistics of their own.
    embedding_rows: the embedding tables' row axes, as
      :func:`embedding_rows` reads them from the model.

  Returns:
    An :class:`optax.GradientTransformation`.

  Raises:
    ValueError: if ``name`` is not a registered method; the message lists them.
  """
  return make_optimizer_from(name, learning_rate,
                             gradient_transform(name, stacked_axes, embedding_rows))


def make_optimizer_from(name: str, learning_rate: LearningRate,
                        transform: optax.GradientTransformation) -> optax.GradientTransformation:
  """:func:`make_optimizer` around a ``transform`` built by :func:`gradient_transform`.

  For a caller that uses the transform itself too (the gradient log), so it is built once.
  """
  method = METHODS[check_method(name)]
  optimizer = method.adam(learning_rate)
  if method.gradient_transform is None:  # Adam alone: its state has no transform's part.
    return optimizer
  return optax.chain(transform, optimizer)


def gradient_transform(name: str, stacked_axes: StackedAxes = None,
                       embedding_rows: StackedAxes = None) -> optax.GradientTransformation:
  """What a named method does to the gradient before Adam's moments.

  It is the first part of :func:`make_optimizer`'s chain, stateless, so the
  gradient it feeds to Adam can be recomputed, e.g. for
  ``--config.log_gradient_statistics``.

  Args:
    name: one of :data:`METHODS`.
    stacked_axes: as for :func:`make_optimizer`.
    embedding_rows: as for :func:`make_optimizer`.

  Returns:
    :func:`znorm_optax.znorm`, :func:`znorm_optax.centralize`,
    ``optax.clip(0.1)`` or ``optax.clip_by_global_norm(1.0)``;
    ``optax.identity()`` for ``adam`` and the AdamW methods, whose weight decay
    acts on the update, not on the gradient.

  Raises:
    ValueError: if ``name`` is not a registered method; the message lists them.
  """
  factory = METHODS[check_method(name)].gradient_transform
  return optax.identity() if factory is None else factory(stacked_axes, embedding_rows)
