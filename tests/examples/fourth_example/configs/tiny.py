"""A seconds-long run for the test: two epochs of a 16-unit MLP (test accuracy about 0.87)."""

from tests.examples.fourth_example.configs import default


def get_config():
  config = default.get_config()
  config.hidden = 16
  config.batch_size = 64
  config.learning_rate = 1e-2
  config.num_epochs = 2
  config.progress_bar = False
  config.compilation_cache = False
  return config
