"""Smoke runs of configs/tiny.py: learning, logs, per-layer gradient statistics, checkpoints, NaNs.

Most runs share one program (adam, 4 epochs of 6 steps, gradient statistics every 3 steps),
which the module's compilation cache compiles once per worker; each test checks several things
of its runs, since compiling is most of a run's time.
"""

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
from examples.language_model.configs import study
from examples.language_model.configs import tiny
from examples.language_model.example import EXAMPLE
from examples.study import experiment
from examples.study import methods
from examples.study import report
from examples.study import sweep
from examples.training import gradient_log
from examples.training import loop
from examples.training import metrics_log
from examples.training import resume
from tests.examples import saved  # Its persistent_compilation_cache, named as the fixture.
from tests.examples.saved import Interrupted
from tests.examples.saved import example_with_batches
from tests.examples.saved import final_state
from tests.examples.saved import interrupted_at
from tests.examples.saved import saved_steps
from tests.examples.saved import tensorboard_scalars
from tests.examples.saved import without_timing

LAYERS = models.SIZES['tiny'].num_layers


@pytest.fixture(scope='module', autouse=True)
def persistent_compilation_cache(tmp_path_factory):
  """Runs of the shared configuration load their compiled steps instead of compiling again."""
  with saved.persistent_compilation_cache(tmp_path_factory.mktemp('jax_cache')):
    yield


def _config(**overrides):
  """The shared configuration: tiny, 4 epochs of 6 steps, one device, gradient statistics.

  Checkpoints only at the end (at 24): saving is slow, and most tests need just the last.
  """
  config = tiny.get_config()
  config.platform = 'cpu'  # Also on a machine with an accelerator.
  config.update(parallel='none', num_epochs=4, log_gradient_statistics=True,
                checkpoint_every_steps=24)
  config.update(overrides)
  return config


def _run_dir(workdir, method):
  return sweep.run_directory(str(workdir), 'tiny', method, 0)


def _stacked_leaf_sizes() -> tuple[dict[str, int], dict[str, int]]:
  """Leaf name -> size of one layer (stacked leaves) or of the leaf (the others)."""
  model = nnx.eval_shape(lambda: models.create_model('tiny', context=16, rngs=nnx.Rngs(0)))
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  stacked, unstacked = {}, {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = '/'.join(str(getattr(key, 'key', key)) for key in path)
    if name.startswith('blocks/'):
      assert leaf.shape[0] == LAYERS, name
      stacked[name] = math.prod(leaf.shape[1:])
    else:
      unstacked[name] = math.prod(leaf.shape)
  return stacked, unstacked


def _check_table(workdir, histories):
  table = (workdir / 'table.md').read_text()
  assert 'Validation Bits/Byte' in table, table
  for method, label in (('adam', 'Baseline (Adam)'), ('znorm', 'ZNorm')):
    row = next(line for line in table.splitlines() if f'| {label} |' in line)
    assert f'| {histories[method][-1]["test_bits_per_byte"]:.3f} ± ' in row, (label, table)


def _check_learning(histories):
  for method, history in histories.items():
    bits = [record['test_bits_per_byte'] for record in history]
    # Uniform guessing over 256 bytes is 8 bits per byte.
    assert bits[-1] < bits[0] - 0.2 and bits[0] < 8.0, (method, bits)
    for record in history:
      for split in ('train', 'test'):
        np.testing.assert_allclose(record[f'{split}_bits_per_byte'],
                                   np.float64(record[f'{split}_loss']) / np.log(2), rtol=1e-6,
                                   err_msg=f'{method} epoch {record["epoch"]} {split}')


def _check_epoch_logs(run_dir, history):
  records = metrics_log.read(f'{run_dir}/metrics.jsonl')
  assert records == history
  assert [(r['epoch'], r['step']) for r in records] == [(1, 6), (2, 12), (3, 18), (4, 24)]
  scalars = tensorboard_scalars(run_dir)
  for key in ('test_bits_per_byte', 'test_loss', 'train_bits_per_byte', 'train_loss'):
    assert scalars[f'epoch/{key}'] == pytest.approx({r['step']: r[key] for r in records},
                                                    rel=1e-6), key
  # The log intervals' mean training losses: an epoch's mean is the mean of its two intervals.
  interval = scalars['interval/train_loss']
  assert sorted(interval) == list(range(3, 25, 3))
  for record in records:
    step = record['step']
    assert (interval[step - 3] + interval[step]) / 2 == pytest.approx(record['train_loss'],
                                                                      rel=1e-5)


def _check_znorm_per_layer(run_dir):
  records = metrics_log.read(f'{run_dir}/{gradient_log.FILENAME}')
  assert [r['step'] for r in records] == list(range(3, 25, 3))
  stacked, unstacked = _stacked_leaf_sizes()
  assert len(stacked) == 12 and 'head/kernel' in unstacked
  expected_names = {f'{name}/{layer}' for name in stacked for layer in range(LAYERS)} | set(
      unstacked)
  assert {'blocks/qkv/kernel/0', 'blocks/qkv/kernel/1', 'head/kernel'} <= expected_names
  for record in records:
    for statistic in gradient_log.STATISTICS:
      assert set(record[statistic]) == expected_names, statistic
    # Each layer z-scored on its own: population std 1 and, with mean 0, norm sqrt(size).
    for name, size in stacked.items():
      for layer in range(LAYERS):
        entry = f'{name}/{layer}'
        assert record['std_after'][entry] == pytest.approx(1.0, abs=1e-4), (record['step'], entry)
        assert record['norm_after'][entry] == pytest.approx(math.sqrt(size), rel=1e-4), entry
    for name, size in unstacked.items():
      if name == 'token_embedding/embedding':
        # Each row on its own: a byte's row in the batch has norm sqrt(width), the others 0.
        rows = record['norm_after'][name]**2 / models.SIZES['tiny'].width
        assert rows == pytest.approx(round(rows), abs=1e-2) and 10 < round(rows) < 100, rows
        continue
      assert record['std_after'][name] == pytest.approx(1.0, abs=1e-4), name
      assert record['norm_after'][name] == pytest.approx(math.sqrt(size), rel=1e-4), name


def test_sweep_learns_logs_and_normalizes_each_layer(tmp_path, capfd):
  """One sweep of adam and znorm, checked for several things (its runs are the costly part)."""
  config = _config(progress_bar=True)
  config.sweep.methods = ('adam', 'znorm')
  config.sweep.seeds = (0,)
  results = experiment.run_sweep(EXAMPLE, config, str(tmp_path)).results
  histories = {result.method: result.history for result in results}
  assert list(histories) == ['adam', 'znorm']
  out, err = capfd.readouterr()
  assert 'tiny znorm seed 0 epoch 4/4' in err  # The progress bar, on stderr,
  assert 'tiny znorm seed 0 epoch 4: train_bits_per_byte' in out + err  # and the epoch summaries.
  _check_table(tmp_path, histories)
  _check_learning(histories)
  _check_epoch_logs(_run_dir(tmp_path, 'adam'), histories['adam'])
  _check_znorm_per_layer(_run_dir(tmp_path, 'znorm'))


def test_znorm_pooled_does_not_give_each_layer_unit_std(tmp_path, capsys):
  # As `python -m examples.main` runs the tiny config: no progress bar, one line per epoch and
  # the final metrics. (The compilation cache stays the module's.)
  experiment.run(EXAMPLE, _config(method='znorm_pooled', num_epochs=1, compilation_cache=False),
                 str(tmp_path))
  lines = capsys.readouterr().out.splitlines()
  assert [line.split(': ')[0] for line in lines] == [
      'tiny znorm_pooled seed 0 epoch 1', 'Final',
      f'Metrics (metrics.jsonl, TensorBoard) and checkpoints in {tmp_path}'], lines
  (record,) = metrics_log.read(tmp_path / 'metrics.jsonl')
  for line in lines[:2]:
    for key in ('train_loss', 'test_bits_per_byte', 'train_examples_per_second'):
      assert f'{key} {record[key]:.4g}' in line, (key, line)
  records = metrics_log.read(tmp_path / gradient_log.FILENAME)
  assert [r['step'] for r in records] == [3, 6]
  stacked, _ = _stacked_leaf_sizes()
  for record in records:
    deviations = []
    for name, size in stacked.items():
      norms = np.array([record['norm_after'][f'{name}/{layer}'] for layer in range(LAYERS)])
      # Pooled over the layers: the whole stack has mean 0 and std 1, so the squared norms
      # of its layers add up to its size.
      np.testing.assert_allclose(np.sum(norms.astype(np.float64)**2), LAYERS * size, rtol=1e-4,
                                 err_msg=name)
      deviations += [abs(record['std_after'][f'{name}/{layer}'] - 1.0) for layer in range(LAYERS)]
    assert max(deviations) > 0.1, deviations  # Here up to 0.37.


# --- Checkpoints. ---


def _numpy_cross_entropy(logits, targets) -> float:
  """Mean next-byte cross-entropy in nats, in float64."""
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
  return -np.take_along_axis(log_probabilities, targets[..., None].astype(np.int64), -1).mean()


def _check_saved_model_gives_the_reported_loss(config, workdir, history):
  """The checkpoint's model: its validation loss against float64 NumPy from its logits."""

  def load_model():
    return resume.load_model(
        config, str(workdir), EXAMPLE.make_task(config, None),
        resumable_keys=(*experiment.RESUMABLE_KEYS, *EXAMPLE.resumable_keys(config)))

  windows = input_pipeline.load(config).evaluation  # 12: the second eval batch is padded.
  inputs, targets = jnp.asarray(windows[:, :-1], jnp.int32), windows[:, 1:]
  logits = nnx.jit(lambda model, inputs: model(inputs))(load_model(), inputs)
  np.testing.assert_allclose(history[-1]['test_loss'], _numpy_cross_entropy(logits, targets),
                             rtol=1e-5)
  # As a user calls it, outside jit (nnx.jit above made that copy's leaves jax.Arrays; the
  # loaded model's are NumPy arrays).
  np.testing.assert_allclose(load_model()(inputs), logits, rtol=1e-5, atol=1e-5)


def test_checkpoints_hold_the_reported_model_and_resume_exactly(tmp_path):
  config = _config(checkpoint_every_steps=8)  # 6 steps per epoch: the resume starts mid-epoch 3.
  # Saved at the end only (the same program; saves take time).
  uninterrupted = experiment.train_and_evaluate(EXAMPLE, _config(), str(tmp_path / 'uninterrupted'))

  workdir = tmp_path / 'interrupted'
  with pytest.raises(Interrupted):
    experiment.train_and_evaluate(
        example_with_batches(EXAMPLE, interrupted_at(17)), config, str(workdir))
  assert saved_steps(workdir)[0] == 16
  assert len(metrics_log.read(workdir / 'metrics.jsonl')) == 2

  with pytest.raises(ValueError, match='already holds checkpoints .* --config.resume=True'):
    experiment.train_and_evaluate(EXAMPLE, config, str(workdir))  # A fresh run must not mix with the old one.
  config.resume = True
  fed = []

  def count_steps(source, epoch, start_step, batches):
    for step, batch in enumerate(batches, start_step):
      fed.append(epoch * source.steps_per_epoch + step)
      yield batch

  resumed = experiment.train_and_evaluate(example_with_batches(EXAMPLE, count_steps), config, str(workdir))
  assert fed == list(range(16, 24))  # From the checkpoint on, not from the start.
  assert without_timing(resumed) == without_timing(uninterrupted)
  chex.assert_trees_all_equal(final_state(workdir), final_state(tmp_path / 'uninterrupted'))
  for name in ('metrics.jsonl', gradient_log.FILENAME):
    assert (without_timing(metrics_log.read(workdir / name))
            == without_timing(metrics_log.read(tmp_path / 'uninterrupted' / name))), name
  _check_saved_model_gives_the_reported_loss(config, workdir, resumed)


# --- Non-finite losses. ---


def _nan_mask_at_step_8(source, epoch, start_step, batches):
  """A NaN weight for one window of the 8th step: its loss, gradients and update are NaN.

  Bytes cannot be NaN; the mask that weighs each window's loss can.
  """
  for step, batch in enumerate(batches, start_step):
    if epoch * source.steps_per_epoch + step == 7:
      batch['mask'][0] = np.nan
    yield batch


def test_skip_leaves_out_and_counts_the_nonfinite_step(tmp_path):
  config = _config(on_nonfinite='skip')
  history = experiment.train_and_evaluate(example_with_batches(EXAMPLE, _nan_mask_at_step_8), config,
                                          str(tmp_path))
  assert [record['train_skipped_steps'] for record in history] == [0, 1, 0, 0]
  assert all(np.isfinite(record['train_loss']) for record in history)
  # Its loss is left out of the sums and its windows out of the count: the second epoch's mean
  # is over 5 batches, 2 of them in the log interval of steps 7-9 and 3 in that of steps 10-12.
  interval = tensorboard_scalars(tmp_path)['interval/train_loss']
  np.testing.assert_allclose(history[1]['train_loss'],
                             (2 * np.float64(interval[9]) + 3 * np.float64(interval[12])) / 5,
                             rtol=1e-5)
  assert saved_steps(tmp_path) == [24]
  model, optimizer = final_state(tmp_path)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(model))
  # The skipped step left the optimizer state as it was: Adam counted 23 steps, not 24.
  counts = {int(np.asarray(x)) for path, x in jax.tree_util.tree_flatten_with_path(optimizer)[0]
            if 'count' in jax.tree_util.keystr(path)}
  assert counts == {23}, counts


def test_stop_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  config = _config(checkpoint_every_steps=6)  # on_nonfinite='stop'.
  with pytest.raises(loop.NonFiniteError) as error:
    experiment.train_and_evaluate(example_with_batches(EXAMPLE, _nan_mask_at_step_8), config, str(tmp_path))
  message = str(error.value)
  assert '\n' not in message
  assert message.startswith('training stopped at step 8: the loss'), message
  assert f'the last good checkpoint, {tmp_path}/checkpoints/6 (step 6), is kept' in message
  assert saved_steps(tmp_path) == [6]
  assert len(metrics_log.read(tmp_path / 'metrics.jsonl')) == 1


def test_the_study_and_its_tables_in_the_readme():
  config = study.get_config()
  experiment.validate_config(EXAMPLE, config)
  assert config.sweep.models == ('deep',) and models.SIZES['deep'].num_layers >= 8
  assert set(config.sweep.methods) == {'adam', 'clip_norm', 'znorm_table', 'znorm',
                                       'znorm_masked', 'znorm_pooled'}
  assert len(config.sweep.seeds) >= 3
  # The README's tables have the columns and rows the report writes.
  readme = (pathlib.Path(input_pipeline.__file__).parent / 'README.md').read_text()
  columns = EXAMPLE.table_columns
  assert report.markdown_table([], columns, config.dataset).splitlines()[0] in readme
  assert report.differences_table([], columns).splitlines()[0] in readme
  for method in config.sweep.methods:
    assert f'| {config.dataset} | deep | {methods.DESCRIPTIONS[method]} | ' in readme, method
