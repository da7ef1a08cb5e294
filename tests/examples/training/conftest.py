"""Fixtures of the training core's tests."""

import pytest

from tests.conftest import most_optimizations_off
from tests.examples.saved import saved_steps
from tests.examples.training import tiny


@pytest.fixture(scope='session')
def reference(tmp_path_factory):
  """An uninterrupted run of ``tiny``: its directory and history (trained once per worker)."""
  workdir = tmp_path_factory.mktemp('reference')
  with most_optimizations_off():  # As the tests that compare with it.
    history = tiny.fit(workdir)
  assert saved_steps(workdir) == [16, 15]
  return workdir, history
