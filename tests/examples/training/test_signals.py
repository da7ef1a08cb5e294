"""Preemption: real SIGTERM and SIGINT sent to a real training process.

``tiny`` runs 8 steps per epoch and 2 epochs, checkpoints every 3 steps; with
``--slow-from=5`` it prints ``step <k>`` and waits 2 s before each step from 5 on,
so a signal sent when ``step 5`` is printed arrives before step 5 runs.
"""

import os
import signal
import subprocess
import sys
import time

import chex
import pytest

from examples.training import metrics_log
from examples.training import workdir_lock
from tests.examples.processes import REPO
from tests.examples.processes import free_port
from tests.examples.saved import final_state
from tests.examples.saved import saved_steps
from tests.examples.saved import without_timing
from tests.examples.training import tiny


def _start(workdir, *flags, devices: int = 1, slow_from: int | None = 5, sigint_ignored=False):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env.update(JAX_PLATFORMS='cpu', XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  command = [sys.executable, '-m', 'tests.examples.training.tiny', str(workdir), *flags,
             *([f'--slow-from={slow_from}'] if slow_from else [])]
  if sigint_ignored:  # As a script's `cmd &` starts it: a shell without job control ignores it.
    command = ['sh', '-c', 'trap "" INT; exec "$@"', 'sh', *command]
  return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _read_until(process, text: str) -> list[str]:
  """The output lines up to the first that contains ``text``."""
  lines = []
  for line in process.stdout:
    lines.append(line)
    if text in line:
      return lines
  process.wait()
  pytest.fail(f'the run ended ({process.returncode}) before printing {text!r}: '
              f'{"".join(lines)[-3000:]}')


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_after_the_step_in_flight_and_resume_matches(reference, tmp_path, signum):
  process = _start(tmp_path)
  _read_until(process, 'step 5')
  process.send_signal(signum)
  output = process.communicate(timeout=120)[0]
  assert process.returncode == 128 + signum, output[-3000:]
  name = signal.Signals(signum).name
  message = output.strip().splitlines()[-1]
  assert message == (f'training stopped at step 5 by {name}: checkpoint {tmp_path}/checkpoints/5 '
                     'is saved and verified; continue with --config.resume=True.')
  assert f'{name} received: stopping after the step in flight' in output
  assert 'step 6' not in output
  assert saved_steps(tmp_path) == [5, 3]
  assert metrics_log.read(tmp_path / 'metrics.jsonl') == []  # No epoch ended.
  history = tiny.fit(tmp_path, tiny.config(resume=True))
  assert without_timing(history) == without_timing(reference[1])
  chex.assert_trees_all_equal(final_state(tmp_path), final_state(reference[0]))


def _wait_for(path, timeout: float = 60.0) -> None:
  deadline = time.monotonic() + timeout
  while not path.exists():
    assert time.monotonic() < deadline, f'{path} did not appear'
    time.sleep(0.05)


# The second signal's default action ends the process by it. SIGINT as a script's `cmd &`
# starts it, ignored: the first is caught all the same, and the second must not be ignored.
@pytest.mark.parametrize('signum, sigint_ignored', [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_second_signal_stops_at_once(tmp_path, signum, sigint_ignored):
  process = _start(tmp_path, sigint_ignored=sigint_ignored)
  _read_until(process, 'step 5')
  _wait_for(tmp_path / 'checkpoints' / '3')  # Saved in the background: not killed in flight.
  process.send_signal(signum)
  _read_until(process, 'received: stopping after the step in flight')
  process.send_signal(signum)
  output = process.communicate(timeout=120)[0]
  assert process.returncode == -signum, output[-3000:]
  assert 'saved and verified' not in output
  assert saved_steps(tmp_path) == [3]


def _two_processes(workdir, *flags, slow_from: int | None = 5) -> list[subprocess.Popen]:
  port = free_port()
  return [_start(workdir, f'--coordinator=localhost:{port}', '--num-processes=2',
                 f'--process-id={process_id}', *flags, slow_from=slow_from)
          for process_id in range(2)]


def test_two_processes_save_at_the_same_step(tmp_path):
  """A SIGTERM to one process of two: both save at one step through JAX's preemption sync point."""
  uninterrupted = _two_processes(tmp_path / 'uninterrupted', slow_from=None)
  workdir = tmp_path / 'interrupted'
  processes = _two_processes(workdir)
  _read_until(processes[1], 'step 5')
  processes[1].send_signal(signal.SIGTERM)
  outputs = [p.communicate(timeout=180)[0] for p in processes]
  messages = [output.strip().splitlines()[-1] for output in outputs]
  for process, output in zip(processes, outputs):
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
  step = int(messages[0].split('training stopped at step ')[1].split()[0])
  assert 5 <= step < 8, messages
  assert messages[0] == messages[1] == (
      f'training stopped at step {step} by a preemption notice (SIGTERM to a process of this '
      f'run): checkpoint {workdir}/checkpoints/{step} is saved and verified; continue with '
      '--config.resume=True.')
  assert saved_steps(workdir)[0] == step
  for process in _two_processes(workdir, '--resume', slow_from=None) + uninterrupted:
    output = process.communicate(timeout=180)[0]
    assert process.returncode == 0, output[-3000:]
  assert saved_steps(workdir) == [16, 15]
  histories = [metrics_log.read(d / 'metrics.jsonl') for d in (workdir, tmp_path / 'uninterrupted')]
  assert without_timing(histories[0]) == without_timing(histories[1])
  chex.assert_trees_all_equal(final_state(workdir), final_state(tmp_path / 'uninterrupted'))


def test_a_signal_in_the_last_step_says_training_is_complete(reference, tmp_path):
  process = _start(tmp_path, slow_from=16)
  _read_until(process, 'step 16')
  process.send_signal(signal.SIGTERM)
  output = process.communicate(timeout=120)[0]
  assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
  assert output.strip().splitlines()[-1] == (
      f'SIGTERM received in the last step: training is complete; checkpoint '
      f'{tmp_path}/checkpoints/16 is saved and verified.')
  chex.assert_trees_all_equal(final_state(tmp_path), final_state(reference[0]))


def test_a_signal_during_the_first_compile_stops_at_once_with_nothing_to_save(tmp_path):
  process = _start(tmp_path, '--stuck-compile', slow_from=None)
  _read_until(process, 'compiling')  # Its main thread now waits in C, the signals blocked there.
  process.send_signal(signal.SIGTERM)
  output = process.communicate(timeout=120)[0]
  assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
  assert output.strip().splitlines()[-1] == 'stopped before training by SIGTERM: nothing to save.'
  assert saved_steps(tmp_path) == []
  assert not (tmp_path / workdir_lock.FILENAME).exists()


def _catches(pid: int, signum: int) -> bool:
  """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc)."""
  with open(f'/proc/{pid}/status') as status:
    caught = next(int(line.split()[1], 16) for line in status if line.startswith('SigCgt:'))
  return bool(caught & (1 << (signum - 1)))


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_training_stops_the_command_line_at_once(tmp_path, signum):
  process = subprocess.Popen(
      [sys.executable, '-m', 'examples.main',
       '--config=examples/image_classification/configs/tiny.py', f'--workdir={tmp_path}/run'],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  # Python catches SIGINT from its start; the command line catches SIGTERM after SIGINT.
  while not _catches(process.pid, signal.SIGTERM):  # Its first line has run: it is importing.
    assert process.poll() is None
    time.sleep(0.001)
  process.send_signal(signum)
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signum, stderr[-3000:]
  assert stderr == f'stopped before training by {signal.Signals(signum).name}: nothing to save.\n'
  assert stdout == ''
  assert not (tmp_path / 'run').exists()
