"""Two CPU processes joined by jax.distributed (gloo) train exactly as one process on 2 devices.

The reference is one process sharded over the same 2-device mesh, so both runs split every
batch the same way and must agree bit for bit. Against ``parallel=none`` they differ in
BatchNorm statistics and gradients summed as two half-batches; where a ReLU input changes
sign the trajectories part, so no elementwise tolerance would hold there. That sharded
training matches one device is tested in ``test_train.py`` on a short run.
"""

import os
import subprocess
import sys

import chex
import pytest

from examples.training import metrics_log
from tests.conftest import FAST_COMPILE_FLAGS
from tests.examples.processes import REPO
from tests.examples.processes import free_port
from tests.examples.saved import final_state


def _start(workdir, *flags, devices_per_process: int):
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_NUM_CPU_DEVICES')}
  env['JAX_PLATFORMS'] = 'cpu'
  # All three processes compile with XLA's optimizations mostly off (LLVM at -O0): half the
  # time of a run, which is mostly compiling, above all the initializers' threefry kernels.
  # XLA:CPU's older fusion emitters, and each program's LLVM module in one part (not split
  # for parallel code generation), halve what compiling remains: 4.5 s -> 2 s a process.
  env['XLA_FLAGS'] = (f'--xla_force_host_platform_device_count={devices_per_process} '
                      f'{FAST_COMPILE_FLAGS}')
  env['JAX_DISABLE_MOST_OPTIMIZATIONS'] = '1'
  return subprocess.Popen(
      [sys.executable, '-m', 'examples.main',
       '--config=examples/image_classification/configs/tiny.py', f'--workdir={workdir}',
       '--config.num_epochs=1', '--config.parallel=sharded', '--config.platform=cpu',
       '--config.compilation_cache=False', *flags],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
  )


def test_two_processes_match_one_process_on_the_same_mesh(tmp_path):
  two, one = tmp_path / 'two_processes', tmp_path / 'one_process'
  port = free_port()
  processes = [
      _start(two, f'--config.coordinator_address=localhost:{port}', '--config.num_processes=2',
             f'--config.process_id={process_id}', devices_per_process=1)
      for process_id in range(2)
  ] + [_start(one, devices_per_process=2)]
  outputs = [p.communicate(timeout=300)[0] for p in processes]
  for p, output in zip(processes, outputs):
    assert p.returncode == 0, output[-3000:]

  chex.assert_trees_all_equal(final_state(two), final_state(one))
  (got,), (want,) = (metrics_log.read(os.path.join(d, 'metrics.jsonl')) for d in (two, one))
  for key in ('step', 'train_loss', 'train_accuracy', 'test_accuracy'):
    assert got[key] == want[key], key
  # Each process evaluates its own half of the test set, so the test loss is summed in
  # another order than in one process: equal up to float32 rounding.
  assert got['test_loss'] == pytest.approx(want['test_loss'], rel=1e-6)
