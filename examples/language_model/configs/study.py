"""The study: Adam, ZNorm per layer and pooled, GC and global-norm clipping, three seeds.

A 4-layer, 128-wide byte-level transformer over 64 bytes of the Python standard
library, 4 epochs of 50 steps of 16 windows (52 kB of training text, seen four
times; 33 kB of validation text from other files), the same for every
method and seed. These replaced a first, larger set (75 steps of 32 windows, 8
validation batches, 30 warmup steps) in the commit that added the results; the
record does not show whether any result had been seen before that change.
"""

from examples.language_model.configs import default

STEPS_PER_EPOCH = 50


def get_config():
  config = default.get_config()
  config.model = 'small'
  config.context = 64
  config.batch_size = 16
  config.train_bytes = STEPS_PER_EPOCH * config.batch_size * (config.context + 1)
  config.eval_bytes = 32 * config.batch_size * (config.context + 1)
  config.num_epochs = 4
  config.warmup_steps = 20
  config.learning_rate = 1e-3
  config.log_every_steps = 25
  config.checkpoint_every_steps = STEPS_PER_EPOCH
  config.sweep.models = ('small',)
  config.sweep.methods = ('adam', 'znorm', 'znorm_pooled', 'gc', 'clip_norm')
  config.sweep.seeds = (0, 1, 2)
  config.resume = True  # Rerunning the command continues the sweep and skips finished runs.
  return config
