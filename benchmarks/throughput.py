"""Interleaved rounds of whole train steps, shared by the training throughput benchmarks.

``train_throughput.py`` (a ResNet, images/s) and ``lm_throughput.py`` (the
language model, tokens/s) build a train step per method with the examples'
:func:`examples.training.steps.train_step`; this module compiles them, times
them in rounds whose order alternates, and prints the medians and ratios.

``--loop=device`` (the default on accelerators) runs a round's
``--steps_per_round`` steps inside one jitted ``lax.fori_loop``, so the figure
is the device's and not the host's dispatch. ``--loop=host`` (the default on a
CPU) calls the jitted step once per step, as a training loop does, after
``--warmup_steps`` untimed steps. Every round ends with a device sync and
nothing else syncs inside it. ``--clock=cpu`` times with the process's CPU
time (CPU runs only: it counts work, not latency).
"""

import argparse
import statistics
import time
from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from examples.training import parallel
from examples.training import steps
from examples.training.task import Task

CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


def add_round_arguments(parser: argparse.ArgumentParser, steps_per_round: tuple[int, int]):
  """The flags every throughput script shares: rounds, loop, warmup, parallelism and clock.

  ``steps_per_round`` is the default of ``--steps_per_round`` (on a CPU, on an
  accelerator); :func:`check_round_arguments` fills it in.
  """
  parser.add_argument('--rounds', type=int, default=6)
  parser.add_argument('--steps_per_round', type=int, default=None,
                      help=f'default {steps_per_round[0]} on a CPU, {steps_per_round[1]} otherwise')
  parser.add_argument('--loop', default=None, choices=('device', 'host'),
                      help='run a round\'s steps in one jitted loop, or one call per step '
                      '(default: host on a CPU, device otherwise)')
  parser.add_argument('--warmup_steps', type=int, default=2,
                      help='--loop=host: untimed steps at the start of every round, since the '
                      'first steps after switching methods run slower')
  parser.add_argument('--parallel', default='none', choices=parallel.MODES)
  parser.add_argument('--clock', default='wall', choices=tuple(CLOCKS),
                      help='cpu: process CPU time, steadier on a loaded CPU machine')


def check_round_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                          steps_per_round: tuple[int, int]) -> argparse.Namespace:
  """Fills in the backend's defaults of ``--steps_per_round`` and ``--loop``, checks the counts."""
  on_cpu = jax.default_backend() == 'cpu'
  if args.steps_per_round is None:
    args.steps_per_round = steps_per_round[0 if on_cpu else 1]
  if args.loop is None:
    args.loop = 'host' if on_cpu else 'device'
  if min(args.batch_size, args.rounds, args.steps_per_round) < 1 or args.warmup_steps < 0:
    parser.error('--batch_size, --rounds and --steps_per_round must be positive, '
                 '--warmup_steps not negative')
  return args


def looped(train_step: steps.TrainStep, num_steps: int) -> steps.TrainStep:
  """``num_steps`` train steps on the same batch in one ``lax.fori_loop``; the last metrics."""

  def loop(carry, batch):
    metrics = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                           jax.eval_shape(train_step, carry, batch)[1])
    return jax.lax.fori_loop(
        0, num_steps, lambda _, outputs: train_step(outputs[0], batch), (carry, metrics)
    )

  return loop


def compiled_round(args: argparse.Namespace, task: Task,
                   make_optimizer: Callable[[nnx.Module], optax.GradientTransformation],
                   data_parallel: parallel.DataParallel, batch):
  """A compiled round (one loop or one step), its placed carry, and the first call's seconds.

  ``make_optimizer`` builds a method's optimizer from the model (which gives
  e.g. its stacked axes). The carry is the train step's: the model and
  optimizer state, and the NaN/Inf record that the examples' train step keeps
  on device. The first call compiles and runs one round (untimed in the
  figures; its seconds say how long compiling took).
  """
  model = task.create_model(nnx.Rngs(0), data_parallel.data_axis_name)
  optimizer = nnx.Optimizer(model, make_optimizer(model), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  train_step = steps.train_step(task, graphdef, data_parallel.data_axis_name)
  if args.loop == 'device':
    train_step = looped(train_step, args.steps_per_round)
  run = data_parallel.compile(train_step, donate_argnums=(0,))
  carry = data_parallel.put_state((state, steps.initial_health(0)))
  start = time.perf_counter()
  carry, metrics = run(carry, batch)  # Compiles.
  jax.block_until_ready(metrics)
  return run, carry, time.perf_counter() - start


def timed_round(args: argparse.Namespace, run, carry, batch):
  """Runs one round; returns the new carry and the seconds it took."""
  if args.loop == 'host':
    for _ in range(args.warmup_steps):
      carry, _ = run(carry, batch)
  jax.block_until_ready(carry)
  now = CLOCKS[args.clock]
  start = now()
  if args.loop == 'device':
    carry, metrics = run(carry, batch)
  else:
    for _ in range(args.steps_per_round):
      carry, metrics = run(carry, batch)
  jax.block_until_ready((carry, metrics))
  return carry, now() - start


def interleaved_rounds(args: argparse.Namespace, compiled: dict, batch,
                       items_per_step: int) -> dict[str, list[float]]:
  """Each method's items/s in every round, the order of methods reversed every other round.

  ``compiled`` maps a method to its ``(run, carry)`` (from
  :func:`compiled_round`); the carries are donated, so it is updated in place.
  """
  methods = list(compiled)
  throughput = {m: [] for m in methods}
  for round_index in range(args.rounds):
    for method in methods if round_index % 2 == 0 else methods[::-1]:
      run, carry = compiled[method]
      carry, seconds = timed_round(args, run, carry, batch)
      compiled[method] = (run, carry)
      throughput[method].append(args.steps_per_round * items_per_step / seconds)
  return throughput


def print_report(throughput: dict[str, list[float]], *, unit: str, items_per_step: int,
                 baseline: str, targets: dict[str, float] | None = None) -> dict[str, float]:
  """Prints each method's median, ms/step, spread and rounds, then each ratio over ``baseline``.

  A ratio is the median over rounds of the ratio within a round; ``targets``
  gives the ones with a target (printed as ``target >= x``). Returns the
  ratios' medians, by method.
  """
  targets = targets or {}
  width = max(6, *map(len, throughput))
  for method, rounds in throughput.items():
    median = statistics.median(rounds)
    print(f'  {method:{width}s} median {median:10.1f} {unit}/s, '
          f'{1e3 * items_per_step / median:8.2f} ms/step, '
          f'spread {100 * (max(rounds) - min(rounds)) / median:5.1f}%  '
          f'(rounds: {", ".join(f"{x:.1f}" for x in rounds)})')
  medians = {}
  for method, rounds in throughput.items():
    if method == baseline:
      continue
    ratios = _ratios(rounds, throughput[baseline])
    medians[method] = statistics.median(ratios)
    target = f'; target >= {targets[method]}' if method in targets else ''
    print(f'  ratio {method} / {baseline}: {medians[method]:.3f} '
          f'(rounds {min(ratios):.3f}-{max(ratios):.3f}{target})')
  return medians


def _ratios(rounds: Sequence[float], baseline_rounds: Sequence[float]) -> list[float]:
  return [x / b for x, b in zip(rounds, baseline_rounds, strict=True)]
