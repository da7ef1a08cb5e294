"""Flags: bad values get one clear line naming the flag, not a traceback."""

import os
import socket
import subprocess
import sys

import pytest

from examples.image_classification.example import EXAMPLE
from examples.study import experiment
from examples.training import workdir_lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.parametrize('field, value, message', [
    ('method', 'sgd', 'valid methods are: adam, znorm, znorm_pooled, gc, clip, clip_norm, wd1e-3, wd1e-4'),
    ('model', 'resnet21', 'valid models are'),
    ('dataset', 'mnist', 'valid datasets are: digits, cifar10, patch_camelyon'),
    ('parallel', 'dp', "--config.parallel='dp' must be one of sharded, fsdp, pmap, none"),
    ('batch_size', 12, r'--config.batch_size=12 must be a positive multiple of the 8 devices'),
    ('num_epochs', 0, '--config.num_epochs=0 must be positive'),
    ('learning_rate', -1.0, '--config.learning_rate=-1.0 must be a finite number > 0'),
    ('learning_rate', float('inf'), '--config.learning_rate=inf must be a finite number > 0'),
    ('seed', -1, '--config.seed=-1 must be a non-negative integer'),
])
def test_validate_config_names_the_bad_flag(config, field, value, message):
  config[field] = value
  with pytest.raises(ValueError, match=message):
    experiment.validate_config(EXAMPLE, config)


def test_sweep_methods_are_validated(config):
  config.sweep.methods = ('adam', 'lamb')
  with pytest.raises(ValueError, match="Unknown method 'lamb'"):
    experiment.validate_config(EXAMPLE, config)


def _main(tmp_path, *flags):
  return subprocess.run(
      [sys.executable, '-m', 'examples.main',
       '--config=examples/image_classification/configs/tiny.py', f'--workdir={tmp_path}/run',
       f'--config.data_dir={tmp_path}/tfds', *flags],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
  )


@pytest.mark.parametrize('flag, message', [
    ('--config.method=sgd', "error: --config.method: Unknown method 'sgd'; valid methods are:"),
    ('--config.learning_rat=0.1',
     ("error: --config.learning_rat: the config has no field 'learning_rat'; did you mean "
      "'learning_rate'?")),
    ('--config.seed=-1', 'error: --config.seed=-1 must be a non-negative integer.'),
    ('--workdir={tmp}/a_file', 'error: --workdir={tmp}/a_file is a file, not a directory.'),
])
def test_bad_flags_exit_with_one_line_before_anything_is_written(tmp_path, flag, message):
  (tmp_path / 'a_file').write_text('')
  result = _main(tmp_path, flag.format(tmp=tmp_path))
  assert result.returncode == 1
  assert result.stderr.startswith(message.format(tmp=tmp_path))
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert not (tmp_path / 'run').exists()


def test_missing_dataset_exits_with_the_message_only(tmp_path):
  # Also checks that the unset data_dir can be overridden from the command line.
  result = _main(tmp_path, '--config.dataset=cifar10')
  assert result.returncode == 1
  assert f'tfds build cifar10 --data_dir={tmp_path}/tfds' in result.stderr.splitlines()[-1]
  assert 'Traceback' not in result.stderr


def test_a_second_run_on_a_workdir_in_use_exits_with_one_line_before_writing(tmp_path):
  (tmp_path / 'run').mkdir()
  with workdir_lock.WorkdirLock(str(tmp_path / 'run')):  # This process is the other run.
    result = _main(tmp_path)
    assert os.listdir(tmp_path / 'run') == [workdir_lock.FILENAME]
  assert result.returncode == 1
  assert result.stderr == (
      f'error: --workdir={tmp_path}/run is in use by another run (process {os.getpid()} on host '
      f'{socket.gethostname()}, lock {tmp_path}/run/run.lock); wait for it to end, or choose '
      'another --workdir.\n')


def test_a_checkpoint_directory_that_cannot_be_written_exits_with_one_line(tmp_path):
  checkpoints = tmp_path / 'run' / 'checkpoints'
  checkpoints.mkdir(parents=True)
  os.chmod(checkpoints, 0o555)
  if os.geteuid() == 0:  # Root ignores modes, not the immutable attribute.
    subprocess.run(['chattr', '+i', str(checkpoints)], check=True)
  try:
    result = _main(tmp_path)  # Refused before training; orbax's threads would hold it minutes.
  finally:
    if os.geteuid() == 0:
      subprocess.run(['chattr', '-i', str(checkpoints)], check=True)
    os.chmod(checkpoints, 0o755)
  assert result.returncode == 1
  reason = '[Errno 1] Operation not permitted' if os.geteuid() == 0 else '[Errno 13] Permission denied'
  assert result.stderr.splitlines()[-1] == (
      f'error: cannot write {checkpoints}: {reason}; the run stopped.')
