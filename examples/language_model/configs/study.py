"""The study: Adam, clipping and ZNorm's treatments of embeddings and layers, three seeds.

An 8-layer, 64-wide byte-level transformer (``deep``) over 64 bytes of the
Python standard library, 4 epochs of 40 steps of 16 windows (42 kB of training
text, seen four times; 17 kB of validation text from other files), the same
for every method and seed. Besides Adam and global-norm clipping, ZNorm four
ways: embedding tables per row (``znorm``, the example's default), whole
(``znorm_table``) or left to Adam (``znorm_masked``), and the layers pooled
(``znorm_pooled``). The model is narrower and the run shorter than the
earlier 4-layer study's, so that the 18 runs fit in about 15 minutes on 2 CPU
cores.
"""

from examples.language_model.configs import default

STEPS_PER_EPOCH = 40
NUM_EPOCHS = 4


def get_config():
  config = default.get_config()
  config.model = 'deep'
  config.context = 64
  config.batch_size = 16
  config.train_bytes = STEPS_PER_EPOCH * config.batch_size * (config.context + 1)
  config.eval_bytes = 16 * config.batch_size * (config.context + 1)
  config.num_epochs = NUM_EPOCHS
  config.warmup_steps = 20
  config.learning_rate = 1e-3
  config.log_every_steps = 20
  config.checkpoint_every_steps = NUM_EPOCHS * STEPS_PER_EPOCH  # At the end: saves take time.
  config.sweep.models = ('deep',)
  config.sweep.methods = ('adam', 'clip_norm', 'znorm_table', 'znorm', 'znorm_masked',
                          'znorm_pooled')
  config.sweep.seeds = (0, 1, 2)
  config.resume = True  # Rerunning the command continues the sweep and skips finished runs.
  return config
