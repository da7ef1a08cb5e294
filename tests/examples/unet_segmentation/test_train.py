"""Training on the shared core: schedule, learning, sweep report, resume, flag checks.

The parallel modes are tested on the core itself (tests/examples/training/test_loop.py).
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from examples.study import experiment
from examples.study import sweep
from examples.unet_segmentation import metrics
from examples.unet_segmentation import task
from examples.unet_segmentation.configs import default
from examples.unet_segmentation.configs import tiny
from examples.unet_segmentation.example import EXAMPLE

_REPO_ROOT = pathlib.Path(__file__).parents[3]


def _tiny_config(**overrides):
  config = tiny.get_config()
  config.platform = 'cpu'  # The 8 simulated CPU devices, also on a machine with an accelerator.
  config.update(overrides)
  return config


def test_learning_rate_schedule_follows_the_paper():
  config = default.get_config()  # 1e-2, /10 every 5 epochs from epoch 30, 50 epochs.
  schedule = EXAMPLE.learning_rate(config, steps_per_epoch=10)
  expected = {0: 1e-2, 299: 1e-2, 300: 1e-3, 349: 1e-3, 350: 1e-4, 400: 1e-5, 450: 1e-6,
              499: 1e-6}
  for step, learning_rate in expected.items():
    assert float(schedule(step)) == pytest.approx(learning_rate, rel=1e-5), step


def test_device_dice_matches_host_f1():
  rng = np.random.default_rng(0)
  labels = (rng.random((6, 8, 8, 1)) < 0.3).astype(np.uint8)
  logits = rng.normal(size=(6, 8, 8, 1)).astype(np.float32)
  labels[0], logits[0] = 0, -1  # Both empty.
  labels[1], logits[2] = 0, -1  # Exactly one empty, each way.
  expected = [metrics.f1_score(p, t) for p, t in zip(logits > 0, labels)]
  np.testing.assert_allclose(task.hard_dice(logits, labels), expected, rtol=1e-6)


def test_synthetic_run_learns(tmp_path):
  config = _tiny_config(synthetic_train_size=256, synthetic_eval_size=32, num_epochs=6,
                        lr_decay_start_epoch=5, parallel='none', checkpoint_every_steps=1000)
  config.model_kwargs.unet.update(base_features=8)
  run_config = sweep.run_config(config, 'unet', 'adam', 0)
  history = experiment.train_and_evaluate(EXAMPLE, run_config, str(tmp_path))
  assert history[-1]['train_loss'] < 0.8 * history[0]['train_loss']
  # Predicting nothing scores about 0.3 here (the empty slices); learning gives clearly more.
  assert history[-1]['test_f1'] > 0.5
  # The final host-side F1 rescores the restored checkpoint: it equals the on-device Dice.
  assert history[-1]['test_f1'] == pytest.approx(history[-1]['test_dice'], abs=1e-6)


def test_sweep_on_mocked_oxford_iiit_pet_writes_table3_report_and_resumes(tmp_path):
  config = _tiny_config(dataset='oxford_iiit_pet')
  config.sweep.methods = ('adam', 'znorm')
  workdir = str(tmp_path)
  with tfds.testing.mock_data(num_examples=20):
    results = experiment.run_sweep(EXAMPLE, config, workdir).results
  for name in ('results.json', 'results.csv', 'table.md', 'curves.png', 'predictions_unet.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, 'table.md')) as f:
    table = f.read()
  assert 'Test F1 | Test Tversky | Test Hausdorff Dist' in table
  for method in ('Baseline (Adam)', 'ZNorm'):
    assert f'| oxford_iiit_pet | unet | {method} |' in table
  run_dir = os.path.join(workdir, 'runs', 'unet', 'znorm', 'seed_0')
  with open(os.path.join(run_dir, 'test_metrics.json')) as f:
    saved = json.load(f)
  assert saved['num_images'] == 20
  assert saved['hausdorff'] == pytest.approx(results[1].history[-1]['test_hausdorff'])
  # A second call finds the finished checkpoints: no training, the same results.
  with tfds.testing.mock_data(num_examples=20):
    resumed = experiment.run_sweep(EXAMPLE, config, workdir).results
  assert [r.history for r in resumed] == [r.history for r in results]


def test_command_line_reports_a_bad_flag():
  completed = subprocess.run(
      [sys.executable, '-m', 'examples.main',
       '--config=examples/unet_segmentation/configs/tiny.py', '--workdir=unused',
       '--config.dataset=cityscapes'],
      cwd=_REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode != 0
  assert 'error: Unknown --config.dataset=' in completed.stderr


@pytest.mark.parametrize('field, value, message', [
    ('sweep.methods', ('adam', 'lion'), 'lion'),
    ('parallel', 'ddp', '--config.parallel'),
    ('image_size', 30, '--config.image_size'),
    ('sweep.models', ('segnet',), 'valid models'),
    ('lr_decay_factor', float('nan'), '--config.lr_decay_factor'),
])
def test_validate_config_names_the_bad_flag(field, value, message):
  config = _tiny_config()
  parent, _, name = field.rpartition('.')
  (config[parent] if parent else config)[name] = value
  with pytest.raises(ValueError, match=message):
    experiment.validate_config(EXAMPLE, config)
