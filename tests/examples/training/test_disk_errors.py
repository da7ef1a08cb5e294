"""A failing disk and logs cut short: the run stops with one line, and nothing saved is lost.

``tiny`` runs 8 steps per epoch and 2 epochs, checkpoints every 3 steps, logs every 2.
"""

import builtins
import errno
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings

import chex
import pytest
import tensorboardX.record_writer

from examples.study import report
from examples.study import sweep
from examples.training import checkpointing
from examples.training import cli
from examples.training import errors
from examples.training import gradient_log
from examples.training import metrics_log
from tests.examples.processes import REPO
from tests.examples.saved import final_state
from tests.examples.saved import persistent_compilation_cache
from tests.examples.saved import saved_steps
from tests.examples.saved import without_timing
from tests.examples.training import tiny

_DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _resume_matches_the_uninterrupted_run(workdir, reference) -> None:
  history = tiny.fit(workdir, tiny.config(resume=True))
  assert without_timing(history) == without_timing(reference[1])
  chex.assert_trees_all_equal(final_state(workdir), final_state(reference[0]))


def test_a_full_disk_under_metrics_jsonl_stops_the_run_and_keeps_the_checkpoints(
    reference, tmp_path, monkeypatch):
  real_open = builtins.open

  def full_disk_open(path, mode='r', *args, **kwargs):
    if str(path).endswith('metrics.jsonl') and 'a' in mode:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return real_open(path, mode, *args, **kwargs)

  monkeypatch.setattr(builtins, 'open', full_disk_open)
  with pytest.raises(errors.WriteError) as error:
    tiny.fit(tmp_path)  # The first record is written at step 8, after the save of step 6.
  assert str(error.value) == (f'cannot write {tmp_path}/metrics.jsonl: [Errno 28] No space left '
                              'on device; the run stopped.')
  monkeypatch.undo()
  assert saved_steps(tmp_path) == [6, 3]
  assert (tmp_path / 'checkpoints' / '6' / 'file_checksums.json').exists()  # Verified.
  _resume_matches_the_uninterrupted_run(tmp_path, reference)


def test_a_full_disk_under_the_event_file_stops_the_run(reference, tmp_path, monkeypatch):
  write = tensorboardX.record_writer.RecordWriter.write
  calls = []

  def fails_after_a_while(self, data):
    calls.append(len(data))
    if len(calls) > 20:  # The config and the first intervals are written.
      raise _DISK_FULL
    write(self, data)

  monkeypatch.setattr(tensorboardX.record_writer.RecordWriter, 'write', fails_after_a_while)
  with pytest.raises(errors.WriteError) as error:
    tiny.fit(tmp_path)
  monkeypatch.undo()
  message = str(error.value)
  assert message.startswith(f'cannot write {tmp_path}/events.out.tfevents.')
  assert message.endswith(': [Errno 28] No space left on device; the run stopped.')
  assert saved_steps(tmp_path)[0] < 16  # Stopped early.
  _resume_matches_the_uninterrupted_run(tmp_path, reference)


def _set_read_only(directory, read_only: bool) -> None:
  """``chmod``; as root, which ignores modes, also the immutable attribute (``chattr``)."""
  if os.geteuid() == 0 and not read_only:
    subprocess.run(['chattr', '-i', str(directory)], check=True)
  os.chmod(directory, 0o555 if read_only else 0o755)
  if os.geteuid() == 0 and read_only:
    subprocess.run(['chattr', '+i', str(directory)], check=True)


def test_a_save_into_a_directory_that_became_read_only(reference, tmp_path, monkeypatch):
  save = checkpointing.Checkpointer.save
  checkpoints = tmp_path / 'checkpoints'

  def save_after_the_directory_became_read_only(self, step, **items):
    if step == 6:
      self._manager.wait_until_finished()  # Step 3 is in place.
      _set_read_only(checkpoints, True)
    save(self, step, **items)

  monkeypatch.setattr(checkpointing.Checkpointer, 'save',
                      save_after_the_directory_became_read_only)
  try:
    with pytest.raises(errors.WriteError) as error:
      tiny.fit(tmp_path)
  finally:
    _set_read_only(checkpoints, False)
  monkeypatch.undo()
  reason = 'Operation not permitted' if os.geteuid() == 0 else 'Permission denied'
  assert str(error.value).startswith(f'cannot write {checkpoints}/6: [Errno ')
  assert str(error.value).endswith(f'{reason}; the run stopped.')
  assert saved_steps(tmp_path) == [3]
  _resume_matches_the_uninterrupted_run(tmp_path, reference)


# --- Records cut short by a kill. ---


def _cut_last_record(path) -> None:
  text = path.read_text()
  path.write_text(text[:-len(text.splitlines()[-1]) // 2 - 1])  # Half of the last line, no newline.


def test_a_record_cut_short_is_dropped_with_a_warning_by_resume_and_report(tmp_path, caplog):
  workdir = tmp_path / sweep.run_directory('', 'mlp', 'adam', 0)
  tiny.fit(workdir, tiny.config(log_gradient_statistics=True))
  statistics = workdir / gradient_log.FILENAME
  _cut_last_record(statistics)
  _cut_last_record(workdir / 'metrics.jsonl')
  kept = metrics_log.read(statistics)
  with caplog.at_level(logging.WARNING):
    profiles = report.gradient_depth_profiles(
        [sweep.RunResult('mlp', 'adam', 0, [])], str(tmp_path))
  assert f'{statistics}: dropped line {len(kept) + 1}, a record cut short' in caplog.text
  assert profiles[('mlp', 'adam')].steps == (2, kept[-1]['step'])
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    history = tiny.fit(workdir, tiny.config(resume=True, log_gradient_statistics=True))
  assert f'{workdir}/metrics.jsonl: dropped line 2, a record cut short' in caplog.text
  assert metrics_log.read(workdir / 'metrics.jsonl') == history  # Rewritten whole.
  assert len(metrics_log.read(statistics)) == len(kept)  # Nothing added: the run had ended.


def test_a_bad_record_before_the_last_is_an_error_naming_the_line(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
  with pytest.raises(ValueError, match=f'{path}, line 2, is not a JSON record'):
    metrics_log.read(path)


def _tiny_process(workdir, *flags, file_size_limit: int | None = None):
  """``tiny`` run in a process, under ``RLIMIT_FSIZE`` if given: its exit status and output."""
  limit = ('import resource; '
           f'resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit},) * 2); '
           if file_size_limit else '')
  start = (f'{limit}import os, sys; os.execv(sys.executable, [sys.executable, "-m", '
           f'"tests.examples.training.tiny", *sys.argv[1:]])')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env.update(JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', start, str(workdir), *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  return result.returncode, result.stdout + result.stderr


def _stopped_with_one_line(status, output, workdir, reason) -> str:
  assert status == 1, output[-3000:]
  lines = output.strip().splitlines()
  assert len(lines) <= 3, output[-3000:]  # At most a couple of lines before the message.
  match = re.fullmatch(rf'error: cannot write ({re.escape(str(workdir))}/\S+): '
                       rf'{re.escape(reason)}; the run stopped.', lines[-1])
  assert match, lines[-1]
  return match.group(1)


def _resume_elsewhere_matches_the_uninterrupted_run(workdir, tmp_path, reference):
  moved = tmp_path / 'moved'  # Off the faulty disk.
  shutil.copytree(workdir, moved)
  _resume_matches_the_uninterrupted_run(moved, reference)


def test_a_file_too_large_for_a_save_stops_the_run_with_one_line(tmp_path):
  workdir = tmp_path / 'run'
  status, output = _tiny_process(workdir, file_size_limit=2000)  # Less than a save's files.
  written = _stopped_with_one_line(status, output, workdir, '[Errno 27] File too large')
  assert written == f'{workdir}/checkpoints/3'  # The user's path, not orbax's temporary one.
  assert saved_steps(workdir) == []


def test_a_file_too_large_for_a_log_stops_the_run_with_one_line(reference, tmp_path):
  workdir = tmp_path / 'run'
  # More than a save's files, less than the logs by the end.
  status, output = _tiny_process(workdir, '--compilation-cache', '--log-gradient-statistics',
                                 file_size_limit=4096)
  written = _stopped_with_one_line(status, output, workdir, '[Errno 27] File too large')
  assert re.fullmatch(rf'{workdir}/(events\.out\.tfevents\.\S+|\w+\.jsonl)', written), written
  # The compilation cache, on by default on the command line, failed first: one line, once.
  assert re.match(r'.*cannot write the compilation cache \S+/jax_cache: OSError: \[Errno 27\] '
                  'File too large; the run compiles without caching ', output), output
  assert saved_steps(workdir)  # Verified before the log write failed, and kept.
  _resume_matches_the_uninterrupted_run(workdir, reference)


def test_compilation_cache_errors_are_one_line_each_once(tmp_path, caplog):
  cache = tmp_path / 'jax_cache'
  with (persistent_compilation_cache(cache), warnings.catch_warnings(),
        caplog.at_level(logging.WARNING)):
    warnings.simplefilter('always')
    cli.report_compilation_cache_errors_in_one_line()
    for name in ('jit_step', 'jit_eval_step'):  # As JAX words them.
      warnings.warn(f"Error writing persistent compilation cache entry for '{name}': OSError: "
                    '[Errno 28] No space left on device', stacklevel=1)
      warnings.warn(f"Error reading persistent compilation cache entry for '{name}': error: "
                    'Error -5 while decompressing data: incomplete or truncated stream',
                    stacklevel=1)
  assert caplog.messages == [
      (f'cannot write the compilation cache {cache}: OSError: [Errno 28] No space left on '
       'device; the run compiles without caching what it could not write.'),
      (f'cannot read an entry of the compilation cache {cache} (a write cut short?): error: '
       'Error -5 while decompressing data: incomplete or truncated stream; it is compiled again. '
       f'Delete {cache} to rebuild the cache.')]


@pytest.mark.skipif(os.geteuid() != 0, reason='mounting a tmpfs needs root')
def test_a_full_tmpfs_stops_the_run_with_one_line_and_keeps_the_saved_checkpoints(reference,
                                                                                   tmp_path):
  disk = tmp_path / 'disk'
  disk.mkdir()
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', str(disk)],
                    capture_output=True, check=False).returncode:
    pytest.skip('this machine does not let root mount a tmpfs')
  try:
    status, output = _tiny_process(disk / 'run')
    written = _stopped_with_one_line(status, output, disk / 'run',
                                     '[Errno 28] No space left on device')
    assert '/checkpoints/' in written
    assert saved_steps(disk / 'run')  # The save that failed was not the first.
    _resume_elsewhere_matches_the_uninterrupted_run(disk / 'run', tmp_path, reference)
  finally:
    subprocess.run(['umount', str(disk)], check=True)
