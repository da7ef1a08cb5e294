"""GPT-2 small's blocks (12 layers, 768 wide, 12 heads) over 1024 bytes, bfloat16 compute.

For an accelerator: ``benchmarks/lm_throughput.py`` times its train step, and
``--config.dataset=tiny_shakespeare --config.download=True`` trains it on tfds
text.
"""

from examples.language_model.configs import default


def get_config():
  config = default.get_config()
  config.model = 'gpt2_small'
  config.dtype = 'bfloat16'
  config.context = 1024
  config.batch_size = 16
  config.train_bytes = 64_000_000
  config.eval_bytes = 1_048_576
  config.warmup_steps = 500
  config.learning_rate = 6e-4
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  return config
