"""Process-level helpers and flag checks of the training core (one process, 8 devices)."""

import jax
import pytest

from examples.training import distributed
from examples.training import parallel


def test_process_batch_size_checks_divisibility():
  assert distributed.process_batch_size(64, num_devices=8) == 64
  with pytest.raises(ValueError, match=r'--config.batch_size=12 must be a positive multiple of the 8'):
    distributed.process_batch_size(12, num_devices=8)
  with pytest.raises(ValueError, match='--config.batch_size=0'):
    distributed.process_batch_size(0, num_devices=1)


def test_single_process_shares():
  assert distributed.process_slice(32) == slice(0, 32)
  assert distributed.process_range(10) == range(10)
  assert distributed.num_eval_batches(10, 4) == 3


def test_initialize_without_coordinator_is_a_no_op_and_checks_flags():
  distributed.initialize('', 1, 0)
  with pytest.raises(ValueError, match='--config.coordinator_address'):
    distributed.initialize('', 2, 0)
  with pytest.raises(ValueError, match=r'--config.process_id=2 must be in \[0, 2\)'):
    distributed.initialize('localhost:1234', 2, 2)


def test_unknown_parallel_mode():
  with pytest.raises(ValueError, match='valid values are: sharded, pmap, none'):
    parallel.make('ddp')


def test_modes_span_the_devices():
  assert len(jax.devices('cpu')) == 8  # tests/conftest.py
  assert parallel.make('sharded', 'cpu').num_devices == 8
  assert parallel.make('pmap', 'cpu').num_devices == 8
  assert parallel.make('none', 'cpu').num_devices == 1
  assert parallel.device_count('sharded', 'cpu') == 8
  assert parallel.device_count('none', 'cpu') == 1
  assert parallel.make('pmap', 'cpu').data_axis_name == parallel.PMAP_AXIS
  assert parallel.make('sharded', 'cpu').data_axis_name is None
