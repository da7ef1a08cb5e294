"""Training throughput of the byte-level language model with ZNorm versus Adam, in tokens per second.

Whole train steps of the language model example (forward, backward,
``nnx.Optimizer`` update, the step's NaN/Inf checks) are timed in interleaved
rounds in one process, alternating the order of the methods, so machine load
hits all of them alike. A step trains on ``--batch_size`` windows of
``--context`` bytes: ``batch_size * context`` tokens. Methods are built as the
study builds them (``examples.study.methods.make_optimizer``): ``znorm`` takes
statistics per layer of the ``nnx.scan`` stack (``models.stacked_axes``) and per
row of the embedding tables (``methods.embedding_rows``), and
``clip_norm`` (global-norm clipping + Adam) is a peer that also reduces over
the whole gradient.

``--loop=device`` (the default on accelerators) runs a round's
``--steps_per_round`` steps inside one jitted ``lax.fori_loop`` (in-jit
timing: one host call per round, so host dispatch drops out). ``--loop=host``
(the default on a CPU) calls the jitted step once per step after
``--warmup_steps`` untimed steps. Every round ends with a device sync and
nothing else syncs inside it. The batch is random bytes, the same every step:
a step's cost does not depend on the text.

The script prints each method's median tokens/s, the spread of its rounds,
(max - min) / median, and each method's ratio over Adam: the median over rounds
of the ratio within a round (target for ZNorm: >= 0.97). The first call of
each method (compile, then one untimed round) is timed separately.

    python benchmarks/lm_throughput.py        # GPT-2 small's blocks, context 1024, batch 16, bf16
    python benchmarks/lm_throughput.py --model=tiny --context=16 --batch_size=4 --rounds=2
"""

import argparse
import os
import pathlib
import sys

import jax
import numpy as np
from flax import nnx

# Also when imported as benchmarks.lm_throughput: throughput.py is beside this file, the examples
# beside benchmarks/.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(1, str(pathlib.Path(__file__).resolve().parents[1]))
import throughput

from examples.language_model import models
from examples.language_model.task import language_model_task
from examples.study import methods
from examples.training import parallel

METHODS = ('adam', 'znorm', 'clip_norm')
BASELINE = 'adam'
TARGETS = {'znorm': 0.97}
"""Method -> the least throughput over Adam's that it should reach."""

STEPS_PER_ROUND = (2, 20)
"""Default steps per round (on a CPU, on an accelerator)."""


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='gpt2_small', choices=tuple(models.SIZES))
  parser.add_argument('--context', type=int, default=1024, help='bytes a window holds')
  parser.add_argument('--batch_size', type=int, default=16, help='windows per step')
  parser.add_argument('--dtype', default='bfloat16', choices=tuple(models.DTYPES),
                      help='compute dtype; parameters stay float32')
  parser.add_argument('--methods', default=','.join(METHODS),
                      help=f'comma-separated names from examples.study.methods; {BASELINE} is '
                      'always measured, as the baseline')
  throughput.add_round_arguments(parser, STEPS_PER_ROUND)
  args = throughput.check_round_arguments(parser, parser.parse_args(), STEPS_PER_ROUND)
  names = [name for name in args.methods.split(',') if name]
  unknown = [name for name in names if name not in methods.METHODS]
  if unknown:
    parser.error(f'unknown --methods {", ".join(unknown)}; valid: {", ".join(methods.METHODS)}')
  args.methods = tuple(dict.fromkeys([BASELINE, *names]))
  if args.context < 1:
    parser.error('--context must be positive')
  return args


def _optimizer_factory(method: str):
  """The study's optimizer of ``method``, with the model's stacked axes and embedding rows."""
  return lambda model: methods.make_optimizer(method, 1e-3, models.stacked_axes(model),
                                              methods.embedding_rows(model))


def main():
  args = _parse_args()
  data_parallel = parallel.make(args.parallel)
  tokens_per_step = args.batch_size * args.context
  rng = np.random.default_rng(0)
  batch = data_parallel.put_batch({
      'tokens': rng.integers(0, models.VOCAB_SIZE, size=(args.batch_size, args.context + 1),
                             dtype=np.uint8),
      'mask': np.ones(args.batch_size, np.float32),
  })
  task = language_model_task(args.model, context=args.context, dtype=args.dtype)
  num_params = sum(x.size for x in jax.tree.leaves(nnx.state(nnx.eval_shape(
      lambda: task.create_model(nnx.Rngs(0), None)), nnx.Param)))
  print(f'{args.model} ({num_params:,} parameters), context {args.context}, '
        f'batch {args.batch_size} ({tokens_per_step} tokens/step), {args.dtype}, '
        f'{args.rounds} rounds x {args.steps_per_round} steps, {args.loop} loop, '
        f'{args.clock} clock, parallel={args.parallel}; '
        f'backend {jax.default_backend()}, {jax.devices()[0].device_kind} '
        f'x{data_parallel.num_devices}, JAX {jax.__version__}; '
        f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
  compiled = {}
  for method in args.methods:
    run, carry, seconds = throughput.compiled_round(
        args, task, _optimizer_factory(method), data_parallel, batch)
    compiled[method] = (run, carry)
    # As it happens: on an accelerator, compiling is most of the run's time.
    print(f'  {method}: first call (compile + one round) {seconds:.1f} s')
  tokens_per_s = throughput.interleaved_rounds(args, compiled, batch, tokens_per_step)
  throughput.print_report(tokens_per_s, unit='tokens', items_per_step=tokens_per_step,
                          baseline=BASELINE, targets=TARGETS)


if __name__ == '__main__':
  main()
