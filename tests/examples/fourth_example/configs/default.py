"""The fourth example's defaults: a one-hidden-layer MLP on scikit-learn's digits."""

import ml_collections

from examples.study import defaults
from examples.training.fields import Field


def get_config() -> ml_collections.ConfigDict:
  config = defaults.get_config()
  config.example = 'fourth_example'
  config.dataset = 'digits'
  config.model = 'mlp'
  config.hidden = 32  # Units of the hidden layer.
  return config


FIELDS = {
    'dataset': Field(str),  # Checked against input_pipeline.DATASETS by the study.
    'hidden': Field(int, minimum=1),
}
"""What each of the example's own fields accepts (:mod:`examples.training.fields`)."""
