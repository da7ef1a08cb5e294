"""``make demo``: the Table 1 comparison in miniature, offline, in minutes on a laptop CPU.

scikit-learn digits (16x16), a narrow ResNet-20, adam / znorm / gc / clip, three seeds.
"""

from examples.image_classification.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'digits'
  config.model = 'resnet20'
  config.width = 8
  config.batch_size = 128
  config.num_epochs = 6
  config.log_every_steps = 5
  config.sweep.models = ('resnet20',)
  config.sweep.methods = ('adam', 'znorm', 'gc', 'clip')
  config.sweep.seeds = (0, 1, 2)
  config.resume = True  # Rerunning the command continues the sweep and skips finished runs.
  return config
