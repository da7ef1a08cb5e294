"""A seconds-long run for tests: a 2-layer, 32-wide transformer over 16 bytes."""

from examples.language_model.configs import default


def get_config():
  config = default.get_config()
  config.model = 'tiny'
  config.context = 16
  config.train_bytes = 17 * 8 * 6  # 6 steps of 8 windows per epoch.
  config.eval_bytes = 17 * 12
  config.batch_size = 8
  config.num_epochs = 2
  config.warmup_steps = 2
  config.log_every_steps = 3
  config.checkpoint_every_steps = 6
  config.progress_bar = False
  return config
