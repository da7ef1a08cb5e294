"""Resume is exact for every example with every field it may change changed, or refused in one line.

Each example trains its tiny config for one epoch, then resumes for a second with every field
that the README lists as changeable set otherwise, and must end bit for bit where an
uninterrupted two-epoch run ends.
"""

import chex
import pytest

from examples.image_classification import train as image_classification
from examples.image_classification.configs import tiny as image_classification_tiny
from examples.language_model import train as language_model
from examples.language_model.configs import tiny as language_model_tiny
from examples.study import experiment
from examples.unet_segmentation import train as unet_segmentation
from examples.unet_segmentation.configs import tiny as unet_segmentation_tiny
from tests.examples import saved
from tests.examples.saved import Interrupted
from tests.examples.saved import example_with_batches
from tests.examples.saved import final_state
from tests.examples.saved import interrupted_at
from tests.examples.saved import without_timing

# The core's and the study's changeable fields, as a resumed run sets them; data_dir and
# download name no other data for these offline datasets.
_CHANGED = {'log_every_steps': 1, 'checkpoint_every_steps': 5, 'progress_bar': True,
            'on_nonfinite': 'skip', 'max_nonfinite_steps': 2, 'log_gradient_statistics': True,
            'compilation_cache': False, 'platform': ''}


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
  with saved.persistent_compilation_cache(tmp_path_factory.mktemp('jax_cache')):
    yield


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
  uninterrupted = experiment.train_and_evaluate(example, _config(tiny), str(tmp_path / 'whole'))

  workdir = str(tmp_path / 'resumed')
  if 'num_epochs' in _config(tiny).fixed_on_resume:  # The language model's cosine schedule.
    with pytest.raises(Interrupted):  # Killed in epoch 2, after the checkpoint of epoch 1.
      experiment.train_and_evaluate(example_with_batches(example, interrupted_at(8)),
                                    _config(tiny, checkpoint_every_steps=6), workdir)
    with pytest.raises(ValueError, match=r'other settings \(num_epochs: 2 there, 3 now\)'):
      experiment.train_and_evaluate(example, _config(tiny, resume=True, num_epochs=3), workdir)
  else:
    experiment.train_and_evaluate(example, _config(tiny, num_epochs=1), workdir)
  config = _config(tiny, resume=True, **_CHANGED)
  change_example_fields(config)
  resumed = experiment.train_and_evaluate(example, config, workdir)

  assert [record.pop('train_skipped_steps') for record in resumed[1:]] == [0]  # on_nonfinite=skip
  assert without_timing(resumed) == without_timing(uninterrupted)
  chex.assert_trees_all_equal(final_state(workdir), final_state(tmp_path / 'whole'))
