"""The training core under real faults: NaN data, divergence, damaged or killed checkpoints, other runs.

Every test trains the seconds-long MLP of ``tiny.py`` (8 steps per epoch, 2 epochs,
checkpoints every 3 steps and at the end, so an uninterrupted run keeps steps 15 and 16).
"""

import contextlib
import glob
import logging
import os
import shutil
import subprocess
import sys
import threading

import chex
import jax
import numpy as np
import pytest
from flax import nnx

from examples.training import checkpointing
from examples.training import loop
from examples.training import resume
from examples.training import validation
from tests.examples.saved import final_state
from tests.examples.saved import saved_steps
from tests.examples.saved import without_timing
from tests.examples.training import tiny

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _copy(reference, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(reference[0], workdir)
  return workdir


def _example_in_step(step_in_epoch: int) -> int:
  """The index of a training example that epoch 0 feeds at ``step_in_epoch`` (0-based)."""
  order = np.random.default_rng([0, 0]).permutation(tiny.NUM_TRAIN)
  return int(order[step_in_epoch * 8])


# --- Non-finite training. ---


def test_nan_example_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteError) as error:
    tiny.fit(tmp_path, nan_at=_example_in_step(4))  # Global step 5.
  message = str(error.value)
  assert '\n' not in message
  # Named from the gradients, not the loss alone: relu(NaN) can be 0 under XLA:CPU's jit.
  assert message.startswith('training stopped at step 5: the ') and 'gradients' in message
  assert f'last good checkpoint, {tmp_path}/checkpoints/3 (step 3), is kept' in message
  assert saved_steps(tmp_path) == [3]
  kept = final_state(tmp_path)  # Restores it and verifies its checksums.
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(kept))
  with open(tmp_path / 'metrics.jsonl') as f:
    assert f.read() == ''  # No epoch ended, so no record with a made-up finite loss.


def test_skip_leaves_out_and_counts_nonfinite_steps(tmp_path):
  config = tiny.config(on_nonfinite='skip')
  history = tiny.fit(tmp_path, config, nan_at=_example_in_step(4))
  assert [record['train_skipped_steps'] for record in history] == [1, 1]  # Once per epoch.
  assert all(np.isfinite(record['train_loss']) for record in history)
  params = tiny.final_params(tmp_path, config)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


@pytest.mark.parametrize('on_nonfinite, message, kept', [
    ('stop', r'^training stopped at step 2: the .*gradients.* became non-finite', []),
    # Skipped steps keep the state finite, so step 3 is saved (with step 1's huge weights).
    ('skip', (r'^training stopped at step 4: 3 steps in a row were skipped '
              r'\(--config.max_nonfinite_steps\), the last for non-finite .*gradients'), [3]),
])
def test_divergence_stops_the_run(tmp_path, on_nonfinite, message, kept):
  # Step 1 makes the weights about 1e30; the next gradients overflow.
  with pytest.raises(loop.NonFiniteError, match=message):
    tiny.fit(tmp_path, tiny.config(learning_rate=1e30, on_nonfinite=on_nonfinite))
  assert saved_steps(tmp_path) == kept


@pytest.mark.parametrize('field, value, message', [
    ('seed', -1, '--config.seed=-1 must be a non-negative integer'),
    ('on_nonfinite', 'ignore', "--config.on_nonfinite='ignore' must be one of stop, skip"),
    ('max_nonfinite_steps', 0, r'--config.max_nonfinite_steps=0 must be positive \(an integer'),
    ('platform', 'abacus', "--config.platform='abacus' has no devices here"),
])
def test_validation_names_the_flag(field, value, message):
  with pytest.raises(ValueError, match=message):
    validation.validate(tiny.config(**{field: value}))


def test_workdir_errors_name_the_path(tmp_path, monkeypatch):
  a_file = tmp_path / 'a_file'
  a_file.write_text('')
  with pytest.raises(ValueError, match=f'--workdir={a_file} is a file, not a directory'):
    validation.prepare_workdir(str(a_file))
  with pytest.raises(ValueError, match=f'--workdir={a_file}/run is not writable: Not a directory'):
    validation.prepare_workdir(str(a_file / 'run'))
  read_only = tmp_path / 'read_only'
  read_only.mkdir()
  read_only.chmod(0o555)
  if os.access(read_only, os.W_OK):  # root ignores the mode: make the write fail as it would.
    def refuse(*args, **kwargs):
      raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr(validation.tempfile, 'TemporaryFile', refuse)
  with pytest.raises(ValueError, match=f'--workdir={read_only} is not writable: Permission denied'):
    validation.prepare_workdir(str(read_only))


# --- Checkpoints. ---


def _largest_file(directory):
  files = [f for f in glob.glob(f'{directory}/**', recursive=True) if os.path.isfile(f)]
  return max(files, key=os.path.getsize)


def _flip_bit(path):
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)[0]
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte ^ 0x10]))


def _truncate(path):
  os.truncate(path, os.path.getsize(path) // 2)


@pytest.mark.parametrize('fault, target', [
    ('flip a bit', 'model'), ('truncate', 'optimizer'), ('empty', 'model/_METADATA'),
])
def test_damaged_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, caplog, fault,
                                                           target):
  workdir = _copy(reference, tmp_path)
  damaged = os.path.join(workdir, 'checkpoints', '16', target)
  damaged = _largest_file(damaged) if os.path.isdir(damaged) else damaged
  {'flip a bit': _flip_bit, 'truncate': _truncate, 'empty': lambda p: open(p, 'w').close()}[fault](
      damaged)
  with caplog.at_level(logging.WARNING):
    history = tiny.fit(workdir, tiny.config(resume=True))  # Retrains step 16 from step 15.
  warning = f'{damaged} is damaged'
  assert any(warning in r.getMessage() and 'falling back' in r.getMessage()
             for r in caplog.records), caplog.text
  assert glob.glob(f'{workdir}/corrupt_checkpoints/16-*')
  assert without_timing(history) == without_timing(reference[1])
  chex.assert_trees_all_equal(final_state(workdir), final_state(reference[0]))


def test_checksums_catch_wrong_values_that_orbax_restores(tmp_path):
  # Zstd-compressed array data without a frame checksum: a flipped bit decodes to other values.
  values = {'kernel': np.random.default_rng(0).normal(size=5000).astype(np.float32)}
  with contextlib.closing(checkpointing.Checkpointer(str(tmp_path))) as checkpointer:
    checkpointer.save(1, model=values, optimizer={'count': np.zeros(1)}, loop={}, config={})
  step_dir = tmp_path / 'checkpoints' / '1'
  os.remove(step_dir / 'file_checksums.json')  # As if killed before the save was verified.
  _flip_bit(_largest_file(step_dir / 'model'))
  checkpointer = checkpointing.Checkpointer(str(tmp_path))
  with pytest.raises(checkpointing.CheckpointError,
                     match=f'{step_dir} does not match its checksums in model/kernel'):
    checkpointer.restore(1, model_like=values)
  checkpointer.close()


def test_an_unverified_save_deletes_nothing(tmp_path, caplog):
  values = {'kernel': np.arange(4.0, dtype=np.float32)}
  checkpointer = checkpointing.Checkpointer(str(tmp_path), max_to_keep=1)
  for step in (1, 2):
    checkpointer.save(step, model=values, optimizer={'count': np.zeros(1)}, loop={}, config={})
  checkpointer._manager.wait_until_finished()  # Step 2 is written but not yet verified.
  _truncate(_largest_file(tmp_path / 'checkpoints' / '2' / 'model'))
  with caplog.at_level(logging.WARNING):
    checkpointer.close()  # Verifies step 2, finds it damaged, keeps step 1.
  assert 'keeping the older checkpoints' in caplog.text
  assert saved_steps(tmp_path) == [1]
  checkpointer = checkpointing.Checkpointer(str(tmp_path), max_to_keep=1)
  checkpointer.save(3, model=values, optimizer={'count': np.zeros(1)}, loop={}, config={})
  checkpointer.close()  # Step 3 verifies: now step 1 goes.
  assert saved_steps(tmp_path) == [3]


def test_sigkill_during_a_save_then_resume_matches_the_uninterrupted_run(reference, tmp_path):
  workdir = tmp_path / 'killed'
  killed = subprocess.run(
      [sys.executable, '-m', 'tests.examples.training.tiny', str(workdir), '--kill-at-save=9'],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert killed.returncode == -9, killed.stderr[-3000:]
  # The save is asynchronous, so the kill lands before its temporary directory exists, while
  # it is written (the directory is left behind) or after it finished: step 9 is whole or absent.
  assert saved_steps(workdir) in ([9, 6, 3], [6, 3])
  history = tiny.fit(workdir, tiny.config(resume=True))
  assert not glob.glob(f'{workdir}/checkpoints/*tmp*')  # The unfinished save is removed.
  assert without_timing(history) == without_timing(reference[1])
  chex.assert_trees_all_equal(final_state(workdir), final_state(reference[0]))


def test_only_a_save_removes_the_temporary_directory_of_a_killed_save(tmp_path):
  # Orbax's own cleanup ran in a thread that outlived a checkpointer that only read, and raced the
  # next checkpointer's cleanup: FileNotFoundError on resume after a SIGKILL.
  leftover = tmp_path / 'checkpoints' / '2.orbax-checkpoint-tmp'
  (leftover / 'model').mkdir(parents=True)
  (leftover / 'model' / 'data').write_bytes(b'half of a save')
  threads = set(threading.enumerate())
  for _ in range(2):  # Readers, as saved_steps, final_state and load_model are.
    with contextlib.closing(checkpointing.Checkpointer(str(tmp_path))) as reader:
      assert reader.steps() == []
  for thread in set(threading.enumerate()) - threads:
    thread.join(timeout=60)  # Whatever a reader left running has done its work.
  assert leftover.is_dir()  # Another process might be writing it.
  values = {'kernel': np.arange(4.0, dtype=np.float32)}
  with contextlib.closing(checkpointing.Checkpointer(str(tmp_path))) as writer:
    writer.save(2, model=values, optimizer={'count': np.zeros(1)}, loop={}, config={})
  assert not glob.glob(f'{tmp_path}/checkpoints/*tmp*')
  assert saved_steps(tmp_path) == [2]
  chex.assert_trees_all_equal(final_state(tmp_path)[0], values)


def test_resume_refuses_another_runs_checkpoint(reference, tmp_path):
  workdir = _copy(reference, tmp_path)
  changed = tiny.config(resume=True, width=16, batch_size=16, num_epochs=3)
  with pytest.raises(ValueError) as error:
    tiny.fit(workdir, changed)
  message = str(error.value)
  assert '\n' not in message
  assert f'the checkpoint {workdir}/checkpoints/16 is of a run with other settings' in message
  assert '(batch_size: 8 there, 16 now; width: 8 there, 16 now)' in message
  assert 'num_epochs' in message.split('only ')[1]  # Listed as free to change, not as a difference.
  with pytest.raises(ValueError, match='trained with 8 steps per epoch and this data gives 4'):
    tiny.fit(workdir, tiny.config(resume=True), num_train=32)  # Same flags, other data.
  assert saved_steps(workdir) == [16, 15]  # Refusing moves nothing aside.
  history = tiny.fit(workdir, tiny.config(resume=True, num_epochs=3))
  assert without_timing(history[:2]) == without_timing(reference[1]) and len(history) == 3


def test_other_devices_are_refused_on_resume_unless_asked_for(reference, tmp_path):
  workdir = _copy(reference, tmp_path)
  other_devices = {'resume': True, 'num_epochs': 3, 'parallel': 'sharded', 'fsdp_devices': 8}
  with pytest.raises(ValueError) as error:
    tiny.fit(workdir, tiny.config(**other_devices))
  message = str(error.value)
  assert '\n' not in message
  assert "(fsdp_devices: 0 there, 8 now; parallel: 'none' there, 'sharded' now)" in message
  assert message.endswith(
      ' fsdp_devices, parallel may change with --config.resume_on_other_devices=True; the run then '
      'sums in another order and does not end bit for bit where an uninterrupted one does.')
  history = tiny.fit(workdir, tiny.config(**other_devices, resume_on_other_devices=True))
  assert without_timing(history[:2]) == without_timing(reference[1]) and len(history) == 3
  tiny.final_params(workdir, tiny.config(num_epochs=3, parallel='pmap'))  # Reading: any devices.


def test_the_same_flags_on_other_devices_are_refused_on_resume_unless_asked_for(tmp_path):
  # The checkpoint's run had 2 devices; this process has 8. `sharded` takes all of them.
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env.update(JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=2')
  subprocess.run([sys.executable, '-m', 'tests.examples.training.tiny', str(tmp_path),
                  '--parallel=sharded'], cwd=REPO, env=env, check=True, capture_output=True)
  resumed = {'resume': True, 'parallel': 'sharded'}  # Nothing left to train: no compile.
  with pytest.raises(ValueError) as error:
    tiny.fit(tmp_path, tiny.config(**resumed))
  message = str(error.value)
  assert '\n' not in message
  assert (f'the checkpoint {tmp_path}/checkpoints/16 was trained on other devices '
          '(device_count: 2 there, 8 now).') in message
  assert message.endswith('pass --config.resume_on_other_devices=True: the run then sums in '
                          'another order and does not end bit for bit where an uninterrupted '
                          'one does.')
  history = tiny.fit(tmp_path, tiny.config(**resumed, resume_on_other_devices=True))
  assert [record['step'] for record in history] == [8, 16]


def test_a_checkpoint_without_its_devices_matches_any():
  devices = {'parallel': 'none', 'platform': 'cpu', 'device_kind': 'cpu', 'device_count': 1,
             'process_count': 1}
  config = tiny.config()
  resume.check_same_devices(None, devices, config, 'old')  # Written before devices were saved.
  with pytest.raises(ValueError, match=r"\(platform: 'tpu' there, 'cpu' now\)"):
    resume.check_same_devices({**devices, 'platform': 'tpu'}, devices, config, 'new')


def test_load_model_reads_the_model_alone(reference, monkeypatch):
  monkeypatch.setattr(nnx, 'Optimizer', None)  # Building one would fail.
  params = tiny.final_params(reference[0])
  model, _ = final_state(reference[0])
  chex.assert_trees_all_equal(params, model)
  with pytest.raises(ValueError, match=r'\(width: 8 there, 4 now\)'):
    resume.load_model(tiny.config(width=4), str(reference[0]), tiny.TASK)


def test_fixed_on_resume_takes_a_field_out_of_those_that_may_change():
  config = tiny.config(fixed_on_resume=('num_epochs',))
  saved = resume.config_to_json(config)
  del saved['fixed_on_resume']  # As a checkpoint written before the field existed.
  resume.check_same_run(saved, config, 'ckpt')
  with pytest.raises(ValueError, match=r'other settings \(num_epochs: 2 there, 3 now\)'):
    resume.check_same_run(saved, tiny.config(fixed_on_resume=('num_epochs',), num_epochs=3),
                          'ckpt')
  resume.check_same_run(saved, tiny.config(num_epochs=3), 'ckpt')  # Not fixed: it may change.
