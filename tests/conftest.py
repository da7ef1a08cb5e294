"""Test-session setup: 8 simulated CPU devices, set before JAX starts its backend."""

import contextlib
import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import chex
import jax
import pytest

chex.set_n_cpu_devices(8)


_FAST_COMPILE_DIRS = tuple(pathlib.Path(__file__).parent / name
                           for name in ('examples', 'benchmarks'))
_COMPILE_BOUND_DIRS = (*_FAST_COMPILE_DIRS, pathlib.Path(__file__).parent / 'notebooks')
# Also one LLVM module per program: splitting it for parallel code generation costs more than
# it gains on a CPU that the test workers keep busy.
FAST_COMPILE_FLAGS = '--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1'


def pytest_configure(config):
  """A session of only compile-bound tests compiles with XLA:CPU's older fusion emitters.

  The examples', benchmarks' and notebooks' tests spend most of their time compiling, which
  those emitters do 2-3 times faster (the language model's parallel-mode test: 94 s -> 47 s).
  XLA reads the flag once per process, when its backend starts (after this hook, before any
  test module runs JAX), and subprocesses inherit it. The library's float64 tolerances assume
  XLA's defaults, so a session that includes the library's tests keeps them: ``make test``
  runs the two groups as two sessions.
  """
  paths = [pathlib.Path(str(arg).split('::')[0]).resolve() for arg in config.args]
  if paths and all(any(path.is_relative_to(directory) for directory in _COMPILE_BOUND_DIRS)
                   for path in paths):
    flags = os.environ.get('XLA_FLAGS', '')
    if FAST_COMPILE_FLAGS not in flags:  # xdist workers inherit the controller's.
      os.environ['XLA_FLAGS'] = f'{flags} {FAST_COMPILE_FLAGS}'


@contextlib.contextmanager
def most_optimizations_off():
  """XLA compiles with LLVM at -O0 inside, in this process and in subprocesses started there."""
  previous = jax.config.read('jax_disable_most_optimizations')
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
    jax.config.update('jax_disable_most_optimizations', True)
    try:
      yield
    finally:
      jax.config.update('jax_disable_most_optimizations', previous)


@pytest.fixture(autouse=True)
def compile_with_most_optimizations_off(request):
  """The examples' and benchmarks' tests compile with LLVM at -O0, and so do their subprocesses.

  They are compile-bound: a tiny ResNet's eager initializers alone take 11 s to compile
  otherwise, in every process that builds one. The library's tests keep XLA's defaults, which
  their float64 tolerances were set for (float32 reductions accumulate less error there).
  Session fixtures whose results these tests compare bit for bit use the same setting.
  """
  if not any(request.node.path.is_relative_to(directory) for directory in _FAST_COMPILE_DIRS):
    yield
    return
  with most_optimizations_off():
    yield
