"""Compile-only cost of one optimizer step on GPUs and TPUs, from a host without them.

JAX runs XLA's GPU and TPU compilers on a CPU host ("deviceless" ahead-of-time
compilation): the result is the optimized program a GPU or TPU would run. This
script compiles one step (``tx.update`` + ``optax.apply_updates``) of each
optimizer on gradient trees shaped like real models and prints, as a ratio over
``optax.adam`` compiled the same way:

* GPU (H100 and A100 targets): the kernels the step launches, from XLA's thunk
  sequence (one per kernel, inside a CUDA graph or not);
* TPU (v5e, v6e, v5p): the sum of libtpu's ``estimated_cycles`` over the
  step's top-level ops (its cost model), and the number of those ops.

These are structure and a model, not time: a kernel's length, a launch's cost
and how well the model fits a real chip show only on the device
(``gpu_check.sh`` times the step where a GPU is at hand).

It needs a JAX with the CUDA plugin, ``ptxas`` and libtpu, which the main
virtual environment keeps out (JAX would probe them at every start):
``make aot-cost`` builds ``.venv-aot`` with them at the main venv's versions and
runs this script there.

    make aot-cost
    .venv-aot/bin/python benchmarks/aot_cost.py --trees=resnet56 --targets=h100,v5e
"""

import os

# Compile only: no accelerator is probed, and libtpu stays quiet about the missing one.
for _name, _value in (('JAX_PLATFORMS', 'cpu'), ('TPU_SKIP_MDS_QUERY', '1'),
                      ('TPU_ACCELERATOR_TYPE', 'v5litepod-1'), ('TPU_WORKER_ID', '0'),
                      ('TPU_WORKER_HOSTNAMES', 'localhost'), ('TF_CPP_MIN_LOG_LEVEL', '3'),
                      # Processes that only compile may share libtpu (pytest-xdist workers).
                      ('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')):
  os.environ.setdefault(_name, _value)

import argparse
import functools
import glob
import pathlib
import re
import sys
import tempfile
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.experimental import topologies

# The repository (examples) and this folder (overhead), also when run as a script.
sys.path[:0] = [str(pathlib.Path(__file__).resolve().parents[1]),
                str(pathlib.Path(__file__).resolve().parent)]
import overhead

import znorm_optax

TARGET_CONFIGS = pathlib.Path(__file__).resolve().parent / 'aot_targets'
GPU_TARGETS = {'h100': 'h100_sxm.txtpb', 'a100': 'a100_sxm.txtpb'}
"""GPU -> XLA GpuTargetConfig in ``aot_targets/``. The H100's was dumped from a
real H100; the A100's is that file with an A100-SXM4-80GB's compute capability
(8.0), cores, clocks, memory and caches."""
TPU_TARGETS = {'v5e': 'v5e:1x1', 'v6e': 'v6e:1x1', 'v5p': 'v5p:1x1x1'}
TARGETS = (*GPU_TARGETS, *TPU_TARGETS)


class Cost(NamedTuple):
  """A step's cost on one target: kernel launches (GPU) or modelled cycles (TPU), and ops."""

  value: int
  ops: int


@functools.cache
def device(target: str) -> jax.Device:
  """A device of `target` that exists only to compile for."""
  jax.config.update('jax_platforms', 'cpu')
  if target in GPU_TARGETS:
    config = (TARGET_CONFIGS / GPU_TARGETS[target]).read_text()
    return topologies.get_topology_desc(
        platform='cuda', target_config=config, topology='1x1x1').devices[0]
  return topologies.get_topology_desc(
      topology_name=TPU_TARGETS[target], platform='tpu',
      chips_per_host_bounds=(1, 1, 1)).devices[0]


def compile_step(tx: optax.GradientTransformation, grads, target: str,
                 dump_to: str | None = None):
  """One step of `tx` on `grads` (shapes and dtypes only), compiled for `target`."""
  dev = device(target)
  sharding = jax.sharding.SingleDeviceSharding(dev)

  def abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)

  state = jax.eval_shape(tx.init, grads)
  options = {'xla_dump_to': dump_to} if dump_to else None
  # Pallas lowers for the device in context; without it, it lowers for the CPU.
  with jax.default_device(dev):
    lowered = jax.jit(overhead.step_fn(tx)).trace(
        abstract(grads), abstract(state), abstract(grads)).lower()
    return lowered.compile(compiler_options=options)


_LAUNCH = re.compile(
    r'^\s*\d+: k(Kernel|CustomKernel|Memset32BitValue|Memzero|Copy)\b', re.MULTILINE)


def gpu_launches(tx, grads, target: str = 'h100') -> Cost:
  """Kernels (and device copies) one step launches, from XLA's thunk sequence."""
  with tempfile.TemporaryDirectory() as dump:
    compile_step(tx, grads, target, dump_to=dump)
    sequences = glob.glob(f'{dump}/*thunk_sequence_after_thunk_passes.txt')
    if len(sequences) != 1:
      raise RuntimeError(f'expected one thunk sequence in the XLA dump, found {sequences}')
    launches = len(_LAUNCH.findall(pathlib.Path(sequences[0]).read_text()))
  return Cost(launches, launches)


_CYCLES = re.compile(r'"estimated_cycles":"?(\d+)')


def tpu_cycles(tx, grads, target: str = 'v5e') -> Cost:
  """libtpu's estimated cycles summed over the step's top-level ops, and their number."""
  text = compile_step(tx, grads, target).as_text()
  entry = text[text.index('\nENTRY'):]
  cycles = [int(c) for c in _CYCLES.findall(entry)]
  return Cost(sum(cycles), len(cycles))


def cost(tx, grads, target: str) -> Cost:
  return gpu_launches(tx, grads, target) if target in GPU_TARGETS else tpu_cycles(
      tx, grads, target)


def _bfloat16(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16), tree)


def _abstract(make):
  return lambda: (jax.eval_shape(lambda: make(jax.random.key(0))), None)


def language_model_gradients():
  """The language model example's GPT-2-small stack (``nnx.scan``) and its layer axes."""
  from flax import nnx

  from examples.language_model import models
  model = nnx.eval_shape(lambda: models.create_model(
      'gpt2_small', context=1024, rngs=nnx.Rngs(0)))
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params), \
      models.stacked_axes(model)


TREES = {
    'resnet56': _abstract(overhead.resnet56_gradients),
    'resnet50': _abstract(overhead.resnet50_gradients),
    'gpt2': _abstract(overhead.transformer_gradients),
    'gpt2_bf16': lambda: (_bfloat16(jax.eval_shape(
        lambda: overhead.transformer_gradients(jax.random.key(0)))), None),
    'lm_scanned': language_model_gradients,
}
"""Tree -> () -> (abstract gradients, stacked axes or None)."""


def _chain(**znorm_options):
  return lambda stacked: optax.chain(
      znorm_optax.znorm(stacked_axes=stacked, **znorm_options), optax.adam(1e-3))


METHODS = {
    'adam': ('adam', lambda stacked: optax.adam(1e-3)),
    'clip': ('clip_by_global_norm + adam', lambda stacked: optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(1e-3))),
    'naive': ('naive tree.map znorm + adam',
              lambda stacked: optax.chain(overhead.naive_znorm(), optax.adam(1e-3))),
    'znorm': ('chain(znorm(), adam)', _chain()),
    'znorm_adam': ('znorm_adam', lambda stacked: znorm_optax.znorm_adam(
        1e-3, stacked_axes=stacked)),
    'xla': ("chain(znorm(kernels='xla'), adam)", _chain(kernels='xla')),
    'grouped': ("chain(znorm(kernels='grouped'), adam)", _chain(kernels='grouped')),
    'pallas': ("chain(znorm(kernels='pallas'), adam)", _chain(kernels='pallas')),
}
"""Method -> (label, (stacked axes) -> optimizer). `znorm` and `znorm_adam` are the
default; `pallas` is GPU-only (its TPU branch would run the kernels interpreted)."""


def _runs_on(method: str, target: str) -> bool:
  return method != 'pallas' or target in GPU_TARGETS


def versions() -> str:
  import jaxlib
  names = [f'jax {jax.__version__}', f'jaxlib {jaxlib.__version__}', f'optax {optax.__version__}']
  try:
    from importlib import metadata
    names.append(f'libtpu {metadata.version("libtpu")}')
    names.append(f'jax-cuda12-plugin {metadata.version("jax-cuda12-plugin")}')
  except metadata.PackageNotFoundError:
    pass
  return ', '.join(names)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--trees', default=','.join(TREES))
  parser.add_argument('--methods', default=','.join(METHODS),
                      help='comma-separated; adam, the baseline, is always measured')
  parser.add_argument('--targets', default=','.join(TARGETS))
  args = parser.parse_args(argv)
  trees = args.trees.split(',')
  methods = ['adam'] + [m for m in args.methods.split(',') if m != 'adam']
  targets = args.targets.split(',')
  for name, chosen, known in (('trees', trees, TREES), ('methods', methods, METHODS),
                              ('targets', targets, TARGETS)):
    unknown = [v for v in chosen if v not in known]
    if unknown:
      parser.error(f'--{name}: unknown {unknown}; choose from {", ".join(known)}')

  print(f'Deviceless compiles, {versions()}.')
  print('GPU: kernel launches per step; TPU: libtpu estimated cycles per step (top-level ops).')
  print('Each cell: ratio over adam (absolute value; TPU ops in brackets).\n')
  header = ['tree', 'method', *targets]
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for tree_name in trees:
    grads, stacked = TREES[tree_name]()
    baseline = {}
    for method in methods:
      cells = []
      for target in targets:
        if not _runs_on(method, target):
          cells.append('-')
          continue
        start = time.perf_counter()
        measured = cost(METHODS[method][1](stacked), grads, target)
        print(f'  {tree_name} {method} {target}: {measured} '
              f'({time.perf_counter() - start:.1f} s)', file=sys.stderr, flush=True)
        baseline.setdefault(target, measured)
        ratio = measured.value / baseline[target].value
        ops = '' if target in GPU_TARGETS else f' [{measured.ops}]'
        cells.append(f'{ratio:.2f} ({measured.value}{ops})')
      print(f'| {tree_name} | {METHODS[method][0]} | ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
  main()
