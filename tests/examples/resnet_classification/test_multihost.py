"""Two local CPU processes joined by jax.distributed (gloo) train like one process."""

import os
import socket
import subprocess
import sys

import chex
import numpy as np

from examples.resnet_classification import train
from examples.training import checkpointing
from examples.training import metrics_log

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _final_state(workdir):
  checkpointer = checkpointing.Checkpointer(workdir, every_steps=1)
  leaves, _ = checkpointer.restore(checkpointer.latest_step())
  checkpointer.close()
  return leaves


def test_two_processes_match_one(config, tmp_path):
  config.num_epochs = 1
  config.parallel = 'none'
  reference = train.train_and_evaluate(config, str(tmp_path / 'one_process'))

  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_NUM_CPU_DEVICES')}
  env['JAX_PLATFORMS'] = 'cpu'
  port, workdir = _free_port(), tmp_path / 'two_processes'
  processes = [
      subprocess.Popen(
          [sys.executable, '-m', 'examples.resnet_classification.main',
           '--config=examples/resnet_classification/configs/tiny.py', f'--workdir={workdir}',
           '--config.num_epochs=1', '--config.parallel=sharded', '--config.compilation_cache=False',
           f'--config.coordinator_address=localhost:{port}', '--config.num_processes=2',
           f'--config.process_id={process_id}'],
          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      )
      for process_id in range(2)
  ]
  outputs = [p.communicate(timeout=300)[0] for p in processes]
  for p, output in zip(processes, outputs):
    assert p.returncode == 0, output[-3000:]

  (got,) = metrics_log.read(os.path.join(workdir, 'metrics.jsonl'))
  for key in ('train_loss', 'train_accuracy', 'test_loss', 'test_accuracy'):
    np.testing.assert_allclose(got[key], reference[0][key], rtol=1e-4, err_msg=key)
  chex.assert_trees_all_close(_final_state(str(workdir)),
                              _final_state(str(tmp_path / 'one_process')), rtol=1e-4, atol=1e-5)
