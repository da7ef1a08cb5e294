"""The transformer: scanned layers against the same layers unrolled, its shapes, causality, dtypes."""

import math
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from examples.language_model import input_pipeline
from examples.language_model import models
from examples.language_model.configs import default
from examples.language_model.configs import gpt2_small
from examples.language_model.configs import study
from examples.language_model.configs import tiny
from examples.language_model.task import next_byte_metrics
from examples.study import methods

CONTEXT = 8


def _models():
  """The tiny model scanned, and unrolled with the same parameters, layer by layer."""
  scanned = models.create_model('tiny', context=CONTEXT, rngs=nnx.Rngs(0))
  unrolled = models.create_model('tiny', context=CONTEXT, scan_layers=False, rngs=nnx.Rngs(1))
  stacked = nnx.to_pure_dict(nnx.state(scanned, nnx.Param))
  layers = {**stacked, 'blocks': {
      i: jax.tree.map(lambda x, i=i: x[i], stacked['blocks'])
      for i in range(models.SIZES['tiny'].num_layers)}}
  nnx.update(unrolled, layers)
  return scanned, unrolled


def _batch():
  tokens = np.random.default_rng(0).integers(0, 256, size=(4, CONTEXT + 1), dtype=np.uint8)
  return {'tokens': tokens, 'mask': np.ones(4, np.float32)}


@nnx.jit
def _gradient(model, batch):
  return nnx.grad(lambda m: next_byte_metrics(m, batch)[0])(model)


def _gradients(model, batch):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(_gradient(model, batch)))


@nnx.jit
def _step(model, optimizer, batch):
  optimizer.update(model, _gradient(model, batch))


def _layer(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def _zscore(g):
  g = np.asarray(g, np.float64)
  return (g - g.mean()) / (g.std() + 1e-10)


def test_stacked_axes_come_from_the_model():
  scanned, unrolled = _models()
  axes = models.stacked_axes(scanned)
  for path, axis in jax.tree_util.tree_flatten_with_path(
      axes, is_leaf=lambda x: x is None)[0]:
    name = jax.tree_util.keystr(path, simple=True, separator='/')
    assert axis == (0 if name.startswith('blocks/') else None), name
  assert len(jax.tree.leaves(axes)) == 12  # Every parameter kind of a block.
  assert not jax.tree.leaves(models.stacked_axes(unrolled))
  # The study reads them from an abstract model.
  abstract = nnx.eval_shape(lambda: models.create_model('tiny', context=CONTEXT, rngs=nnx.Rngs(0)))
  assert models.stacked_axes(abstract) == axes


def test_scanned_updates_equal_the_unrolled_model_layer_by_layer():
  scanned, unrolled = _models()
  batch = _batch()
  chex.assert_trees_all_close(scanned(batch['tokens'][:, :-1]), unrolled(batch['tokens'][:, :-1]),
                              rtol=1e-5, atol=1e-5)
  scanned_grads, unrolled_grads = _gradients(scanned, batch), _gradients(unrolled, batch)
  num_layers = models.SIZES['tiny'].num_layers
  for i in range(num_layers):
    chex.assert_trees_all_close(_layer(scanned_grads['blocks'], i), unrolled_grads['blocks'][i],
                                rtol=1e-4, atol=1e-6)
  rest = lambda tree: {k: v for k, v in tree.items() if k != 'blocks'}
  chex.assert_trees_all_close(rest(scanned_grads), rest(unrolled_grads), rtol=1e-4, atol=1e-6)

  # ZNorm per layer: the scanned model's z-scored gradient is each layer's, against float64.
  stacked_axes = models.stacked_axes(scanned)
  transform = methods.gradient_transform('znorm', stacked_axes)
  normalized = jax.jit(transform.update)(scanned_grads, None)[0]
  pooled = jax.jit(methods.gradient_transform('znorm_pooled').update)(scanned_grads, None)[0]
  for i in range(num_layers):
    expected = jax.tree.map(_zscore, unrolled_grads['blocks'][i])
    chex.assert_trees_all_close(_layer(normalized['blocks'], i), expected, rtol=1e-4, atol=1e-4)
    # The test can fail: pooling the layers gives other values.
    assert max(np.max(np.abs(a - b)) for a, b in zip(
        jax.tree.leaves(_layer(pooled['blocks'], i)), jax.tree.leaves(expected))) > 1e-2

  # Two optimizer steps: each layer of the scanned model equals the unrolled model's, and so
  # does every other parameter. The token embedding's rows of bytes absent from the batch
  # included: their zero gradient is a group of its own, which stays zero.
  initial_table = np.array(scanned.token_embedding.embedding[...])
  steps = []
  for model, axes in ((scanned, stacked_axes), (unrolled, None)):
    optimizer = nnx.Optimizer(
        model, methods.make_optimizer('znorm', 1e-2, axes, methods.embedding_rows(model)),
        wrt=nnx.Param)
    for _ in range(2):
      _step(model, optimizer, batch)
    steps.append(jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param))))
  for i in range(num_layers):
    chex.assert_trees_all_close(_layer(steps[0]['blocks'], i), steps[1]['blocks'][i],
                                rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(rest(steps[0]), rest(steps[1]), rtol=1e-4, atol=1e-5)
  absent = np.setdiff1d(np.arange(models.VOCAB_SIZE), batch['tokens'][:, :-1])
  assert len(absent) > 200
  np.testing.assert_array_equal(steps[0]['token_embedding']['embedding'][absent],
                                initial_table[absent])


def test_whole_table_statistics_give_absent_rows_a_rounding_z_that_adam_makes_a_step():
  """The README's case: the tiny config's second batch, Adam's first step after ZNorm."""
  config = tiny.get_config()
  batch = list(input_pipeline.load(config).make_source(config).train_batches(0))[1]
  model = models.create_model('tiny', context=config.context, rngs=nnx.Rngs(0))
  table = _gradients(model, batch)['token_embedding']['embedding'].astype(np.float64)
  absent = np.setdiff1d(np.arange(models.VOCAB_SIZE), batch['tokens'][:, :-1])
  assert len(absent) == 221 and not table[absent].any()
  # Every path from the table enters a LayerNorm, so each row's gradient sums to zero, and the
  # table's mean is zero up to float32 rounding: the absent rows' z, -mean/std, is rounding.
  assert abs(table.mean()) < 1e-9 * table.std()
  rows = methods.embedding_rows(model)
  transform = methods.gradient_transform('znorm_table', models.stacked_axes(model), rows)
  z = float(jax.jit(transform.update)(_gradients(model, batch), None)[0]['token_embedding'][
      'embedding'][absent[0]][0])
  assert 1e-10 < abs(z) < 1e-8, z  # Here 1.4e-9: rounding's, below Adam's eps.
  before = np.array(model.token_embedding.embedding[...], np.float64)
  learning_rate = 1e-2
  optimizer = nnx.Optimizer(
      model, methods.make_optimizer('znorm_table', learning_rate, models.stacked_axes(model),
                                    rows), wrt=nnx.Param)
  _step(model, optimizer, batch)
  moved = (np.array(model.token_embedding.embedding[...], np.float64) - before)[absent]
  # Adam's first step is -lr * z / (|z| + eps), in float64: eps = 1e-8 is in z units.
  np.testing.assert_allclose(moved, -learning_rate * z / (abs(z) + 1e-8), rtol=1e-4)
  assert 0.01 < abs(moved[0, 0]) / learning_rate < 0.5  # Here 0.12 of a full step.


def test_attention_is_causal():
  model = models.create_model('tiny', context=CONTEXT, rngs=nnx.Rngs(0))
  tokens = _batch()['tokens'][:, :-1].astype(np.int32)
  changed = tokens.copy()
  changed[:, 5:] = (changed[:, 5:] + 1) % 256
  before, after = np.asarray(model(tokens)), np.asarray(model(changed))
  np.testing.assert_array_equal(before[:, :5], after[:, :5])
  assert np.max(np.abs(before[:, 5:] - after[:, 5:])) > 1e-4


def test_bfloat16_compute_keeps_float32_parameters_and_logits():
  tokens = _batch()['tokens'][:, :-1].astype(np.int32)
  f32 = models.create_model('tiny', context=CONTEXT, rngs=nnx.Rngs(0))
  bf16 = models.create_model('tiny', context=CONTEXT, dtype='bfloat16', rngs=nnx.Rngs(0))
  assert {x.dtype for x in jax.tree.leaves(nnx.state(bf16, nnx.Param))} == {jnp.dtype('float32')}
  logits = bf16(tokens)
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, f32(tokens), atol=0.05)


def _parameter_count(size: models.Size, context: int) -> int:
  """Counted from GPT-2's layout: per block QKV, output, MLP and two LayerNorms; then the rest."""
  width, mlp = size.width, size.mlp_width
  per_block = (3 * width * width + 3 * width) + (width * width + width) + (
      2 * width * mlp + mlp + width) + 2 * 2 * width
  vocab = models.VOCAB_SIZE
  return (size.num_layers * per_block + (vocab + context) * width + 2 * width + width * vocab
          + vocab)


def test_gpt2_small_shapes_and_every_model_s_parameter_count_as_the_readme_gives_it():
  model = nnx.eval_shape(lambda: models.create_model('gpt2_small', context=1024, rngs=nnx.Rngs(0)))
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert params['blocks']['qkv']['kernel'].shape == (12, 768, 3 * 768)
  assert params['blocks']['mlp_in']['kernel'].shape == (12, 768, 3072)
  assert sum(math.prod(x.shape) for x in jax.tree.leaves(params)) == _parameter_count(
      models.SIZES['gpt2_small'], 1024)
  readme = (pathlib.Path(models.__file__).parent / 'README.md').read_text()
  contexts = {'tiny': tiny, 'small': default, 'deep': study, 'gpt2_small': gpt2_small}
  assert contexts.keys() == models.SIZES.keys()
  for name, size in models.SIZES.items():
    context = contexts[name].get_config().context
    if name != 'gpt2_small':
      model = nnx.eval_shape(lambda name=name, context=context: models.create_model(
          name, context=context, rngs=nnx.Rngs(0)))
      assert sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == (
          _parameter_count(size, context)), name
    row = (f'| {size.num_layers} | {size.width} | {size.num_heads} | {size.mlp_width} | '
           f'{_parameter_count(size, context):,} ({context}) |')
    assert f'| `{name}` ' in readme and row in readme, (name, row)


def test_unknown_model_names_the_flag():
  with pytest.raises(ValueError, match=r"--config.model='huge'; valid models are: tiny, small"):
    models.check_model('huge')


def test_gradient_of_the_loss_is_finite_at_initialization():
  model = models.create_model('tiny', context=CONTEXT, rngs=nnx.Rngs(0))
  loss = next_byte_metrics(model, _batch())[0]
  # Small initial logits: about the uniform distribution's ln 256 nats.
  np.testing.assert_allclose(float(loss), math.log(256), rtol=0.02)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(_gradients(model, _batch())))
