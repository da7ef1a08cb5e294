"""Defaults for every setting; the other configs start from these.

Training follows the paper: Adam, learning rate 1e-3, batch 256, no augmentation.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # Data.
  config.dataset = 'digits'  # 'digits' (offline), 'cifar10' or 'patch_camelyon' (tfds).
  config.data_dir = config_dict.placeholder(str)  # tfds data directory; None: tfds's default.
  config.download = False  # Let tfds download and prepare the dataset.
  config.image_size = 16  # digits only: the 8x8 images are upsampled/padded to this.
  config.augment = False  # Random crop + flip; the paper used none.
  config.shuffle_buffer = 16_384  # tfds datasets.
  config.normalization_examples = 4096  # tfds: training images for the channel statistics.

  # Model.
  config.model = 'resnet56'
  config.width = config_dict.placeholder(int)  # First-stage channels; None: the paper's 16 / 64.
  config.skip_connections = True  # CIFAR ResNets; False builds a plain deep CNN.
  config.bn_momentum = 0.9

  # Optimization.
  config.method = 'adam'  # adam, znorm, gc, clip, wd1e-3, wd1e-4.
  config.learning_rate = 1e-3
  config.batch_size = 256  # Global, over all devices and processes.
  config.num_epochs = 100
  config.seed = 0

  # Execution.
  config.parallel = 'sharded'  # 'sharded', 'pmap' or 'none'.
  config.platform = ''  # Train on this JAX platform's devices ('cpu', 'gpu', 'tpu'); '': JAX's default.
  config.on_nonfinite = 'stop'  # A NaN/Inf loss, gradient or update: 'stop' the run or 'skip' the step.
  config.max_nonfinite_steps = 10  # 'skip': stop after this many non-finite steps in a row.
  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.resume = False
  config.progress_bar = True
  config.compilation_cache = True  # Persist compiled steps in <workdir>/jax_cache.

  # Multi-host: set all three on every process (jax.distributed.initialize).
  config.coordinator_address = ''
  config.num_processes = 1
  config.process_id = 0

  # Sweep: when methods is non-empty, main runs models x methods x seeds
  # (empty models/seeds mean config.model / config.seed) and writes the table.
  config.sweep = ml_collections.ConfigDict()
  config.sweep.models = ()
  config.sweep.methods = ()
  config.sweep.seeds = ()
  return config
