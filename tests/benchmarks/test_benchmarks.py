"""The benchmark scripts run, and their gradient trees have the layouts they claim.

Smoke tests only: tiny settings, no assertions on timings.
"""

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from benchmarks import compile_time
from benchmarks import kernel_profile
from benchmarks import overhead
from benchmarks import pallas_check
from benchmarks import step_hlo
from benchmarks import train_throughput
from examples.image_classification import models


def _shapes(tree):
  return sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(tree))


def _size(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def test_resnet50_tree_matches_the_flax_resnet50():
  grads = jax.eval_shape(overhead.resnet50_gradients, jax.random.key(0))
  assert len(jax.tree.leaves(grads)) == 161
  assert _size(grads) == 25_557_032  # torchvision's resnet50: same layout, same count.
  # The examples' ResNet-50 is the same net except for its 3x3 small-image stem.
  model = nnx.eval_shape(lambda: models.create_model(
      'resnet50', num_classes=1000, in_channels=3, rngs=nnx.Rngs(0)))
  example = _shapes(nnx.state(model, nnx.Param))
  example[example.index((3, 3, 3, 64))] = (7, 7, 3, 64)
  assert _shapes(grads) == sorted(example)


def test_transformer_tree_is_gpt2_small():
  grads = jax.eval_shape(overhead.transformer_gradients, jax.random.key(0))
  assert len(jax.tree.leaves(grads)) == 148
  assert _size(grads) == 124_439_808  # GPT-2 small, with the output layer tied to the embedding.


def test_resnet56_tree_size():
  grads = jax.eval_shape(overhead.resnet56_gradients, jax.random.key(0))
  assert len(jax.tree.leaves(grads)) == 167
  assert 0.85e6 < _size(grads) < 0.86e6


def test_naive_znorm_normalizes_each_leaf():
  grads = {'a': jnp.arange(6.0).reshape(2, 3), 'b': jnp.array([1.0, 3.0])}
  updates, _ = overhead.naive_znorm().update(grads, None)
  for leaf in jax.tree.leaves(updates):
    assert abs(float(leaf.mean())) < 1e-6
    assert abs(float(leaf.std()) - 1) < 1e-6


def _tiny_tree():
  return {'kernel': jnp.linspace(-1.0, 1.0, 48).reshape(4, 12), 'bias': jnp.arange(3.0)}


@pytest.mark.parametrize('timing', ['device', 'host'])
def test_overhead_prints_every_optimizer(timing, capsys):
  overhead.benchmark_tree('tiny', _tiny_tree(), timing=timing, rounds=2, steps=2,
                          compile_repeats=1)
  out = capsys.readouterr().out
  assert f'{timing} timing' in out
  for label in overhead.OPTIMIZERS:
    assert label in out


@pytest.mark.parametrize('gradient', sorted(overhead.GRADIENTS))
def test_device_loop_runs_every_step(gradient):
  # SGD with learning rate 1 on a constant gradient: params drop by the sum of the gradients fed.
  grads = {'w': jnp.full((3,), 2.0)}
  params = {'w': jnp.zeros(3)}
  tx = optax.sgd(1.0)
  looped = jax.jit(overhead.looped_fn(tx, 4, gradient))
  new_params, _ = looped(params, tx.init(params), grads)
  if gradient == 'barrier':
    expected = -2.0 * 4
  elif gradient == 'scaled':
    expected = -2.0 * sum(1 + 1e-3 * i for i in range(4))
  else:  # g + 1e-3 * params, with params changing every step.
    p = 0.0
    for _ in range(4):
      p -= 2.0 + 1e-3 * p
    expected = p
  assert jnp.allclose(new_params['w'], expected, rtol=1e-6)


def _entry_work(looped, tx, grads):
  params = jax.tree.map(jnp.ones_like, grads)
  text = jax.jit(looped).lower(params, tx.init(params), grads).compile().as_text()
  computations, entry = step_hlo._computations(text)
  matches = (step_hlo._INSTRUCTION.match(line) for line in computations[entry])
  return {m.group(1) for m in matches if m and m.group(1) not in step_hlo._NO_WORK}


def test_device_loop_keeps_the_statistics_in_the_loop():
  tx = overhead.OPTIMIZERS['chain(naive znorm, adam)']()
  grads = _tiny_tree()
  # The loop (and the copy of its counter) is all the entry computation runs.
  assert _entry_work(overhead.looped_fn(tx, 3, 'barrier'), tx, grads) <= {'while', 'copy'}
  # Without the barrier, XLA hoists work on the loop-invariant gradient out of the loop.
  step = overhead.step_fn(tx)

  def plain(params, state, grads):
    return jax.lax.fori_loop(0, 3, lambda _, carry: step(*carry, grads), (params, state))

  assert _entry_work(plain, tx, grads) - {'while', 'copy'}


def test_step_hlo_counts_launches(tmp_path, monkeypatch, capsys):
  # step_hlo imports overhead as a top-level module, as it does when run as a script.
  monkeypatch.setattr(step_hlo.overhead, 'TREES', {'tiny': lambda key: _tiny_tree()})
  monkeypatch.setattr(sys, 'argv', ['step_hlo.py', '--trees=tiny', f'--out={tmp_path}',
                                    '--optimizers=adam;chain(znorm, adam)'])
  step_hlo.main()
  out = capsys.readouterr().out
  assert 'adam' in out and 'chain(znorm, adam)' in out
  assert 'kernels' in out and 'HLO in' in out
  hlo_files = sorted(path.name for path in tmp_path.iterdir())
  assert hlo_files == ['tiny.adam.hlo.txt', 'tiny.chain_znorm_adam.hlo.txt']
  launches = step_hlo.entry_launches((tmp_path / 'tiny.adam.hlo.txt').read_text())
  assert launches['fusion'] >= 1
  assert 'parameter' not in launches


def _adam_step_texts(shapes):
  tx = optax.adam(1e-3)
  params = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes]
  lowered = jax.jit(overhead.step_fn(tx)).lower(params, jax.eval_shape(tx.init, params), params)
  return lowered.as_text(dialect='hlo'), lowered.compile().as_text()


def test_step_hlo_counts_a_shape_s_kernels_once_and_every_leaf_s_instructions():
  one, two_alike, two_shapes = (_adam_step_texts(s) for s in (
      [(3, 4)], [(3, 4), (3, 4)], [(3, 4), (5,)]))
  kernels = [step_hlo.distinct_kernels(optimized) for _, optimized in (one, two_alike, two_shapes)]
  assert kernels[0] >= 1
  assert kernels[1] == kernels[0]  # A second leaf of the same shape reuses its kernels.
  assert kernels[2] > kernels[0]
  instructions = [step_hlo.instruction_count(hlo) for hlo, _ in (one, two_alike)]
  assert 0 < instructions[0] < instructions[1]


@pytest.mark.parametrize('loop', [pytest.param('device', marks=pytest.mark.slow), 'host'])
def test_train_throughput_runs(loop, monkeypatch, capsys):
  monkeypatch.setattr(sys, 'argv', [
      'train_throughput.py', '--model=resnet8', '--width=2', '--batch_size=2',
      '--image_size=8', '--rounds=2', '--steps_per_round=1', '--warmup_steps=0', f'--loop={loop}',
  ])
  train_throughput.main()
  out = capsys.readouterr().out
  assert f'{loop} loop' in out
  assert 'ratio znorm / adam' in out


def test_compile_time_compiles_a_fresh_train_step_per_optimizer(capsys, monkeypatch):
  monkeypatch.setattr(sys, 'argv', [
      'compile_time.py', '--models=resnet20', '--width=2', '--batch_size=2', '--image_size=8',
      '--rounds=1', '--optimizers=znorm_adam'])
  compile_time.main()
  out = capsys.readouterr().out
  assert 'resnet20 (width 2), batch 2, 8x8 images' in out
  for label in ('adam', 'znorm_adam'):  # Adam, the baseline, is always measured.
    assert f'\n{label} ' in out


def test_pallas_check_passes_in_interpret_mode(capsys):
  # The GPU run's correctness part, here with the kernels in interpret mode and a small
  # first leaf: every case, the H200 run's constant 1e30 and the stacked rows included.
  assert pallas_check.check_correctness(1000)
  out = capsys.readouterr().out
  for case in pallas_check.correctness_cases(1000, np.random.default_rng(0)):
    assert f'{case:34s}' in out, case
  assert 'FAIL' not in out and 'constant 1e30' in out and 'stacked 3 x 100000' in out


def test_kernel_profile_reports_each_optimizer_s_kernels(monkeypatch, capsys):
  monkeypatch.setattr(sys, 'argv', [
      'kernel_profile.py', '--tree=resnet56', '--steps=2', '--top=2',
      '--variants=chain(znorm, adam), XLA;chain(clip_by_global_norm, adam)'])
  kernel_profile.main()
  out = capsys.readouterr().out
  rows = {line.split('  ')[0]: line.split() for line in out.splitlines()
          if line.startswith(('adam ', 'chain(')) and 'largest kernels' not in line}
  assert set(rows) == {'adam', 'chain(znorm, adam), XLA', 'chain(clip_by_global_norm, adam)'}
  # us/step, ratio over Adam, launches per step; ZNorm adds its reductions to Adam's kernels.
  assert float(rows['adam'][-6]) == 1.0
  assert int(float(rows['chain(znorm, adam), XLA'][-5])) > int(float(rows['adam'][-5])) > 0
  assert out.count('largest kernels') == 3
