"""ArraySource batching and padding, checked example by example."""

import numpy as np

from examples.training import data


def _source(num_train=50, num_eval=13, batch=8, seed=0, **kwargs):
  train = {'x': np.arange(num_train, dtype=np.float32)}
  evaluation = {'x': np.arange(100, 100 + num_eval, dtype=np.float32)}
  return data.ArraySource(train, evaluation, global_batch_size=batch, process_batch_size=batch,
                          seed=seed, **kwargs)


def test_epoch_is_a_permutation_cut_into_full_batches():
  source = _source()
  assert source.steps_per_epoch == 6  # 50 // 8; the remainder is dropped.
  seen = np.concatenate([b['x'] for b in source.train_batches(epoch=0)])
  assert len(seen) == 48 and len(set(seen)) == 48 and set(seen) <= set(range(50))
  assert all(b['mask'].tolist() == [1.0] * 8 for b in source.train_batches(0))


def test_order_depends_on_seed_and_epoch_only():
  def order(source, epoch):
    return np.concatenate([b['x'] for b in source.train_batches(epoch)])

  np.testing.assert_array_equal(order(_source(), 1), order(_source(), 1))
  assert not np.array_equal(order(_source(), 0), order(_source(), 1))
  assert not np.array_equal(order(_source(), 0), order(_source(seed=1), 0))


def test_start_step_resumes_within_the_epoch():
  source = _source()
  full = [b['x'] for b in source.train_batches(2)]
  resumed = [b['x'] for b in source.train_batches(2, start_step=4)]
  assert len(resumed) == 2
  np.testing.assert_array_equal(np.stack(resumed), np.stack(full[4:]))


def test_transform_gets_a_reproducible_generator():
  def jitter(batch, rng):
    return dict(batch, x=batch['x'] + rng.random(len(batch['x'])))

  first = [b['x'] for b in _source(train_transform=jitter).train_batches(0)]
  again = [b['x'] for b in _source(train_transform=jitter).train_batches(0, start_step=3)]
  np.testing.assert_array_equal(np.stack(first[3:]), np.stack(again))


def test_eval_batches_cover_every_example_once_with_padding():
  batches = list(_source().eval_batches())
  assert len(batches) == 2
  real = np.concatenate([b['x'][b['mask'] == 1] for b in batches])
  np.testing.assert_array_equal(real, np.arange(100, 113))
  np.testing.assert_array_equal(batches[1]['mask'], [1] * 5 + [0] * 3)
  np.testing.assert_array_equal(batches[1]['x'][5:], 0.0)


def test_pad_batch():
  padded = data.pad_batch({'x': np.ones((2, 3), np.int32)}, 4)
  np.testing.assert_array_equal(padded['x'], [[1] * 3] * 2 + [[0] * 3] * 2)
  assert padded['x'].dtype == np.int32
  np.testing.assert_array_equal(padded['mask'], [1, 1, 0, 0])
