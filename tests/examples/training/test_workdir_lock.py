"""One run per work directory: a lock that names its holder, taken over from a dead one.

The command line's one-line refusal is tested in
``tests/examples/image_classification/test_main.py``.
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from examples.training import errors
from examples.training import metrics_log
from examples.training import workdir_lock
from tests.examples.processes import REPO
from tests.examples.saved import saved_steps
from tests.examples.saved import without_timing
from tests.examples.training import tiny


def _snapshot(directory) -> dict[str, tuple[int, int]]:
  """Every file and directory under ``directory``: size and modification time in ns."""
  entries = {}
  for root, dirs, files in os.walk(directory):
    for name in dirs + files:
      path = os.path.join(root, name)
      stat = os.stat(path)
      entries[os.path.relpath(path, directory)] = (stat.st_size, stat.st_mtime_ns)
  return entries


def test_a_live_holder_refuses_a_second_run_and_a_killed_ones_lock_is_taken_over(
    reference, tmp_path, caplog):
  holder = subprocess.Popen(
      [sys.executable, '-m', 'tests.examples.training.tiny', str(tmp_path), '--slow-from=1'],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''})
  try:
    for line in holder.stdout:  # 'step 1' comes once the lock is held and the step compiled.
      if line.startswith('step 1'):
        break
    before = _snapshot(tmp_path)
    with pytest.raises(errors.WorkdirInUseError) as error:
      tiny.fit(tmp_path, tiny.config(resume=True))
    assert str(error.value) == (
        f'--workdir={tmp_path} is in use by another run (process {holder.pid} on host '
        f'{socket.gethostname()}, lock {tmp_path}/run.lock); wait for it to end, or choose '
        'another --workdir.')
    assert _snapshot(tmp_path) == before  # Nothing written.
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=60)
  assert (tmp_path / workdir_lock.FILENAME).exists()  # Left behind by the SIGKILL.
  with caplog.at_level(logging.WARNING):
    history = tiny.fit(tmp_path, tiny.config(resume=True))
  assert (f'Taking over {tmp_path}/run.lock from process {holder.pid} on host '
          f'{socket.gethostname()}, which ended without releasing it.') in caplog.text
  assert without_timing(history) == without_timing(reference[1])
  assert not (tmp_path / workdir_lock.FILENAME).exists()  # Released at the end.


def test_reading_a_run_needs_no_lock_and_changes_nothing(reference, tmp_path, caplog):
  workdir = tmp_path / 'run'
  shutil.copytree(reference[0], workdir)
  # A damaged newest checkpoint: a writer would move it aside, a reader only falls back.
  manifest = workdir / 'checkpoints' / '16' / 'file_checksums.json'
  manifest.write_text(manifest.read_text().replace('[', '[1', 1))
  with workdir_lock.WorkdirLock(str(workdir)):  # A run in progress.
    before = _snapshot(workdir)
    with caplog.at_level(logging.WARNING):
      tiny.final_params(workdir)
    assert f'{workdir}/checkpoints/16/' in caplog.text and 'falling back' in caplog.text
    assert saved_steps(workdir) == [16, 15]
    assert len(metrics_log.read(workdir / 'metrics.jsonl')) == 2
    assert _snapshot(workdir) == before
