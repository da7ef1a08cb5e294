"""Optimized HLO of one optimizer step, with its kernel count and XLA's estimate of bytes moved.

For every tree and optimizer of ``overhead.py`` (``--optimizers`` picks some, separated by semicolons),
compiles one step (``tx.update`` + ``optax.apply_updates``), writes its
optimized HLO to ``--out/<tree>.<optimizer>.hlo.txt`` and prints:

* launches: instructions that run work (fusions, custom calls, copies,
  reductions...), i.e. kernels per step on a GPU: those of the entry
  computation, plus those in the bodies and branches of its loops and
  conditionals (each counted once: a loop body that runs N times counts once,
  and only one branch of a conditional runs);
* bytes: XLA's cost analysis of the bytes accessed, and that over the floor
  of 7 passes over the parameters (Adam reads g, m, v, p and writes m, v, p);
* what compile time grows with on XLA:CPU: the instructions of the
  unoptimized module, which every HLO pass walks, and the distinct fused
  kernels, each compiled by LLVM once however often it runs (identical
  kernels, such as Adam's for leaves of one shape, are compiled once).

For XLA's own dump of every pass, run it with ``XLA_FLAGS=--xla_dump_to=DIR``.

    python benchmarks/step_hlo.py --out=gpu_out/hlo --trees=resnet56,transformer
"""

import argparse
import collections
import pathlib
import re
import sys

import jax

# Also when imported as benchmarks.step_hlo: overhead.py is beside this file.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import overhead

_NO_WORK = frozenset({'parameter', 'constant', 'tuple', 'get-tuple-element', 'bitcast'})
_CONTROL_FLOW = frozenset({'while', 'conditional', 'call'})
_COMPUTATION = re.compile(r'^(ENTRY )?%(\S+) .*\{$')
_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%\S+\s*=\s*.*?\s([a-z][a-z0-9-]*)\(')
_ANY_INSTRUCTION = re.compile(r'^\s+(?:ROOT\s+)?%?[\w.\-]+\s*=\s')
_FUSION_CALLS = re.compile(r' fusion\(.*?calls=%([\w.\-]+)')
_APPLIED = re.compile(r'to_apply=%([\w.\-]+)')
_NAME = re.compile(r'%[\w.\-]+')
_METADATA = re.compile(r', metadata=\{[^}]*\}')
_CALLED = re.compile(r'(?:condition|body|to_apply|branch_computations|true_computation|'
                     r'false_computation)=\{?([^}]*?)(?=\}|,\s*[a-z_]+=|$)')


def _computations(hlo_text):
  """Computation name -> its instruction lines, and the entry computation's name."""
  computations, entry, name = {}, None, None
  for line in hlo_text.splitlines():
    header = _COMPUTATION.match(line)
    if header:
      name = header.group(2)
      computations[name] = []
      if header.group(1):
        entry = name
    elif line == '}':
      name = None
    elif name is not None:
      computations[name].append(line)
  return computations, entry


def entry_launches(hlo_text):
  """Opcode -> count of the instructions that do work, in the entry computation and in the
  computations its loops and conditionals run (each once)."""
  computations, entry = _computations(hlo_text)
  counts, seen, pending = collections.Counter(), set(), [entry]
  while pending:
    name = pending.pop()
    if name in seen or name not in computations:
      continue
    seen.add(name)
    for line in computations[name]:
      match = _INSTRUCTION.match(line)
      if not match or match.group(1) in _NO_WORK:
        continue
      if match.group(1) in _CONTROL_FLOW:
        for called in _CALLED.findall(line):
          pending.extend(part.strip().lstrip('%') for part in called.split(','))
      counts[match.group(1)] += 1
  return counts


def distinct_kernels(hlo_text):
  """The number of different fusion bodies, compared with names and metadata left out.

  A body includes the computations it applies (a reduction's ``add`` or ``max``).
  """
  computations, _ = _computations(hlo_text)

  def canonical(name):
    lines = computations.get(name, [])
    applied = [canonical(called) for line in lines for called in _APPLIED.findall(line)]
    return '\n'.join([_NAME.sub('%', _METADATA.sub('', line)) for line in lines] + applied)

  fused = {name for lines in computations.values() for line in lines
           for name in _FUSION_CALLS.findall(line)}
  return len({canonical(name) for name in fused})


def instruction_count(hlo_text):
  """The number of instructions in all computations of ``hlo_text`` (names with or without %)."""
  return sum(1 for line in hlo_text.splitlines() if _ANY_INSTRUCTION.match(line))


def bytes_accessed(compiled):
  """XLA's estimate of the bytes one run of ``compiled`` reads and writes."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, list):  # Older JAX: one dict per device program.
    analysis = analysis[0]
  return analysis['bytes accessed']


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--trees', default=','.join(overhead.TREES),
                      help=f'comma-separated subset of: {", ".join(overhead.TREES)}')
  parser.add_argument('--optimizers', default='adam;znorm_adam;chain(znorm, adam)',
                      help=f'semicolon-separated subset of: {"; ".join(overhead.OPTIMIZERS)}')
  parser.add_argument('--out', default='gpu_out/hlo', help='folder for the HLO text files')
  args = parser.parse_args()
  trees = args.trees.split(',')
  labels = [label.strip() for label in args.optimizers.split(';')]
  for label in labels:
    if label not in overhead.OPTIMIZERS:
      raise SystemExit(f'--optimizers: unknown optimizer {label!r}; '
                       f'choose from {"; ".join(overhead.OPTIMIZERS)}')
  for name in trees:
    if name not in overhead.TREES:
      raise SystemExit(f'--trees: unknown tree {name!r}; choose from {", ".join(overhead.TREES)}')
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)

  print(f'backend {jax.default_backend()}, device {jax.devices()[0].device_kind}, '
        f'JAX {jax.__version__}')
  for name in trees:
    grads = overhead.TREES[name](jax.random.key(0))
    params = jax.tree.map(lambda g: jax.ShapeDtypeStruct(g.shape, g.dtype), grads)
    floor = 7 * sum(g.size * g.dtype.itemsize for g in jax.tree.leaves(grads))
    print(f'\n{name}: {len(jax.tree.leaves(grads))} leaves, floor {floor / 1e6:.1f} MB per step')
    print(f'{"optimizer":34s} {"launches":>8s} {"MB":>9s} {"x floor":>7s} {"kernels":>7s} '
          f'{"HLO in":>7s}  launches by opcode')
    for label in labels:
      tx = overhead.OPTIMIZERS[label]()
      lowered = jax.jit(overhead.step_fn(tx)).lower(params, jax.eval_shape(tx.init, params), params)
      compiled = lowered.compile()
      text = compiled.as_text()
      safe_label = re.sub(r'[^A-Za-z0-9_]+', '_', label).strip('_')
      (out / f'{name}.{safe_label}.hlo.txt').write_text(text)
      launches = entry_launches(text)
      moved = bytes_accessed(compiled)
      print(f'{label:34s} {sum(launches.values()):8d} {moved / 1e6:9.1f} {moved / floor:7.2f} '
            f'{distinct_kernels(text):7d} {instruction_count(lowered.as_text(dialect="hlo")):7d}  '
            + ', '.join(f'{op} {n}' for op, n in launches.most_common()))


if __name__ == '__main__':
  main()
