"""Flags: bad values get one clear line naming the flag, not a traceback."""

import os
import subprocess
import sys

import pytest

from examples.resnet_classification import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.parametrize('field, value, message', [
    ('method', 'sgd', 'valid methods are: adam, znorm, gc, clip, wd1e-3, wd1e-4'),
    ('model', 'resnet21', 'valid models are'),
    ('dataset', 'mnist', 'valid datasets are: digits, cifar10, patch_camelyon'),
    ('parallel', 'dp', 'valid values are: sharded, pmap, none'),
    ('batch_size', 12, r'--config.batch_size=12 must be a positive multiple of the 8 devices'),
    ('num_epochs', 0, '--config.num_epochs=0 must be positive'),
    ('learning_rate', -1.0, '--config.learning_rate=-1.0 must be positive'),
])
def test_validate_config_names_the_bad_flag(config, field, value, message):
  config[field] = value
  with pytest.raises(ValueError, match=message):
    train.validate_config(config)


def test_sweep_methods_are_validated(config):
  config.sweep.methods = ('adam', 'lamb')
  with pytest.raises(ValueError, match="Unknown method 'lamb'"):
    train.validate_config(config)


@pytest.mark.parametrize('flag, message', [
    ('--config.method=sgd', "error: Unknown method 'sgd'; valid methods are:"),
    # Also checks that the unset data_dir can be overridden from the command line.
    ('--config.dataset=cifar10', 'tfds build cifar10 --data_dir={workdir}/tfds'),
])
def test_main_exits_with_the_message_only(tmp_path, flag, message):
  result = subprocess.run(
      [sys.executable, '-m', 'examples.resnet_classification.main',
       '--config=examples/resnet_classification/configs/tiny.py', f'--workdir={tmp_path}',
       f'--config.data_dir={tmp_path}/tfds', flag],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
  )
  assert result.returncode == 1
  assert message.format(workdir=tmp_path) in result.stderr
  assert 'Traceback' not in result.stderr
