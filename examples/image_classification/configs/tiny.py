"""A seconds-long run for tests: a 4-channel ResNet-8 on digits."""

from examples.image_classification.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'digits'
  config.image_size = 8
  config.model = 'resnet8'
  config.width = 4
  config.batch_size = 64
  config.num_epochs = 2
  config.log_every_steps = 5
  config.checkpoint_every_steps = 10
  config.progress_bar = False
  return config
