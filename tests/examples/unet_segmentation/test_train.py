"""Training on the shared core: schedule, learning, parallel equivalence, sweep report, resume."""

import json
import os
import pathlib
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from examples.training import loop
from examples.unet_segmentation import input_pipeline
from examples.unet_segmentation import metrics
from examples.unet_segmentation import train
from examples.unet_segmentation.configs import default
from examples.unet_segmentation.configs import tiny

_REPO_ROOT = pathlib.Path(__file__).parents[3]


def _tiny_config(**overrides):
  config = tiny.get_config()
  config.platform = 'cpu'  # The 8 simulated CPU devices, also on a machine with an accelerator.
  config.update(overrides)
  return config


def test_learning_rate_schedule_follows_the_paper():
  config = default.get_config()  # 1e-2, /10 every 5 epochs from epoch 30, 50 epochs.
  schedule = train.learning_rate_schedule(config, steps_per_epoch=10)
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
  np.testing.assert_allclose(train.hard_dice(logits, labels), expected, rtol=1e-6)


def test_synthetic_run_learns(tmp_path):
  config = _tiny_config(synthetic_train_size=256, synthetic_eval_size=32, num_epochs=6,
                        lr_decay_start_epoch=5, parallel='none', checkpoint_every_steps=1000)
  config.model_kwargs.unet.update(base_features=8)
  train_data, evaluation = input_pipeline.load(config)
  run_config = train.single_run_config(config, 'unet', 'adam', 0)
  history = train.train_one(run_config, str(tmp_path), train_data, evaluation)
  assert history[-1]['train_loss'] < 0.8 * history[0]['train_loss']
  # Predicting nothing scores about 0.3 here (the empty slices); learning gives clearly more.
  assert history[-1]['test_f1'] > 0.5
  # The final host-side F1 rescores the restored checkpoint: it equals the on-device Dice.
  assert history[-1]['test_f1'] == pytest.approx(history[-1]['test_dice'], abs=1e-6)


def test_parallel_modes_agree(tmp_path):
  assert len(jax.devices('cpu')) == 8
  config = _tiny_config(synthetic_train_size=32, synthetic_eval_size=12, num_epochs=1,
                        batch_size=16)
  train_data, evaluation = input_pipeline.load(config)
  histories, params = {}, {}
  for mode in ('none', 'sharded', 'pmap'):
    run_config = train.single_run_config(config, 'unet', 'znorm', 0)
    run_config.parallel = mode
    run_dir = str(tmp_path / mode)
    histories[mode] = train.train_one(run_config, run_dir, train_data, evaluation)
    task = train.make_task(run_config, 'unet')
    model = loop.load_model(run_config, run_dir, task, resumable_keys=train.resumable_keys(run_config))
    params[mode] = nnx.state(model, nnx.Param)
  for mode in ('sharded', 'pmap'):
    for key, value in histories['none'][-1].items():
      if key != 'train_images_per_second':
        assert histories[mode][-1][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (mode, key)
    chex.assert_trees_all_close(params[mode], params['none'], rtol=1e-4, atol=1e-5)


def test_sweep_on_mocked_oxford_iiit_pet_writes_table3_report_and_resumes(tmp_path):
  config = _tiny_config(dataset='oxford_iiit_pet', methods=('adam', 'znorm'))
  workdir = str(tmp_path)
  with tfds.testing.mock_data(num_examples=20):
    results = train.train_and_evaluate(config, workdir)
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
    resumed = train.train_and_evaluate(config, workdir)
  assert [r.history for r in resumed] == [r.history for r in results]


def test_command_line_reports_a_bad_flag():
  completed = subprocess.run(
      [sys.executable, '-m', 'examples.unet_segmentation.main',
       '--config=examples/unet_segmentation/configs/tiny.py', '--workdir=unused',
       '--config.dataset=cityscapes'],
      cwd=_REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode != 0
  assert 'error: Unknown --config.dataset=' in completed.stderr


@pytest.mark.parametrize('override, message', [
    ({'methods': ('adam', 'lion')}, 'lion'),
    ({'parallel': 'fsdp'}, '--config.parallel'),
    ({'image_size': 30}, '--config.image_size'),
    ({'models': ('segnet',)}, 'valid models'),
])
def test_validate_config_names_the_bad_flag(override, message):
  with pytest.raises(ValueError, match=message):
    train.validate_config(_tiny_config(**override))
