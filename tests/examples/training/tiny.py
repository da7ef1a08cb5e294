"""A training run small enough to compile and train in a second: a ReLU MLP on random points.

Run as a module, it trains one such run in a work directory, so tests can kill or
signal a real process::

  python -m tests.examples.training.tiny WORKDIR [--kill-at-save STEP] [--resume]
      [--slow-from STEP] [--stuck-compile] [--coordinator HOST:PORT --num-processes N
      --process-id I] [--log-gradient-statistics] [--compilation-cache]

With ``--slow-from``, it prints ``step <k>`` before it feeds step ``k`` and, from
that step on, waits two seconds first: a test that reads the line has time to
send a signal before the step runs. With ``--coordinator``, the processes train
one run sharded over one CPU device each. With ``--stuck-compile``, signals are caught
from the start as the command line catches them, and the train step's compile prints
``compiling`` and never ends: its main thread waits in C, with the signals blocked there,
as in a long XLA compile. With ``--compilation-cache``, every compiled program goes into
``WORKDIR/jax_cache``, and a cache entry that cannot be written is reported as the command
line reports it.
"""

import argparse
import ctypes
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from examples.study import gradient_statistics
from examples.study import methods
from examples.training import checkpointing
from examples.training import cli
from examples.training import defaults
from examples.training import distributed
from examples.training import errors
from examples.training import loop
from examples.training import parallel
from examples.training import resume
from examples.training import stop_signals
from examples.training.data import ArraySource
from examples.training.task import MASK
from examples.training.task import Task

NUM_TRAIN, NUM_EVAL, FEATURES, CLASSES = 64, 24, 4, 3


class MLP(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(FEATURES, 8, rngs=rngs)
    self.out = nnx.Linear(8, CLASSES, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.hidden(x)))


def _metrics(model, batch):
  logits = model(batch['x'])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y'])
  correct = (jnp.argmax(logits, -1) == batch['y']).astype(jnp.float32)
  sums = {'loss': jnp.sum(losses * batch[MASK]), 'accuracy': jnp.sum(correct * batch[MASK])}
  return sums['loss'] / jnp.maximum(jnp.sum(batch[MASK]), 1.0), sums


TASK = Task(create_model=lambda rngs, axis_name: MLP(rngs), train_loss=_metrics,
            eval_metrics=lambda model, batch: _metrics(model, batch)[1])


def config(**overrides) -> ml_collections.ConfigDict:
  """The core's defaults for a run of 8 steps per epoch, 2 epochs, on CPU."""
  config = defaults.get_config()
  config.update(seed=0, method='adam', learning_rate=0.05, batch_size=8, num_epochs=2,
                parallel='none', platform='cpu', log_every_steps=2, checkpoint_every_steps=3,
                resume=False, progress_bar=False, max_nonfinite_steps=3)
  config.width = 8  # The model's own field, as an example's config adds them.
  config.update(overrides)
  return config


def data(run_config, *, nan_at: int | None = None, num_train: int = NUM_TRAIN) -> ArraySource:
  """Separable random points; ``nan_at`` puts a NaN into that training example."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(num_train + NUM_EVAL, FEATURES)).astype(np.float32)
  y = np.argmax(x[:, :CLASSES], axis=1).astype(np.int32)
  train_x = x[:num_train].copy()
  if nan_at is not None:
    train_x[nan_at, 0] = np.nan
  return ArraySource({'x': train_x, 'y': y[:num_train]}, {'x': x[num_train:], 'y': y[num_train:]},
                     global_batch_size=run_config.batch_size,
                     process_batch_size=run_config.batch_size // jax.process_count(),
                     seed=run_config.seed)


def fit(workdir: str, run_config=None, **data_kwargs):
  run_config = run_config or config()
  transform = methods.gradient_transform(run_config.method)
  optimizer = methods.make_optimizer_from(run_config.method, run_config.learning_rate, transform)
  return loop.fit(run_config, str(workdir), TASK, data(run_config, **data_kwargs), optimizer,
                  gradient_statistics=gradient_statistics.for_run(
                      run_config, nnx.eval_shape(lambda: TASK.create_model(nnx.Rngs(0), None)),
                      transform))


def final_params(workdir: str, run_config=None) -> dict:
  """The parameters of the newest checkpoint, read through ``resume.load_model``."""
  model = resume.load_model(run_config or config(), str(workdir), TASK)
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _kill_during_save(step: int) -> None:
  """Makes the process SIGKILL itself right after the save of ``step`` has started writing."""
  save = checkpointing.Checkpointer.save

  def save_then_die(self, at_step, **items):
    save(self, at_step, **items)
    if at_step == step:
      os.kill(os.getpid(), signal.SIGKILL)

  checkpointing.Checkpointer.save = save_then_die


def _slow_from(step: int) -> None:
  """Makes every ``ArraySource`` print ``step <k>`` before step ``k``, and wait from ``step`` on."""
  train_batches = ArraySource.train_batches

  def announced(self, epoch, start_step=0):
    for k, batch in enumerate(train_batches(self, epoch, start_step),
                              epoch * self.steps_per_epoch + start_step + 1):
      print(f'step {k}', flush=True)
      if k >= step:
        time.sleep(2.0)
      yield batch

  ArraySource.train_batches = announced


def _stuck_compile() -> None:
  """Makes the first train step's compile wait in C for good, where Python runs no handler."""
  compile_step = parallel.SingleDevice.compile

  def stuck(self, step, *, donate_argnums):
    compiled = compile_step(self, step, donate_argnums=donate_argnums)
    if donate_argnums:  # The train step.
      def compiling(*args):
        del args
        print('compiling', flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT))
        while True:
          ctypes.CDLL(None).sleep(600)
      return compiling
    return compiled

  parallel.SingleDevice.compile = stuck


if __name__ == '__main__':
  parser = argparse.ArgumentParser()
  parser.add_argument('workdir')
  parser.add_argument('--kill-at-save', type=int)
  parser.add_argument('--slow-from', type=int)
  parser.add_argument('--resume', action='store_true')
  parser.add_argument('--stuck-compile', action='store_true')
  parser.add_argument('--coordinator', default='')
  parser.add_argument('--num-processes', type=int, default=1)
  parser.add_argument('--process-id', type=int, default=0)
  parser.add_argument('--log-gradient-statistics', action='store_true')
  parser.add_argument('--compilation-cache', action='store_true')
  parser.add_argument('--parallel', help="'sharded' with a coordinator, else 'none'")
  args = parser.parse_args()
  distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  if args.kill_at_save is not None:
    _kill_during_save(args.kill_at_save)
  if args.slow_from is not None:
    _slow_from(args.slow_from)
  if args.stuck_compile:
    stop_signals.catch_from_start()
    _stuck_compile()
  if args.compilation_cache:
    cli.report_compilation_cache_errors_in_one_line()
    jax.config.update('jax_compilation_cache_dir', os.path.join(args.workdir, 'jax_cache'))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  try:
    fit(args.workdir, config(resume=args.resume, log_gradient_statistics=args.log_gradient_statistics,
                             parallel=args.parallel or ('sharded' if args.coordinator else 'none')))
  except errors.Interrupted as error:
    print(error, file=sys.stderr)
    sys.exit(error.exit_status)
  except errors.RunStopped as error:  # As the command line reports it.
    print(f'error: {error}', file=sys.stderr)
    sys.exit(error.exit_status)
