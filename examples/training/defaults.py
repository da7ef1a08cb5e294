"""Defaults of every setting the training core reads; each example's config extends them.

:data:`FIELDS` declares what each accepts (:mod:`examples.training.fields`).
"""

import ml_collections

from examples.training.fields import Field


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
  # Let a resumed run change parallel, mesh_axis_types, fsdp_devices, platform or num_processes
  # (other devices, such as a preempted job's new machine): it then sums in another order and
  # does not end bit for bit where an uninterrupted run does.
  config.resume_on_other_devices = False
  # Fields that the core lets a resumed run change but this config does not: they size a
  # schedule, say (a resumed run must equal the uninterrupted one).
  config.fixed_on_resume = ()
  config.progress_bar = True

  # Multi-host: set all three on every process (jax.distributed.initialize).
  config.coordinator_address = ''  # host:port of process 0.
  config.num_processes = 1
  config.process_id = 0
  return config


_POSITIVE = Field(int, minimum=1)
_NON_NEGATIVE = Field(int, minimum=0)
_FLAG = Field(bool)

FIELDS = {
    'seed': _NON_NEGATIVE,
    'batch_size': _POSITIVE,
    'num_epochs': _POSITIVE,
    'parallel': Field(str, choices=('sharded', 'fsdp', 'pmap', 'none')),
    'mesh_axis_types': Field(str, choices=('auto', 'explicit')),
    'fsdp_devices': _NON_NEGATIVE,
    'platform': Field(str),
    'on_nonfinite': Field(str, choices=('stop', 'skip')),
    'max_nonfinite_steps': _POSITIVE,
    'log_every_steps': _POSITIVE,
    'log_gradient_statistics': _FLAG,
    'checkpoint_every_steps': _POSITIVE,
    'resume': _FLAG,
    'resume_on_other_devices': _FLAG,
    'fixed_on_resume': Field(str, sequence=True),
    'progress_bar': _FLAG,
    'coordinator_address': Field(str),
    'num_processes': _POSITIVE,
    'process_id': _NON_NEGATIVE,
}
"""What each field of :func:`get_config` accepts."""
