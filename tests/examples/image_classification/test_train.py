"""End-to-end training on digits: learning, resume, determinism, a NaN in the data."""


import chex
import numpy as np
import pytest

from examples.image_classification.example import EXAMPLE
from examples.study import experiment
from examples.training import loop
from tests.examples.saved import Interrupted
from tests.examples.saved import example_with_batches
from tests.examples.saved import final_state
from tests.examples.saved import interrupted_at
from tests.examples.saved import saved_steps
from tests.examples.saved import without_timing


@pytest.mark.parametrize('method', ['adam', 'znorm'])
def test_digits_learns(config, method, tmp_path):
  config.method = method
  config.width = 8
  config.batch_size = 32
  config.num_epochs = 3
  config.parallel = 'none'
  history = experiment.train_and_evaluate(EXAMPLE, config, str(tmp_path))
  assert history[-1]['test_accuracy'] >= 0.85, history  # Chance is 0.1.
  assert history[-1]['train_loss'] < history[0]['train_loss']


def test_resume_matches_uninterrupted_run(config, tmp_path):
  config.checkpoint_every_steps = 10  # 22 steps per epoch: the resume starts mid-epoch 2.
  uninterrupted = experiment.train_and_evaluate(EXAMPLE, config, str(tmp_path / 'uninterrupted'))

  workdir = str(tmp_path / 'interrupted')
  with pytest.raises(Interrupted):
    experiment.train_and_evaluate(
        example_with_batches(EXAMPLE, interrupted_at(35)), config, workdir)
  assert saved_steps(workdir)[0] == 30

  with pytest.raises(ValueError, match='already holds checkpoints .* --config.resume=True'):
    experiment.train_and_evaluate(EXAMPLE, config, workdir)  # A fresh run must not mix with the old one.
  config.resume = True
  resumed = experiment.train_and_evaluate(EXAMPLE, config, workdir)
  assert without_timing(resumed) == without_timing(uninterrupted)
  chex.assert_trees_all_equal(final_state(workdir), final_state(str(tmp_path / 'uninterrupted')))


def test_same_seed_same_metrics_other_seed_differs(config, tmp_path):
  config.num_epochs = 1
  first = experiment.train_and_evaluate(EXAMPLE, config, str(tmp_path / 'first'))
  again = experiment.train_and_evaluate(EXAMPLE, config, str(tmp_path / 'again'))
  config.seed = 1
  other = experiment.train_and_evaluate(EXAMPLE, config, str(tmp_path / 'other'))
  assert without_timing(first) == without_timing(again)
  assert without_timing(first) != without_timing(other)


def test_one_nan_pixel_stops_the_run(config, tmp_path):
  # On main this ran to the end with a finite loss of 2.3026: relu(NaN) is 0 under XLA:CPU's jit.
  config.num_epochs = 1
  def a_nan_pixel_at_step_12(source, epoch, start_step, batches):
    for step, batch in enumerate(batches, start_step):
      if step == 12:
        batch['image'][0, 3, 3, 0] = np.nan
      yield batch

  with pytest.raises(loop.NonFiniteError,
                     match=rf'^training stopped at step 13: the .*gradients.*; the last good '
                           rf'checkpoint, {tmp_path}/checkpoints/10 \(step 10\), is kept'):
    experiment.train_and_evaluate(example_with_batches(EXAMPLE, a_nan_pixel_at_step_12), config, str(tmp_path))
  assert saved_steps(tmp_path) == [10]
