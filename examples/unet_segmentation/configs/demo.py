"""A few-minute CPU demo on synthetic data: small U-Net and Attention U-Net, Adam vs ZNorm."""

from examples.unet_segmentation.configs import default


def get_config():
  config = default.get_config()
  config.image_size = 64
  config.synthetic_train_size = 512
  config.synthetic_eval_size = 128
  config.sweep.models = ('unet', 'attention_unet')
  config.sweep.methods = ('adam', 'znorm')
  config.sweep.seeds = (0,)
  config.model_kwargs.unet.update(base_features=8, depth=3)
  config.model_kwargs.attention_unet.update(base_features=8, depth=3)
  config.batch_size = 32
  config.learning_rate = 1e-2
  config.num_epochs = 8
  config.lr_decay_start_epoch = 6
  config.lr_decay_every_epochs = 1
  config.log_every_steps = 4
  return config
