"""Data parallelism: ``sharded`` (jit over a mesh), ``pmap`` and ``none``.

Each mode places the train state and the batches on devices and compiles the
steps of :mod:`examples.training.steps`. All modes train the same global batch
with the same global BatchNorm statistics, so they give the same result up to
floating-point reassociation.
"""

import abc
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from examples.training import distributed

MODES = ('sharded', 'pmap', 'none')
DATA_AXIS = 'data'
PMAP_AXIS = 'batch'


class DataParallel(abc.ABC):
  """Where the state and batches live and how steps are compiled."""

  data_axis_name: str | None = None
  """The device axis that batch-wide layers (BatchNorm) reduce over; only ``pmap`` has one."""

  @property
  @abc.abstractmethod
  def num_devices(self) -> int:
    """Devices that share each global batch."""

  @abc.abstractmethod
  def put_state(self, state):
    """Places a host (or single-device) pytree as this mode keeps it."""

  @abc.abstractmethod
  def get_state(self, state):
    """One process-local copy of a placed pytree, as NumPy arrays."""

  @abc.abstractmethod
  def put_batch(self, batch: dict[str, np.ndarray]):
    """Places this process's part of a global batch."""

  @abc.abstractmethod
  def compile(self, step: Callable, *, donate_argnums: tuple[int, ...]) -> Callable:
    """Compiles a step ``(state, batch) -> outputs`` of :mod:`examples.training.steps`."""


class SingleDevice(DataParallel):
  """``none``: one device, ``jax.jit``."""

  def __init__(self, platform: str | None = None):
    if jax.process_count() > 1:
      raise ValueError('--config.parallel=none cannot run on several processes; use sharded or pmap.')
    self._device = jax.local_devices(backend=platform)[0]

  @property
  def num_devices(self) -> int:
    return 1

  def put_state(self, state):
    return jax.device_put(state, self._device)

  def get_state(self, state):
    return jax.device_get(state)

  def put_batch(self, batch):
    return jax.device_put(batch, self._device)

  def compile(self, step, *, donate_argnums):
    return jax.jit(step, donate_argnums=donate_argnums)


class Sharded(DataParallel):
  """``sharded``: ``jax.jit`` over a 1-D ``Mesh``; batch split on ``data``, state replicated.

  Works across processes: each process passes its local part of the batch.
  """

  def __init__(self, platform: str | None = None):
    self.mesh = Mesh(np.asarray(jax.devices(platform)), (DATA_AXIS,))
    self._replicated = NamedSharding(self.mesh, PartitionSpec())
    self._batch_sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  def put_state(self, state):
    def replicate(x):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, self._replicated, lambda index: x[index])

    return jax.tree.map(replicate, state)

  def get_state(self, state):
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state)

  def put_batch(self, batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self._batch_sharding, x), batch
    )

  def compile(self, step, *, donate_argnums):
    replicated = self._replicated
    return jax.jit(
        step,
        in_shardings=(replicated, self._batch_sharding),
        out_shardings=replicated,
        donate_argnums=donate_argnums,
    )


class Pmapped(DataParallel):
  """``pmap``: one replica per device with a leading device axis; ``lax.pmean`` syncs them."""

  data_axis_name = PMAP_AXIS

  def __init__(self, platform: str | None = None):
    self._platform = platform
    self._local_devices = jax.local_device_count(platform)
    # The layout pmap gives its outputs; placing inputs the same way avoids a copy per step.
    mesh = Mesh(np.asarray(jax.devices(platform)), (PMAP_AXIS,))
    self._sharding = NamedSharding(mesh, PartitionSpec(PMAP_AXIS))

  @property
  def num_devices(self) -> int:
    return self._sharding.mesh.size

  def _put(self, local_stack):
    return jax.make_array_from_process_local_data(self._sharding, local_stack)

  def put_state(self, state):
    return jax.tree.map(
        lambda x: self._put(np.broadcast_to(np.asarray(x), (self._local_devices,) + np.shape(x))),
        state,
    )

  def get_state(self, state):
    return jax.tree.map(
        lambda x: np.asarray(x.addressable_shards[0].data).reshape(x.shape[1:]), state
    )

  def put_batch(self, batch):
    def split(x):
      if x.shape[0] % self._local_devices:
        raise ValueError(
            f'The per-process batch ({x.shape[0]}) must be divisible by the '
            f'{self._local_devices} local devices.'
        )
      return self._put(x.reshape((self._local_devices, -1) + x.shape[1:]))

    return jax.tree.map(split, batch)

  def compile(self, step, *, donate_argnums):
    return jax.pmap(step, axis_name=PMAP_AXIS, backend=self._platform,
                    donate_argnums=donate_argnums)


def check_mode(mode: str) -> str:
  """Returns ``mode`` if it is one of :data:`MODES`, else raises ``ValueError``."""
  if mode not in MODES:
    raise ValueError(f'Unknown --config.parallel={mode!r}; valid values are: {", ".join(MODES)}.')
  return mode


def device_count(mode: str, platform: str | None = None) -> int:
  """How many devices share each global batch in ``mode`` (see :func:`make`)."""
  return 1 if check_mode(mode) == 'none' else jax.device_count(platform or None)


def process_batch_size(config: ml_collections.ConfigDict) -> int:
  """This process's share of ``config.batch_size`` over the devices that ``config.parallel`` uses.

  Raises:
    ValueError: naming ``--config.batch_size`` if it does not split evenly.
  """
  return distributed.process_batch_size(config.batch_size,
                                        device_count(config.parallel, config.platform))


def make(mode: str, platform: str | None = None) -> DataParallel:
  """Returns the :class:`DataParallel` for ``--config.parallel`` (one of :data:`MODES`).

  Args:
    mode: ``sharded``, ``pmap`` or ``none``.
    platform: the JAX platform whose devices to use, e.g. ``'cpu'``; ``None``
      (or ``''``) is JAX's default backend.
  """
  modes = {'sharded': Sharded, 'pmap': Pmapped, 'none': SingleDevice}
  return modes[check_mode(mode)](platform or None)
