"""TensorBoard event files of the tiny run, read back record by record with protobuf."""

import glob
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from packaging.requirements import Requirement
from tensorboardX.proto import event_pb2

from examples.training import loop
from examples.training import metrics_log
from examples.training import resume
from examples.training import tensorboard_log
from tests.examples.saved import tensorboard_events
from tests.examples.training import tiny

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _shown(workdir) -> tuple[dict[str, dict[int, float]], dict[str, str]]:
  """Scalars (tag -> step -> value) and texts as TensorBoard shows them.

  Files are read in name (time) order; a session start at step ``s`` hides the
  earlier files' values at steps ``>= s``, as TensorBoard's purge does (its
  ``EventAccumulator`` gives the same on these files).
  """
  scalars, texts = {}, {}
  for path in sorted(glob.glob(f'{workdir}/events.out.tfevents.*')):
    for event in tensorboard_events(path):
      if event.session_log.status == event_pb2.SessionLog.START:
        scalars = {tag: {s: v for s, v in values.items() if s < event.step}
                   for tag, values in scalars.items()}
      for value in event.summary.value:
        if value.HasField('simple_value'):
          scalars.setdefault(value.tag, {})[event.step] = value.simple_value
        elif value.metadata.plugin_data.plugin_name == 'text':
          texts[value.tag] = value.tensor.string_val[0].decode()
  return scalars, texts


def _check_epochs_match_metrics_jsonl(workdir, scalars):
  records = metrics_log.read(f'{workdir}/metrics.jsonl')
  epoch_tags = {tag for tag in scalars if tag.startswith('epoch/')}
  assert epoch_tags == {f'epoch/{key}' for key in records[0] if key not in ('epoch', 'step')}
  for record in records:
    for key, value in record.items():
      if key not in ('epoch', 'step'):
        assert scalars[f'epoch/{key}'][record['step']] == pytest.approx(value, rel=1e-6), key
  assert all(set(scalars[tag]) == {r['step'] for r in records} for tag in epoch_tags)


def test_writer_needs_no_tensorflow():
  assert {Requirement(r).name for r in importlib.metadata.requires('tensorboardX')} <= {
      'numpy', 'packaging', 'protobuf'}
  # This environment has TensorFlow; a fresh interpreter shows that the writer does not load it.
  code = ('import sys, tempfile; from examples.training import tensorboard_log; '
          'log = tensorboard_log.TensorBoardLog(tempfile.mkdtemp(), start_step=0, config_json={}); '
          'log.scalars("a", {"b": 1.0}, 1); log.close(); '
          'assert not [m for m in sys.modules if m.startswith("tensorflow")], "TensorFlow loaded"')
  subprocess.run([sys.executable, '-c', code], check=True, cwd=REPO)


def test_events_hold_the_epoch_records_the_interval_means_and_the_config(tmp_path):
  config = tiny.config(method='znorm', checkpoint_every_steps=16)  # The end's only.
  history = tiny.fit(tmp_path, config)
  scalars, texts = _shown(tmp_path)
  _check_epochs_match_metrics_jsonl(tmp_path, scalars)
  # 8 steps per epoch, a log every 2: four intervals of 16 examples each, whose means average
  # to the epoch's mean.
  for record in history:
    steps = range(record['step'] - 6, record['step'] + 1, 2)
    for metric in ('loss', 'accuracy'):
      intervals = [scalars[f'interval/train_{metric}'][s] for s in steps]
      assert np.mean(intervals) == pytest.approx(record[f'train_{metric}'], rel=1e-5)
  assert sorted(scalars['interval/train_examples_per_second']) == list(range(2, 17, 2))
  assert not any(tag.startswith('gradient_') for tag in scalars)  # Off by default.
  assert json.loads(texts['config/text_summary']) == resume.config_to_json(config)


def test_resumed_run_replaces_the_steps_after_its_checkpoint(tmp_path):
  tiny.fit(tmp_path, tiny.config(num_epochs=1, checkpoint_every_steps=8))
  # A later, longer run resumes from step 8; a run that had gone on past it would be hidden.
  history = tiny.fit(tmp_path, tiny.config(num_epochs=2, resume=True, checkpoint_every_steps=8))
  assert len(glob.glob(f'{tmp_path}/events.out.tfevents.*')) == 2
  scalars, _ = _shown(tmp_path)
  _check_epochs_match_metrics_jsonl(tmp_path, scalars)
  assert [r['step'] for r in history] == [8, 16]


def test_runs_started_in_the_same_second_keep_their_own_files_in_order(tmp_path, monkeypatch):
  # tensorboardX names a file by the second; a resume within it must not truncate the last file.
  monkeypatch.setattr(time, 'time', lambda: 1795901080.0)
  for start_step in (0, 8):
    log = tensorboard_log.TensorBoardLog(str(tmp_path), start_step=start_step, config_json={})
    log.scalars('epoch', {'train_loss': float(start_step)}, start_step + 1)
    log.close()
  scalars, _ = _shown(tmp_path)
  assert scalars['epoch/train_loss'] == {1: 0.0, 9: 8.0}
  assert len(glob.glob(f'{tmp_path}/events.out.tfevents.*')) == 2


def test_events_are_written_when_a_run_stops_for_nan(tmp_path):
  # One step per epoch, logged; its batch holds a NaN.
  config = tiny.config(log_every_steps=1, log_gradient_statistics=True)
  with pytest.raises(loop.NonFiniteError, match='at step 1'):
    tiny.fit(tmp_path, config, nan_at=0, num_train=8)
  scalars, texts = _shown(tmp_path)
  assert 'config/text_summary' in texts
  # The gradient statistics of the stopping step, logged just before the stop: NaN, not hidden.
  assert math.isnan(scalars['gradient_norm_before/hidden/kernel'][1])
