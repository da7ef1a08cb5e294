"""The training core on a tiny linear task: parallel modes, resume, load_model, sweep, output."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import special

from examples.study import defaults
from examples.study import gradient_statistics
from examples.study import methods
from examples.study import sweep
from examples.training import loop
from examples.training import metrics_log
from examples.training import parallel
from examples.training import resume
from examples.training.data import ArraySource
from examples.training.task import MASK
from examples.training.task import Task
from tests.examples.saved import final_state
from tests.examples.saved import saved_steps
from tests.examples.saved import tensorboard_scalars
from tests.examples.saved import without_timing

FEATURES, CLASSES = 6, 3
NUM_TRAIN, NUM_EVAL = 96, 20


class BatchNormLinear(nnx.Module):
  """A linear classifier on batch-normalized inputs: the BatchNorm statistics cross devices."""

  def __init__(self, rngs: nnx.Rngs, batch_norm_axis_name: str | None):
    self.norm = nnx.BatchNorm(FEATURES, momentum=0.8, axis_name=batch_norm_axis_name, rngs=rngs)
    self.linear = nnx.Linear(FEATURES, CLASSES, rngs=rngs)

  def __call__(self, x):
    return self.linear(self.norm(x))


def _sums(model, batch):
  logits = model(batch['x'])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y'])
  correct = (jnp.argmax(logits, -1) == batch['y']).astype(jnp.float32)
  return {'loss': jnp.sum(losses * batch[MASK]), 'accuracy': jnp.sum(correct * batch[MASK])}


def _train_loss(model, batch):
  sums = _sums(model, batch)
  return sums['loss'] / jnp.maximum(jnp.sum(batch[MASK]), 1.0), sums


TASK = Task(create_model=BatchNormLinear, train_loss=_train_loss, eval_metrics=_sums)


def _arrays(size, seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(size, FEATURES)).astype(np.float32) * [1, 2, 3, 1, 5, 0.5]
  y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1)
  return {'x': x.astype(np.float32), 'y': y.astype(np.int32)}


TRAIN, EVALUATION = _arrays(NUM_TRAIN, 0), _arrays(NUM_EVAL, 1)


def _config(**overrides):
  """12 steps per epoch of 8 examples (1 per device when sharded over 8), 2 epochs."""
  config = defaults.get_config()
  config.update(model='linear', method='znorm', learning_rate=0.05, batch_size=8, num_epochs=2,
                platform='cpu', parallel='none', log_every_steps=4, checkpoint_every_steps=5,
                progress_bar=False)
  config.update(overrides)
  return config


def _source(config):
  return ArraySource(TRAIN, EVALUATION, global_batch_size=config.batch_size,
                     process_batch_size=parallel.process_batch_size(config), seed=config.seed)


def _fit(config, workdir, source=None):
  transform = methods.gradient_transform(config.method)
  optimizer = methods.make_optimizer_from(config.method, config.learning_rate, transform)
  return loop.fit(config, str(workdir), TASK, source or _source(config), optimizer,
                  gradient_statistics=gradient_statistics.for_run(
                      config, nnx.eval_shape(lambda: TASK.create_model(nnx.Rngs(0), None)),
                      transform))


def test_parallel_modes_agree(tmp_path):
  assert len(jax.devices('cpu')) == 8
  results = {}
  modes = {'none': {}, 'sharded': {}, 'sharded explicit': {'mesh_axis_types': 'explicit'},
           'fsdp': {'fsdp_devices': 4}, 'fsdp explicit': {'mesh_axis_types': 'explicit'},
           'pmap': {}}
  for mode, overrides in modes.items():
    # One checkpoint, at the end: saves are most of a run's time here.
    config = _config(parallel=mode.split()[0], checkpoint_every_steps=24, **overrides)
    history = _fit(config, tmp_path / mode)
    results[mode] = (without_timing(history), final_state(tmp_path / mode))
  want_history, want_state = results['none']
  assert want_history[-1]['test_accuracy'] > 0.6  # It learns: chance is about 1/3.
  for mode in list(modes)[1:]:
    history, state = results[mode]
    chex.assert_trees_all_close(state, want_state, rtol=1e-4, atol=1e-5)
    for got, want in zip(history, want_history, strict=True):
      assert got.keys() == want.keys()
      np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-4, err_msg=mode)


class _Interrupted(Exception):
  pass


class _StopsAtStep:
  """The tiny task's source, raising at a global training step as a crash would."""

  def __init__(self, source, step):
    self._source, self._step = source, step
    self.steps_per_epoch = source.steps_per_epoch

  def train_batches(self, epoch, start_step=0):
    for step, batch in enumerate(self._source.train_batches(epoch, start_step), start_step):
      if epoch * self.steps_per_epoch + step == self._step:
        raise _Interrupted
      yield batch

  def eval_batches(self):
    return self._source.eval_batches()


def test_resume_equals_an_uninterrupted_run(tmp_path):
  config = _config()
  uninterrupted = _fit(config, tmp_path / 'uninterrupted')
  workdir = tmp_path / 'interrupted'
  with pytest.raises(_Interrupted):
    _fit(config, workdir, _StopsAtStep(_source(config), 17))  # Mid-epoch 2.
  assert saved_steps(workdir) == [15, 10]
  config.resume = True
  resumed = _fit(config, workdir)
  assert without_timing(resumed) == without_timing(uninterrupted)
  chex.assert_trees_all_equal(final_state(workdir), final_state(tmp_path / 'uninterrupted'))


def test_load_model_returns_the_trained_model(tmp_path):
  config = _config(checkpoint_every_steps=24)  # The end's only.
  history = _fit(config, tmp_path)
  model = resume.load_model(config, str(tmp_path), TASK)
  initial = TASK.create_model(nnx.Rngs(config.seed), None)
  assert not np.allclose(model.linear.kernel[...], initial.linear.kernel[...])
  # Evaluated in float64 NumPy from the restored weights and running statistics, it scores the
  # run's last test loss and accuracy.
  norm, linear = model.norm, model.linear
  x = (EVALUATION['x'] - np.float64(norm.mean[...])) / np.sqrt(np.float64(norm.var[...])
                                                                + norm.epsilon)
  x = x * norm.scale[...] + norm.bias[...]
  logits = x @ np.float64(linear.kernel[...]) + linear.bias[...]
  loss = -special.log_softmax(logits, axis=1)[np.arange(NUM_EVAL), EVALUATION['y']].mean()
  accuracy = (logits.argmax(1) == EVALUATION['y']).mean()
  assert history[-1]['test_accuracy'] == pytest.approx(accuracy, abs=1e-9)
  assert history[-1]['test_loss'] == pytest.approx(loss, rel=1e-5)


def test_sweep_runs_the_grid_and_skips_finished_runs(tmp_path):
  config = _config(resume=True, num_epochs=1, checkpoint_every_steps=12)  # The end's only.
  config.sweep.models = ('linear',)
  config.sweep.methods = ('adam', 'znorm')
  config.sweep.seeds = (0, 1)
  trained_steps = []

  def run_one(run_config, run_dir):
    source = _source(run_config)
    real_batches = source.train_batches

    def counted_batches(epoch, start_step=0):
      for batch in real_batches(epoch, start_step):
        trained_steps.append((run_config.method, run_config.seed))
        yield batch

    source.train_batches = counted_batches
    return _fit(run_config, run_dir, source)

  first = sweep.run_sweep(run_one, config, str(tmp_path))
  assert [(r.method, r.seed) for r in first] == [('adam', 0), ('adam', 1), ('znorm', 0),
                                                  ('znorm', 1)]
  assert len(trained_steps) == 4 * 12
  assert first[0].history != first[1].history  # Each run has its own seed ...
  assert first[0].history != first[2].history  # ... and method.
  trained_steps.clear()
  again = sweep.run_sweep(run_one, config, str(tmp_path))
  assert trained_steps == []
  assert [r.history for r in again] == [r.history for r in first]


class _FakeClock:
  """``time.perf_counter`` for the loop: 1000 s per trace of the train loss, 1 s per batch."""

  def __init__(self):
    self.now = 0.0

  def perf_counter(self):
    return self.now

  def batches(self, source):
    real_batches = source.train_batches

    def ticking(epoch, start_step=0):
      for batch in real_batches(epoch, start_step):
        self.now += 1.0
        yield batch

    source.train_batches = ticking
    return source

  def task(self):
    def train_loss(model, batch):
      self.now += 1000.0  # A compile: the loss runs in Python only while the step is traced.
      return _train_loss(model, batch)

    return dataclasses.replace(TASK, train_loss=train_loss)


def test_each_epoch_is_printed_and_its_throughput_leaves_out_the_compile(tmp_path, capsys,
                                                                         monkeypatch):
  clock = _FakeClock()
  monkeypatch.setattr(loop, 'time', clock)
  config = _config(method='adam')  # progress_bar=False.
  history = loop.fit(config, str(tmp_path), clock.task(), clock.batches(_source(config)),
                     methods.make_optimizer('adam', config.learning_rate), name='linear')
  # 8 examples a (fake) second: epoch 1's 11 steps after the compiling one, then 12.
  assert [record['train_examples_per_second'] for record in history] == [8.0, 8.0]
  lines = capsys.readouterr().out.splitlines()
  assert [line.split(':')[0] for line in lines] == ['linear epoch 1', 'linear epoch 2']
  assert lines[-1].endswith(
      f'test_loss {history[-1]["test_loss"]:.4g}, train_examples_per_second 8')
  intervals = tensorboard_scalars(tmp_path)['interval/train_examples_per_second']
  assert intervals == {step: 8.0 for step in range(4, 25, 4)}

  # One step per epoch: epoch 1 has no step without the compile, and no throughput.
  config = _config(method='adam', batch_size=NUM_TRAIN, log_every_steps=1)
  history = loop.fit(config, str(tmp_path / 'one_step'), clock.task(),
                     clock.batches(_source(config)),
                     methods.make_optimizer('adam', config.learning_rate), name='linear')
  assert [record['train_examples_per_second'] for record in history] == [None, NUM_TRAIN]
  assert metrics_log.read(tmp_path / 'one_step' / 'metrics.jsonl') == history
  assert capsys.readouterr().out.splitlines()[0].endswith('train_examples_per_second n/a')
  scalars = tensorboard_scalars(tmp_path / 'one_step')
  assert scalars['epoch/train_examples_per_second'] == {2: NUM_TRAIN}
  assert scalars['interval/train_examples_per_second'] == {2: NUM_TRAIN}
