"""Multi-host start-up and the split of each global batch between processes."""

import jax


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """Calls ``jax.distributed.initialize`` when a coordinator address is given.

  Must run before anything touches a JAX device. On CPU, cross-process
  collectives go through gloo.

  Args:
    coordinator_address: ``host:port`` of process 0; empty for one process.
    num_processes: number of processes in the job.
    process_id: index of this process.

  Raises:
    ValueError: if multi-process flags are given without a coordinator address.
  """
  if not coordinator_address:
    if num_processes != 1 or process_id != 0:
      raise ValueError(
          '--config.num_processes / --config.process_id need '
          '--config.coordinator_address=HOST:PORT.'
      )
    return
  if not 0 <= process_id < num_processes:
    raise ValueError(f'--config.process_id={process_id} must be in [0, {num_processes}).')
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def process_batch_size(global_batch_size: int, num_devices: int) -> int:
  """This process's share of a global batch that is split evenly over ``num_devices``.

  Raises:
    ValueError: if the batch does not split evenly over devices and processes.
  """
  if global_batch_size <= 0 or global_batch_size % num_devices:
    raise ValueError(
        f'--config.batch_size={global_batch_size} must be a positive multiple of the '
        f'{num_devices} devices it is split over.'
    )
  return global_batch_size // jax.process_count()


def process_slice(global_batch_size: int) -> slice:
  """The rows of a global batch that this process feeds (``jax.process_index()``)."""
  size = global_batch_size // jax.process_count()
  start = jax.process_index() * size
  return slice(start, start + size)


def process_range(num_examples: int) -> range:
  """This process's contiguous share of an evaluation set of ``num_examples``."""
  per_process = -(-num_examples // jax.process_count())
  start = min(num_examples, jax.process_index() * per_process)
  return range(start, min(num_examples, start + per_process))


def num_eval_batches(num_examples: int, process_batch: int) -> int:
  """Evaluation batches per process; equal in all processes, as collectives require."""
  per_process = -(-num_examples // jax.process_count())
  return -(-per_process // process_batch)
