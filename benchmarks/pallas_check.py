"""Checks ZNorm's Pallas statistics path on this backend, then times it against the XLA path.

On GPUs the library takes its grouped XLA path unless ``ZNORM_OPTAX_KERNELS``
says otherwise (``znorm_optax/_paths.py``). This script sets it per variant
while it traces, so one process compares the Pallas kernels, the default and
the per-leaf XLA path:

1. **Correctness** (``ZNORM_OPTAX_KERNELS=pallas``): ``znorm`` on a
   ``--size``-element float32 leaf (5e7 on a GPU, as issue 10 asks; 2e6
   elsewhere, where the kernels run in interpret mode), a mean of 1e4 times the
   std, constant leaves, 1e-30 scales, the largest float32 values, NaN and Inf,
   a tree of small leaves, bfloat16 and float16 leaves and the rows of stacked
   layers, against float64 NumPy (``tests/znorm_optax/
   reference.py``): at most 1e-5 absolute on unit-scale outputs. Derivatives
   (``jax.grad``) must equal the XLA path's. Exits with status 1 on a failure.
2. **Device time**: ``overhead.py``'s in-jit loop (``--timing=device``, the
   gradient carried through an optimization barrier), ``--rounds`` interleaved
   rounds, ratio over ``optax.adam`` per round, median; kernels per step from the
   compiled loop (``step_hlo.py``'s count).

    python benchmarks/pallas_check.py                      # both parts, GPT-2 and ResNet-56 trees
    python benchmarks/pallas_check.py --timing_trees=      # correctness only
    python benchmarks/pallas_check.py --skip_correctness --timing_trees=resnet50,transformer:bf16 \
        --variants='znorm_adam, Pallas;chain(clip_by_global_norm, adam)'
"""

import argparse
import contextlib
import os
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

# Beside this file; the float64 reference lives with the tests.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(1, str(pathlib.Path(__file__).resolve().parent.parent))
import overhead
import step_hlo

import znorm_optax
from tests.znorm_optax import reference
from znorm_optax import _paths

TOLERANCE = 1e-5


@contextlib.contextmanager
def kernels(choice):
  """Traces under ``ZNORM_OPTAX_KERNELS=choice``."""
  saved = os.environ.get(_paths.KERNELS_ENV)
  os.environ[_paths.KERNELS_ENV] = choice
  try:
    yield
  finally:
    if saved is None:
      del os.environ[_paths.KERNELS_ENV]
    else:
      os.environ[_paths.KERNELS_ENV] = saved


def correctness_cases(size, rng):
  biggest = float(np.finfo(np.float32).max)
  cases = {
      f'normal, {size:.0e} elements': 3.0 + 0.5 * rng.standard_normal(size, np.float32),
      'mean = 1e4 * std': 1e4 + rng.standard_normal(1_000_000, np.float32),
      'constant, large': np.full(300_000, -0.7, np.float32),
      'constant, small': np.full(100, 7.3, np.float32),
      'scale 1e-30': 1e-30 * (0.5 + rng.standard_normal(100_000)),
      'largest float32': rng.uniform(-biggest, biggest, 100_000),
      'nan': rng.standard_normal(100_000),
      'inf': rng.standard_normal(500),
  }
  cases['nan'][777] = np.nan
  cases['inf'][7] = np.inf
  for i, n in enumerate((3, 16, 64, 100, 1000, 1025, 4096, 9000, 65536)):
    cases[f'small leaf {i}, {n} elements'] = rng.standard_normal(n) * 10.0**(i - 4)
  cases = {name: np.asarray(x, np.float32) for name, x in cases.items()}
  # The one failure of the first H200 run: eps / 2**99 underflowed next to 1e30.
  cases['constant 1e30, 3x4'] = np.full((3, 4), 1e30, np.float32)
  cases['bfloat16, 1e6 elements'] = (2.0 + 0.5 * rng.standard_normal(1_000_000)).astype(
      jnp.bfloat16)
  cases['float16, 3000 elements'] = (rng.standard_normal(3000) - 1.0).astype(np.float16)
  # Layers of a scan stack (stacked_axes=0): each row its own group, small and large rows.
  layer_means = np.arange(12, dtype=np.float32)[:, None, None]
  cases['stacked 12 x 64 x 64'] = (layer_means + rng.standard_normal((12, 64, 64))).astype(
      np.float32)
  cases['stacked 3 x 100000'] = (np.array([[0.0], [1e3], [-5.0]])
                                 + rng.standard_normal((3, 100_000))).astype(np.float32)
  return cases


def _stacked(name):
  return name.startswith('stacked')


def check_correctness(size):
  """Prints each case's error against float64; returns whether all passed."""
  cases = correctness_cases(size, np.random.default_rng(0))
  grads = {name: jnp.asarray(x) for name, x in cases.items()}
  tx = znorm_optax.znorm(
      stacked_axes=lambda g: {name: 0 if _stacked(name) else None for name in g})
  with kernels('pallas'):
    compiled = jax.jit(tx.update).lower(grads, None).compile()
  print(f'compiled znorm step: {sum(step_hlo.entry_launches(compiled.as_text()).values())} '
        f'launches, {compiled.as_text().count("custom-call")} custom calls')
  updates, _ = compiled(grads, None)
  passed = True
  print(f'{"case":34s} {"max |error|":>12s}  result')
  for name, x in cases.items():
    got = np.asarray(updates[name], np.float64)
    if name in ('nan', 'inf'):
      ok = bool(np.all(np.isnan(got)))
      error = 'all NaN' if ok else 'not all NaN'
      passed &= ok
      print(f'{name:34s} {error:>12s}  {"ok" if ok else "FAIL"}')
      continue
    expected = (reference.per_slice(reference.znorm, x, (0,)) if _stacked(name)
                else reference.znorm(x))
    if name == 'scale 1e-30':  # eps dominates: outputs ~1e-20, compared relatively.
      error = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
      ok = error <= TOLERANCE
    else:
      error = np.max(np.abs(got - expected))
      # Half-precision outputs are rounded to their dtype.
      ok = error <= max(TOLERANCE, float(jnp.finfo(x.dtype).eps) * np.max(np.abs(expected)))
    passed &= ok
    print(f'{name:34s} {error:12.3e}  {"ok" if ok else "FAIL"}')

  small = {k: v for k, v in grads.items() if 'small' in k or 'mean' in k}
  def objective(g):
    return sum(jnp.sum(jnp.sin(u)) for u in jax.tree.leaves(tx.update(g, None)[0]))
  with kernels('pallas'):
    with_kernels = jax.jit(jax.grad(objective))(small)
  with kernels('xla'):
    without = jax.jit(jax.grad(objective))(small)
  # Relative to each leaf's largest derivative: a leaf of std 1e-4 has derivatives of 1e4.
  gap = max(float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))
            for a, b in zip(jax.tree.leaves(with_kernels), jax.tree.leaves(without)))
  ok = gap <= 1e-6 and all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(with_kernels))
  passed &= ok
  print(f'{"jax.grad: Pallas vs XLA (relative)":34s} {gap:12.3e}  {"ok" if ok else "FAIL"}')
  return passed


VARIANTS = {
    'adam': ('xla', 'adam'),
    'chain(znorm, adam), XLA': ('xla', 'chain(znorm, adam)'),
    'chain(znorm, adam), Pallas': ('pallas', 'chain(znorm, adam)'),
    'znorm_adam, XLA': ('xla', 'znorm_adam'),
    'znorm_adam, Pallas': ('pallas', 'znorm_adam'),
    'chain(znorm, adam), default': ('auto', 'chain(znorm, adam)'),
    'znorm_adam, default': ('auto', 'znorm_adam'),
    'chain(naive znorm, adam)': ('xla', 'chain(naive znorm, adam)'),
    'chain(clip_by_global_norm, adam)': ('xla', 'chain(clip_by_global_norm, adam)'),
}
"""Label -> (ZNORM_OPTAX_KERNELS while tracing, optimizer of overhead.OPTIMIZERS)."""


def tree_gradients(name):
  """``overhead.TREES[name]``'s gradients; a ``:bf16`` suffix casts the tree to bfloat16."""
  tree, _, dtype = name.partition(':')
  grads = overhead.TREES[tree](jax.random.key(0))
  if dtype:
    grads = jax.tree.map(lambda g: g.astype(jnp.bfloat16), grads)
  return grads


def time_tree(name, rounds, steps, labels=tuple(VARIANTS)):
  grads = tree_gradients(name)
  runs, launches = {}, {}
  for label in ('adam',) + tuple(label for label in labels if label != 'adam'):
    choice, optimizer = VARIANTS[label]
    tx = overhead.OPTIMIZERS[optimizer]()
    with kernels(choice):
      loop = jax.jit(overhead.looped_fn(tx, steps, 'barrier'), donate_argnums=(0, 1))
      compiled = loop.lower(*overhead.fresh_carry(tx, grads), grads).compile()
    launches[label] = sum(step_hlo.entry_launches(compiled.as_text()).values())
    jax.block_until_ready(compiled(*overhead.fresh_carry(tx, grads), grads))  # Warm up.
    runs[label] = (tx, compiled)

  times = {label: [] for label in runs}
  for round_index in range(rounds):
    order = list(runs) if round_index % 2 == 0 else list(runs)[::-1]
    for label in order:
      tx, compiled = runs[label]
      carry = overhead.fresh_carry(tx, grads)
      jax.block_until_ready(carry)
      start = time.perf_counter()
      jax.block_until_ready(compiled(*carry, grads))
      times[label].append((time.perf_counter() - start) / steps)
      del carry

  leaves = jax.tree.leaves(grads)
  print(f'\n{name}: {len(leaves)} leaves, {sum(x.size for x in leaves) / 1e6:.2f}M parameters; '
        f'{rounds} rounds x {steps} steps in one jit, barrier gradient')
  print(f'{"optimizer":34s} {"ms/step":>9s} {"ratio":>6s} {"ratio range":>12s} {"spread":>7s} '
        f'{"launches/step":>13s}')
  for label, own in times.items():
    ratios = [t / base for t, base in zip(own, times['adam'])]
    median = statistics.median(own)
    print(f'{label:34s} {1e3 * median:9.3f} {statistics.median(ratios):6.3f} '
          f'{min(ratios):5.3f}-{max(ratios):5.3f} {100 * (max(own) - min(own)) / median:6.1f}% '
          f'{launches[label]:13d}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  on_gpu = jax.default_backend() == 'gpu'
  parser.add_argument('--size', type=int, default=50_000_000 if on_gpu else 2_000_000,
                      help='elements of the large correctness leaf')
  parser.add_argument('--timing_trees', default='transformer,resnet56' if on_gpu else '',
                      help=f'comma-separated subset of: {", ".join(overhead.TREES)}, each '
                           'optionally with :bf16 (the tree in bfloat16) (empty: none; off a '
                           'GPU the kernels run in interpret mode, far too slow to time)')
  parser.add_argument('--variants', default=';'.join(VARIANTS),
                      help='semicolon-separated subset of the timed optimizers (adam is always '
                           f'in): {"; ".join(VARIANTS)}')
  parser.add_argument('--skip_correctness', action='store_true',
                      help='time only (a separate call checked correctness)')
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--steps', type=int, default=None,
                      help='steps per round (default: overhead.py\'s, per tree and backend)')
  args = parser.parse_args()
  names = [n for n in args.timing_trees.split(',') if n]
  for name in names:
    tree, _, dtype = name.partition(':')
    if tree not in overhead.TREES or dtype not in ('', 'bf16'):
      raise SystemExit(f'--timing_trees: unknown tree {name!r}; '
                       f'choose from {", ".join(overhead.TREES)}, each optionally with :bf16')
  labels = [label for label in args.variants.split(';') if label]
  for label in labels:
    if label not in VARIANTS:
      raise SystemExit(f'--variants: unknown {label!r}; choose from {"; ".join(VARIANTS)}')

  print(f'backend {jax.default_backend()}, device {jax.devices()[0].device_kind}, '
        f'JAX {jax.__version__}, optax {optax.__version__}'
        + ('' if on_gpu else '; kernels in interpret mode'))
  passed = True
  if not args.skip_correctness:
    passed = check_correctness(args.size)
    print(f'correctness: {"PASSED" if passed else "FAILED"}')
  for name in names:
    steps = args.steps or overhead.STEPS_PER_ROUND[name.partition(':')[0]][0 if not on_gpu else 1]
    time_tree(name, args.rounds, steps, labels)
  if not passed:
    raise SystemExit(1)


if __name__ == '__main__':
  main()
