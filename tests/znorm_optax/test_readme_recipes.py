"""The README's Flax recipes, run as written, on an `nnx.scan` model under `nnx.Optimizer`.

Each Python block of the README is executed as it stands, with `model` an
`nnx.scan`-stacked transformer-like model, and the transformation it builds
is then given the gradients as `nnx.Optimizer` gives them (an `nnx.State`),
as a plain dict and as a `FrozenDict`. Every layer slice is checked against a
float64 z-score (`reference.znorm`), and a pooled z-score is shown to differ,
so a recipe that loses the layer axis fails.
"""

import functools
import pathlib
import re
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.core import FrozenDict

import znorm_optax
from tests.znorm_optax import reference

README = pathlib.Path(__file__).resolve().parents[2] / 'README.md'
LAYERS = 3
LAYER_SCALES = np.array([1e-3, 1.0, 30.0])  # Gradient scales across depth differ by orders.


def _readme_blocks() -> list[str]:
  """The README's Python code blocks, dedented (some sit in list items)."""
  blocks = re.findall(r'^( *)```python\n(.*?)^\1```', README.read_text(), re.MULTILINE | re.DOTALL)
  return [textwrap.dedent(code) for _, code in blocks]


def _block(*needles: str) -> str:
  (code,) = [code for code in _readme_blocks() if all(needle in code for needle in needles)]
  return code


def _names(*axes, initializer=None):
  """Axis names as metadata only (no mesh to place the parameters on)."""
  return nnx.with_partitioning(initializer or nnx.initializers.lecun_normal(), axes,
                               eager_sharding=False)


class _Block(nnx.Module):

  def __init__(self, rngs):
    self.mlp = nnx.Linear(8, 8, kernel_init=_names('embed', 'mlp'),
                          bias_init=_names('mlp', initializer=nnx.initializers.zeros_init()),
                          rngs=rngs)

  def __call__(self, x):
    return x + jnp.tanh(self.mlp(x))


class _Model(nnx.Module):
  """Embedding, blocks stacked by nnx.vmap (layer axis named 'layers') run by nnx.scan, head."""

  def __init__(self, rngs):
    self.embed = nnx.Embed(16, 8, embedding_init=_names('vocab', 'embed'), rngs=rngs)

    @nnx.split_rngs(splits=LAYERS)
    @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: 'layers'})
    def make_blocks(rngs):
      return _Block(rngs)

    self.blocks = make_blocks(rngs)
    self.head = nnx.Linear(8, 16, kernel_init=_names('embed', 'vocab'), rngs=rngs)

  def __call__(self, tokens):
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry,
              transform_metadata={nnx.PARTITION_NAME: 'layers'})
    def body(x, block):
      return block(x)

    return self.head(body(self.embed(tokens), self.blocks))


@functools.cache
def _model_and_grads():
  model = nnx.jit(lambda: _Model(nnx.Rngs(0)))()  # Compiled once, not op by op.
  tokens = jnp.arange(24).reshape(4, 6) % 16

  def loss(model):
    return jnp.mean((model(tokens) - 0.5) ** 2)

  grads = nnx.jit(nnx.grad(loss))(model)
  # Layer scales and offsets that a shared (pooled) statistic would mix up.
  return model, jax.tree_util.tree_map_with_path(
      lambda path, g: (g * LAYER_SCALES.reshape(-1, *[1] * (g.ndim - 1)) + 0.1
                       if 'blocks' in jax.tree_util.keystr(path) else g), grads)


def _run(code: str, model) -> dict:
  namespace = {'jax': jax, 'optax': optax, 'nnx': nnx, 'znorm_optax': znorm_optax,
               'model': model}
  exec(code, namespace)  # noqa: S102 - the README's own code.
  return namespace


def _pure(tree) -> dict:
  """The arrays of an `nnx.State`, dict or `FrozenDict`, as NumPy."""
  return jax.tree.map(np.asarray, nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree)


def _expected(grads, normalized=lambda path: True) -> dict:
  """Float64 z-scores: per layer slice under 'blocks', per leaf elsewhere."""
  def expected(path, g):
    if not normalized(path):
      return reference.to_float64(g)
    stacked = (0,) if 'blocks' in path else ()
    return reference.per_slice(reference.znorm, g, stacked)
  return {path: expected(path, g) for path, g in _flat(grads).items()}


def _flat(tree) -> dict:
  return {'/'.join(map(str, keys)): leaf for keys, leaf in
          ((tuple(getattr(k, 'key', getattr(k, 'idx', k)) for k in path), leaf)
           for path, leaf in jax.tree_util.tree_leaves_with_path(_pure(tree)))}


def _assert_normalized(actual: dict, expected: dict):
  assert actual.keys() == expected.keys()
  for path, value in actual.items():
    # Float32 updates, and parameters of order 1 that they are added to.
    reference.assert_close(value, expected[path], rtol=1e-6, atol=1e-6, err_msg=path)


def _applied_by_optimizer(model, tx, grads) -> dict:
  """What `nnx.Optimizer(model, tx).update` adds to each parameter, flattened by path."""
  model = nnx.clone(model)
  before = _flat(nnx.state(model, nnx.Param))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  nnx.jit(lambda optimizer, model, grads: optimizer.update(model, grads))(optimizer, model, grads)
  after = _flat(nnx.state(model, nnx.Param))
  return {path: reference.to_float64(after[path]) - before[path] for path in before}


def test_pooled_statistics_would_fail_these_checks():
  _, grads = _model_and_grads()
  kernel = _flat(grads)['blocks/mlp/kernel']
  pooled = reference.znorm(kernel)
  per_layer = reference.per_slice(reference.znorm, kernel, (0,))
  assert np.max(np.abs(pooled - per_layer)) > 0.5


@pytest.mark.parametrize('recipe', ['specs', 'callable'])
def test_stacked_axes_recipes_under_nnx_optimizer(recipe):
  model, grads = _model_and_grads()
  if recipe == 'specs':
    namespace = _run(_block('stacked_axes_from_specs'), model)
    stacked_axes = namespace['stacked_axes']
    # Its pure-dict form too: both fit the gradients by key path.
    forms = [stacked_axes, nnx.to_pure_dict(stacked_axes)]
  else:
    namespace = _run(_block('def scanned_layers'), model)
    forms = [namespace['scanned_layers']]
  assert isinstance(namespace['optimizer'], nnx.Optimizer)
  # The recipe's own optimizer: Adam's first step is -lr * sign(z-score of each layer).
  with_adam = _applied_by_optimizer(model, namespace['optimizer'].tx, grads)
  expected = {path: -1e-3 * np.sign(z) for path, z in _expected(grads).items()}
  _assert_normalized(with_adam, expected)
  for form in forms:
    _assert_normalized(
        _applied_by_optimizer(model, znorm_optax.znorm(stacked_axes=form), grads),
        _expected(grads))
  # Gradients as a plain dict and as a FrozenDict, with the same stacked_axes.
  update = jax.jit(znorm_optax.znorm(stacked_axes=forms[0]).update)
  for container in (nnx.to_pure_dict, lambda g: FrozenDict(nnx.to_pure_dict(g))):
    updates, _ = update(container(grads), None)
    _assert_normalized(_flat(updates), _expected(grads))


def test_embedding_mask_recipe_under_nnx_optimizer():
  model, grads = _model_and_grads()
  namespace = _run(_block('stacked_axes_from_specs') + _block('def all_but_embeddings'), model)
  with_adam = _applied_by_optimizer(model, namespace['optimizer'].tx, grads)
  embedding = _flat(grads)['embed/embedding']
  # Adam alone on the embedding: its first step is -lr * sign(g).
  reference.assert_close(with_adam['embed/embedding'], -1e-3 * np.sign(embedding), rtol=1e-6)
  tx = znorm_optax.znorm(stacked_axes=namespace['stacked_axes'],
                         mask=namespace['all_but_embeddings'])
  _assert_normalized(_applied_by_optimizer(model, tx, grads),
                     _expected(grads, normalized=lambda path: path != 'embed/embedding'))


def test_quickstart_and_mask_recipes_under_nnx_optimizer():
  model, grads = _model_and_grads()
  assert isinstance(_run(_block('optimizer = optax.chain('), model)['optimizer'],
                    optax.GradientTransformation)
  optimizer = _run(_block('znorm_optax.znorm_adam(1e-3), wrt=nnx.Param'), model)['optimizer']
  # Without stacked_axes each leaf is one group, the layers pooled.
  expected = {path: -1e-3 * np.sign(reference.znorm(g)) for path, g in _flat(grads).items()}
  _assert_normalized(_applied_by_optimizer(model, optimizer.tx, grads), expected)
  tx = _run(_block('mask=lambda params'), model)['tx']
  # The recipe's p.ndim > 1: the head's bias passes through, the stacked biases (3, 8) do not.
  expected = {path: (reference.znorm(g) if g.ndim > 1 else reference.to_float64(g))
              for path, g in _flat(grads).items()}
  assert any(g.ndim == 1 for g in _flat(grads).values())
  _assert_normalized(_applied_by_optimizer(model, tx, grads), expected)


def test_stacked_axes_without_an_entry_for_a_leaf_name_its_path():
  model, grads = _model_and_grads()
  model = nnx.clone(model)
  stacked_axes = {'blocks': 0, 'head': None}  # No entry for the embedding.
  optimizer = nnx.Optimizer(model, znorm_optax.znorm(stacked_axes=stacked_axes), wrt=nnx.Param)
  with pytest.raises(ValueError, match=r"has no entry for the leaf at \['embed'\]\['embedding'\]"):
    optimizer.update(model, grads)


def _centralized(grads, normalized):
  """Float64 Gradient Centralization: per layer slice under 'blocks', per leaf elsewhere."""
  return {path: (reference.per_slice(reference.centralize, g, (0,) if 'blocks' in path else ())
                 if normalized(path) else reference.to_float64(g))
          for path, g in _flat(grads).items()}


@pytest.mark.parametrize('transform', [
    'centralize',
    'znorm',
])
def test_a_dict_mask_fits_state_gradients_by_key_path(transform):
  model, grads = _model_and_grads()
  mask = {'embed': False, 'blocks': True, 'head': True}  # A plain dict; the gradients are a State.
  stacked_axes = {'blocks': 0, 'embed': None, 'head': None}
  factory = {'centralize': znorm_optax.centralize, 'znorm': znorm_optax.znorm}[transform]
  applied = _applied_by_optimizer(model, factory(mask=mask, stacked_axes=stacked_axes), grads)
  normalized = lambda path: not path.startswith('embed')
  expected = (_centralized(grads, normalized) if transform == 'centralize'
              else _expected(grads, normalized))
  _assert_normalized(applied, expected)
  with pytest.raises(ValueError, match=r"mask .* has no entry for the leaf at \['head'\]"):
    _applied_by_optimizer(model, factory(mask={'embed': False, 'blocks': True}), grads)
