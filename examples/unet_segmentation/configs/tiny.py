"""Smallest useful configuration, for tests: one tiny U-Net, two epochs on 32 x 32 images."""

from examples.unet_segmentation.configs import default


def get_config():
  config = default.get_config()
  config.image_size = 32
  config.synthetic_train_size = 64
  config.synthetic_eval_size = 16
  config.sweep.models = ('unet',)
  config.sweep.methods = ('adam',)
  config.sweep.seeds = (0,)
  for name in ('unet', 'attention_unet', 'unet_plus_plus'):
    config.model_kwargs[name].update(base_features=4, depth=2)
  config.model_kwargs.resnet_unet.update(base_features=4, stage_sizes=(1, 1))
  config.batch_size = 16
  config.num_epochs = 2
  config.lr_decay_start_epoch = 1
  config.lr_decay_every_epochs = 1
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.num_example_images = 2
  config.progress_bar = False
  return config
