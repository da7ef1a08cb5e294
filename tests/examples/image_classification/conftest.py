"""Fixtures for the image classification tests."""

import os

import pytest

from examples.image_classification.configs import tiny
from tests.examples import saved


@pytest.fixture(scope='session', autouse=True)
def persistent_compilation_cache(tmp_path_factory):
  """Runs that repeat a configuration load its compiled steps instead of recompiling."""
  with saved.persistent_compilation_cache(tmp_path_factory.mktemp('jax_cache')):
    yield


@pytest.fixture(scope='session')
def shared_tmp_path(tmp_path_factory):
  """A directory that all xdist workers of this run share; without xdist, the run's own."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # Each worker's base is a folder of the run's.
  path = root / 'shared'
  path.mkdir(exist_ok=True)
  return path


@pytest.fixture
def config():
  """The tiny test config: ResNet-8, width 4, 8x8 digits, batch 64, 2 epochs, CPU devices."""
  config = tiny.get_config()
  config.platform = 'cpu'  # The 8 simulated CPU devices, also on a machine with an accelerator.
  return config
