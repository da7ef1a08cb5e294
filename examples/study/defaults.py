"""The study's settings on top of the training core's: which example, model, method and sweep."""

import ml_collections

from examples.training import defaults
from examples.training.fields import Field


def get_config() -> ml_collections.ConfigDict:
  """The core's defaults plus the fields :mod:`examples.study.experiment` reads."""
  config = defaults.get_config()
  config.example = ''  # The example's name in examples/registry.py.

  # The run: one model and method (a sweep sets them, and the seed, per run).
  config.model = ''
  config.method = 'adam'  # adam, znorm, znorm_pooled, gc, clip, clip_norm, wd1e-3, wd1e-4.
  config.learning_rate = 1e-3  # The example may turn it into a schedule.

  config.compilation_cache = True  # Persist compiled steps in <workdir>/jax_cache.

  # Sweep: when any list is non-empty, the run is models x methods x seeds (an empty
  # list means the run's own model, method or seed), followed by the table and curves.
  config.sweep = ml_collections.ConfigDict()
  config.sweep.models = ()
  config.sweep.methods = ()
  config.sweep.seeds = ()
  return config


FIELDS = {
    'example': Field(str),  # These four name what the study and the example check themselves.
    'model': Field(str),
    'method': Field(str),
    'sweep.models': Field(str, sequence=True),
    'sweep.methods': Field(str, sequence=True),
    'learning_rate': Field(float, above=0),
    'compilation_cache': Field(bool),
    'sweep.seeds': Field(int, minimum=0, sequence=True),
}
"""What each field of :func:`get_config` accepts, besides the core's (``defaults.FIELDS``)."""
