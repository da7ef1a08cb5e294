"""Does ZNorm need skip connections? The paper's central claim, tested offline on real data.

scikit-learn's digits at their native 8x8, narrow nets (width 8), Adam / ZNorm
/ Gradient Centralization, five seeds, six epochs of batch 128 (as ``make
demo``): CIFAR ResNet-20 and ResNet-56 with their shortcuts (``resnet<n>``) and
without (``plain<n>``, the same layers), VGG-16 (no skips) and DenseNet-121
(growth rate 8). The settings were fixed by the 30-minute budget before any
result was seen; none was tuned on the results.
"""

from examples.image_classification.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'digits'
  config.image_size = 8
  config.model = 'resnet20'
  config.width = 8
  config.batch_size = 128
  config.num_epochs = 6
  config.log_every_steps = 5
  config.sweep.models = ('resnet20', 'plain20', 'resnet56', 'plain56', 'vgg16', 'densenet121')
  config.sweep.methods = ('adam', 'znorm', 'gc')
  config.sweep.seeds = (0, 1, 2, 3, 4)
  config.resume = True  # Rerunning the command continues the sweep and skips finished runs.
  return config
