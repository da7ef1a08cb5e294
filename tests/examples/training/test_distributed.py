"""Process-level helpers and flag checks of the training core (one process, 8 devices)."""

import chex
import jax
import numpy as np
import pytest

from examples.training import defaults
from examples.training import distributed
from examples.training import parallel
from examples.training import validation


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
  with pytest.raises(ValueError, match='valid values are: sharded, fsdp, pmap, none'):
    parallel.make('ddp')


def test_fsdp_splits_each_state_leaf_on_its_largest_divisible_axis():
  for axis_types in parallel.AXIS_TYPES:
    fsdp = parallel.make('fsdp', 'cpu', axis_types=axis_types, fsdp_devices=4)
    assert dict(fsdp.mesh.shape) == {parallel.DATA_AXIS: 2, parallel.FSDP_AXIS: 4}
    state = {'kernel': np.arange(24.0).reshape(3, 8), 'wide': np.ones((8, 16)),
             'odd': np.ones((3, 5)), 'step': np.asarray(7)}
    placed = fsdp.put_state(state)
    specs = {name: tuple(x.sharding.spec) for name, x in placed.items()}
    assert specs == {'kernel': (None, 'fsdp'), 'wide': (None, 'fsdp'), 'odd': (), 'step': ()}
    assert placed['kernel'].addressable_shards[0].data.shape == (3, 2)
    chex.assert_trees_all_equal(fsdp.get_state(placed), state)
  assert parallel.make('fsdp', 'cpu').mesh.shape[parallel.FSDP_AXIS] == 8  # 0: the local devices.
  assert parallel.make('sharded', 'cpu').gather_variables is None


def test_bad_mesh_flags_are_named():
  config = defaults.get_config()
  config.update(parallel='fsdp', platform='cpu', batch_size=8, mesh_axis_types='manual')
  with pytest.raises(ValueError, match='--config.mesh_axis_types'):
    validation.validate(config)
  config.update(mesh_axis_types='explicit', fsdp_devices=3)
  with pytest.raises(ValueError, match='--config.fsdp_devices=3 must divide the 8 devices'):
    validation.validate(config)


def test_modes_span_the_devices():
  assert len(jax.devices('cpu')) == 8  # tests/conftest.py
  assert parallel.make('sharded', 'cpu').num_devices == 8
  assert parallel.make('pmap', 'cpu').num_devices == 8
  assert parallel.make('none', 'cpu').num_devices == 1
  assert parallel.device_count('sharded', 'cpu') == 8
  assert parallel.device_count('none', 'cpu') == 1
  assert parallel.make('pmap', 'cpu').data_axis_name == parallel.PMAP_AXIS
  assert parallel.make('sharded', 'cpu').data_axis_name is None
