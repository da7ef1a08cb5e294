"""Resume is exact for every example with every field it may change changed, or refused in one line.

Each example trains its tiny config for one epoch, then resumes for a second with every field
that the README lists as changeable set otherwise, and must end bit for bit where an
uninterrupted two-epoch run ends. The language model, whose num_epochs may not change,
resumes from the uninterrupted run's checkpoint of epoch 1.
"""

import shutil

import chex
import jax
import pytest

from examples.image_classification import example as image_classification
from examples.image_classification.configs import tiny as image_classification_tiny
from examples.language_model import example as language_model
from examples.language_model.configs import tiny as language_model_tiny
from examples.study import experiment
from examples.unet_segmentation import example as unet_segmentation
from examples.unet_segmentation.configs import tiny as unet_segmentation_tiny
from tests.examples import saved
from tests.examples.saved import final_state
from tests.examples.saved import without_timing

# The core's and the study's changeable fields, as a resumed run sets them; data_dir and
# download name no other data for these offline datasets. process_id, also changeable, has
# one value in one process; the fields of other devices are refused (test_failures.py).
_CHANGED = {'log_every_steps': 1, 'checkpoint_every_steps': 5, 'progress_bar': True,
            'on_nonfinite': 'skip', 'max_nonfinite_steps': 2, 'log_gradient_statistics': True,
            'compilation_cache': False, 'coordinator_address': 'localhost:1',
            'resume_on_other_devices': True, 'fixed_on_resume': ()}


def _unet(config):
  config.update(model='unet', num_example_images=1, tversky_alpha=0.5, tversky_beta=0.5,
                manual_dir='/nowhere', data_dir='/nowhere')
  config.model_kwargs.attention_unet.update(base_features=2)  # Another model's.
  config.sweep.methods = ('gc',)


def _other_examples(config):
  config.update(data_dir='/nowhere', download=True)
  config.sweep.seeds = (3,)


EXAMPLES = {
    'image_classification': (image_classification.EXAMPLE, image_classification_tiny,
                             _other_examples),
    'language_model': (language_model.EXAMPLE, language_model_tiny, _other_examples),
    'unet_segmentation': (unet_segmentation.EXAMPLE, unet_segmentation_tiny, _unet),
}


@pytest.fixture(scope='module', autouse=True)
def persistent_compilation_cache(tmp_path_factory):
  """Every program compiled once: a run of a configuration already run loads them all."""
  with saved.persistent_compilation_cache(tmp_path_factory.mktemp('jax_cache')):
    previous = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    try:
      yield
    finally:
      jax.config.update('jax_persistent_cache_min_compile_time_secs', previous)


def _config(tiny, **overrides):
  config = tiny.get_config()
  config.update({'platform': 'cpu', 'parallel': 'none', 'num_epochs': 2,
                 'checkpoint_every_steps': 1000, 'compilation_cache': True, **overrides})
  if config.example == 'image_classification':
    config.batch_size = 256  # 5 steps per epoch.
  if config.example == 'unet_segmentation':
    config.update(model='unet', synthetic_train_size=32, synthetic_eval_size=8)
  return config


@pytest.mark.parametrize('name', EXAMPLES)
def test_a_resume_with_every_changeable_field_changed_ends_as_an_uninterrupted_run(tmp_path, name):
  example, tiny, change_example_fields = EXAMPLES[name]
  whole, workdir = tmp_path / 'whole', tmp_path / 'resumed'
  if 'num_epochs' in _config(tiny).fixed_on_resume:  # The language model's cosine schedule.
    # Its 6 steps per epoch: epoch 1 ends in a checkpoint, which the resumed run starts from.
    uninterrupted = experiment.train_and_evaluate(
        example, _config(tiny, checkpoint_every_steps=6), str(whole))
    shutil.copytree(whole, workdir)
    shutil.rmtree(workdir / 'checkpoints' / '12')
    with pytest.raises(ValueError, match=r'other settings \(num_epochs: 2 there, 3 now\)'):
      experiment.train_and_evaluate(example, _config(tiny, resume=True, num_epochs=3), str(workdir))
  else:
    uninterrupted = experiment.train_and_evaluate(example, _config(tiny), str(whole))
    experiment.train_and_evaluate(example, _config(tiny, num_epochs=1), str(workdir))
  config = _config(tiny, resume=True, **_CHANGED)
  change_example_fields(config)
  resumed = experiment.train_and_evaluate(example, config, str(workdir))

  assert [record.pop('train_skipped_steps') for record in resumed[1:]] == [0]  # on_nonfinite=skip
  assert without_timing(resumed) == without_timing(uninterrupted)
  chex.assert_trees_all_equal(final_state(workdir), final_state(whole))
