"""The README's embedding recipe, as written, under `nnx.Optimizer`: absent rows stay put.

A model with an embedding table, blocks stacked by `nnx.vmap` and a head is
trained on tokens that never reach most of the table's rows. With per-row
statistics those rows keep their initial values bit for bit; the whole table's
statistics would give them a z far above Adam's eps, a full step, so the test
can fail. The first update of every parameter is checked against Adam's first
step on float64 z-scores (`reference.znorm`).
"""

import pathlib
import re
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import znorm_optax
from tests.znorm_optax import reference

README = pathlib.Path(__file__).resolve().parents[2] / 'README.md'
VOCABULARY, WIDTH, LAYERS = 24, 8, 2
USED_TOKENS = 10  # Rows 10..23 never get a gradient.
LEARNING_RATE = 1e-3


def _recipe() -> str:
  """The README's Python block that defines ``layers_and_embedding_rows``, dedented."""
  blocks = re.findall(r'^( *)```python\n(.*?)^\1```', README.read_text(), re.MULTILINE | re.DOTALL)
  (code,) = [textwrap.dedent(code) for _, code in blocks if 'def layers_and_embedding_rows' in code]
  return code


class _Block(nnx.Module):

  def __init__(self, rngs):
    self.mlp = nnx.Linear(WIDTH, WIDTH, rngs=rngs)

  def __call__(self, x):
    return x + jnp.tanh(self.mlp(x))


class _Model(nnx.Module):
  """Embedding (no LayerNorm after it, so the table's mean gradient is not zero), blocks, head."""

  def __init__(self, rngs):
    self.embed = nnx.Embed(VOCABULARY, WIDTH, rngs=rngs)
    self.blocks = nnx.split_rngs(splits=LAYERS)(
        nnx.vmap(_Block, in_axes=0, out_axes=0))(rngs)
    self.head = nnx.Linear(WIDTH, VOCABULARY, rngs=rngs)

  def __call__(self, tokens):
    x = nnx.scan(lambda x, block: (block(x), None), in_axes=(nnx.Carry, 0),
                 out_axes=(nnx.Carry, 0))(self.embed(tokens), self.blocks)[0]
    return self.head(x)


def _model():
  return nnx.jit(lambda: _Model(nnx.Rngs(0)))()  # Compiled once, not op by op.


def _loss(model, tokens):
  logits = model(tokens[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


@nnx.jit
def _step(model, optimizer, tokens):
  grads = nnx.grad(_loss)(model, tokens)
  optimizer.update(model, grads)
  return grads


def _train(model, optimizer, steps=3):
  """Parameters (float64) before and after the first and the last step, the first gradients."""
  params = lambda: jax.tree.map(reference.to_float64,
                                nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  rng = np.random.default_rng(0)
  initial = params()
  for step in range(steps):
    grads = _step(model, optimizer, rng.integers(0, USED_TOKENS, size=(4, 7)))
    if step == 0:
      first_grads = jax.tree.map(np.asarray, nnx.to_pure_dict(grads))
      first = params()
  return initial, first, params(), first_grads


def test_absent_rows_stay_put_and_every_first_update_is_adam_on_its_z_scores():
  namespace = {'jax': jax, 'nnx': nnx, 'znorm_optax': znorm_optax, 'model': _model()}
  exec(_recipe(), namespace)  # noqa: S102 - the README's own code.
  assert isinstance(namespace['optimizer'], nnx.Optimizer)
  initial, first, last, grads = _train(namespace['model'], namespace['optimizer'])
  absent = slice(USED_TOKENS, None)
  np.testing.assert_array_equal(last['embed']['embedding'][absent],
                                initial['embed']['embedding'][absent])
  # Adam's first step is -lr * z / (|z| + 1e-8): -lr * sign(z), and 0 where z is exactly 0.
  stacked = {'embed': (0,), 'blocks': (0,), 'head': ()}
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    z = reference.per_slice(reference.znorm, g, stacked[path[0].key])  # In float64.
    # Float32 parameters of order 1: their rounding is below 1e-7.
    reference.assert_close(_leaf(first, path) - _leaf(initial, path),
                           -LEARNING_RATE * z / (np.abs(z) + 1e-8), rtol=1e-4, atol=1e-7,
                           err_msg=jax.tree_util.keystr(path))
  assert not np.any(grads['embed']['embedding'][absent])
  # The whole table's statistics give those rows -mean/std, far above Adam's eps: a full step.
  whole_table = znorm_optax.znorm(stacked_axes={'embed': None, 'blocks': 0, 'head': None})
  z = whole_table.update(grads, None)[0]['embed']['embedding'][absent]
  reference.assert_close(z, reference.znorm(grads['embed']['embedding'])[absent])
  assert np.all(np.abs(z) > 1e-3)


def _leaf(tree, path):
  for entry in path:
    tree = tree[entry.key]
  return tree
