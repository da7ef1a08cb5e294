"""Defaults of every setting the training core reads; each example's config extends them."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The core's settings, checked by :func:`examples.training.validation.validate`."""
  config = ml_collections.ConfigDict()

  config.seed = 0  # Initializes the model; data sources usually shuffle with it too.
  config.batch_size = 256  # Global, over all devices and processes.
  config.num_epochs = 100

  # Execution.
  config.parallel = 'sharded'  # 'sharded' (jit over a device mesh), 'fsdp', 'pmap' or 'none'.
  config.mesh_axis_types = 'auto'  # sharded and fsdp: the mesh's axis types, 'auto' or 'explicit'.
  config.fsdp_devices = 0  # fsdp: devices the state is split over; 0: each process's devices.
  config.platform = ''  # Train on this JAX platform's devices ('cpu', 'gpu', 'tpu'); '': JAX's default.
  config.on_nonfinite = 'stop'  # A NaN/Inf loss, gradient or update: 'stop' the run or 'skip' the step.
  config.max_nonfinite_steps = 10  # 'skip': stop after this many non-finite steps in a row.
  config.log_every_steps = 50
  config.log_gradient_statistics = False  # Per-leaf gradient norm and std at log intervals.
  config.checkpoint_every_steps = 1000
  config.resume = False
  config.progress_bar = True

  # Multi-host: set all three on every process (jax.distributed.initialize).
  config.coordinator_address = ''  # host:port of process 0.
  config.num_processes = 1
  config.process_id = 0
  return config
