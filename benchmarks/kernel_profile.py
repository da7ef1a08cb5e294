"""Where an optimizer step's device time goes: its kernels, from a ``jax.profiler`` trace.

For each optimizer (Adam, ZNorm on the XLA path, ZNorm on the Pallas path and
their peers; ``pallas_check.VARIANTS``), ``--steps`` steps run in one jitted
loop (``overhead.py``'s device loop, gradient carried through an optimization
barrier) under ``jax.profiler.trace``. The trace's device events that name an
HLO operation (GPU kernels; on a CPU, XLA's thunks) are summed by operation
and divided by the steps: the table gives each optimizer's time per step, its
launches per step, its time by kind of kernel and its largest kernels, and the
difference from Adam's. On a GPU the kinds are what the floor argument of
``benchmarks/README.md`` needs: Adam's elementwise update, the statistics'
reductions (XLA path) or Pallas calls (Pallas path), and everything else.

    python benchmarks/kernel_profile.py --tree=transformer             # on a GPU
    python benchmarks/kernel_profile.py --tree=resnet56 --steps=20     # on this CPU
"""

import argparse
import collections
import pathlib
import sys
import tempfile

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import overhead
import pallas_check

KINDS = (
    ('Pallas statistics', ('triton', 'custom-call', 'custom_call', 'mosaic')),
    ('reductions', ('reduce', 'ynn')),
    ('loop bookkeeping', ('while', 'condition', 'copy', 'add_select', 'compare')),
)
"""Kind -> substrings of the HLO operation's name; any other kernel is 'elementwise'."""


def kind_of(op_name: str) -> str:
  lowered = op_name.lower()
  for kind, markers in KINDS:
    if any(marker in lowered for marker in markers):
      return kind
  return 'elementwise'


def kernel_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
  """Device nanoseconds and launches by HLO operation, from the trace's events that name one.

  On a GPU, the events of its kernel (stream) lines; the "XLA Ops" line, whose events
  span the kernels of each operation, only where no stream line names operations.
  """
  files = sorted(pathlib.Path(trace_dir).rglob('*.xplane.pb'))
  if not files:
    raise SystemExit(f'no trace was written under {trace_dir}')
  data = jax.profiler.ProfileData.from_file(str(files[-1]))
  planes = [plane for plane in data.planes if plane.name.startswith('/device:GPU')]
  lines = [line for plane in planes or data.planes for line in plane.lines]
  kernel_lines = [line for line in lines if 'Ops' not in line.name]
  totals, launches = collections.Counter(), collections.Counter()
  for line in kernel_lines if _names_ops(kernel_lines) else lines:
    for event in line.events:
      op = dict(event.stats).get('hlo_op')
      if op is not None:
        totals[op] += event.duration_ns
        launches[op] += 1
  return totals, launches


def _names_ops(lines) -> bool:
  return any('hlo_op' in dict(event.stats) for line in lines for event in line.events)


def profile(label, tx, kernels, grads, steps):
  """Per-step nanoseconds by operation, and launches, of ``steps`` looped steps of ``tx``."""
  with pallas_check.kernels(kernels):
    loop = jax.jit(overhead.looped_fn(tx, steps, 'barrier'), donate_argnums=(0, 1))
    compiled = loop.lower(*overhead.fresh_carry(tx, grads), grads).compile()
  jax.block_until_ready(compiled(*overhead.fresh_carry(tx, grads), grads))  # Warm up.
  carry = overhead.fresh_carry(tx, grads)
  jax.block_until_ready(carry)
  with tempfile.TemporaryDirectory(prefix='kernel_profile_') as trace_dir:
    with jax.profiler.trace(trace_dir):
      jax.block_until_ready(compiled(*carry, grads))
    totals, launches = kernel_times(trace_dir)
  if not totals:
    raise SystemExit(f'{label}: the trace holds no events that name an HLO operation')
  return ({op: t / steps for op, t in totals.items()},
          {op: n / steps for op, n in launches.items()})


def report(name, results, top):
  print(f'\n{name}: device time per step by kernel, from a jax.profiler trace')
  header = f'{"optimizer":34s} {"us/step":>9s} {"over adam":>9s} {"launches":>9s}'
  kinds = ['elementwise'] + [kind for kind, _ in KINDS]
  print(header + ''.join(f' {kind[:18]:>18s}' for kind in kinds))
  base = sum(results['adam'][0].values())
  for label, (times, launches) in results.items():
    by_kind = collections.Counter()
    for op, t in times.items():
      by_kind[kind_of(op)] += t
    total = sum(times.values())
    print(f'{label:34s} {total / 1e3:9.1f} {total / base:9.3f} {sum(launches.values()):9.0f}'
          + ''.join(f' {by_kind[kind] / 1e3:18.1f}' for kind in kinds))
  for label, (times, launches) in results.items():
    print(f'\n{label}: largest kernels (us per step, launches per step)')
    for op, t in sorted(times.items(), key=lambda item: -item[1])[:top]:
      print(f'  {t / 1e3:9.2f} {launches[op]:6.1f}  {op}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--tree', default='transformer', choices=tuple(overhead.TREES))
  parser.add_argument('--steps', type=int, default=10, help='steps in the profiled loop')
  parser.add_argument('--variants', default=';'.join(pallas_check.VARIANTS),
                      help='semicolon-separated subset of pallas_check.VARIANTS (adam is '
                           'always in)')
  parser.add_argument('--top', type=int, default=8, help='largest kernels listed per optimizer')
  args = parser.parse_args()
  labels = ['adam'] + [v for v in args.variants.split(';') if v and v != 'adam']
  for label in labels:
    if label not in pallas_check.VARIANTS:
      raise SystemExit(f'--variants: unknown {label!r}; choose from '
                       f'{", ".join(pallas_check.VARIANTS)}')
  print(f'backend {jax.default_backend()}, device {jax.devices()[0].device_kind}, '
        f'JAX {jax.__version__}')
  grads = overhead.TREES[args.tree](jax.random.key(0))
  results = {}
  for label in labels:
    kernels, optimizer = pallas_check.VARIANTS[label]
    results[label] = profile(label, overhead.OPTIMIZERS[optimizer](), kernels, grads, args.steps)
  leaves = jax.tree.leaves(grads)
  report(f'{args.tree} ({len(leaves)} leaves, {sum(x.size for x in leaves) / 1e6:.1f}M '
         f'parameters, {args.steps} steps in one jit)', results, args.top)


if __name__ == '__main__':
  main()
