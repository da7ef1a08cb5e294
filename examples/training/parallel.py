"""Parallelism: ``sharded`` and ``fsdp`` (jit over a mesh), ``pmap`` and ``none``.

Each mode places the train state and the batches on devices and compiles the
steps of :mod:`examples.training.steps`. All modes train the same global batch
with the same global BatchNorm statistics, so they give the same result up to
floating-point reassociation.

``sharded`` replicates the state and splits each batch over a ``data`` mesh
axis. ``fsdp`` also splits the parameters and the optimizer state, leaf by
leaf, over an ``fsdp`` axis (each leaf along its largest dimension that the
axis divides; leaves with none stay replicated), and each batch over both
axes; a step gathers the model's variables for the forward and backward
passes, and its gradients come back split. Both meshes take Auto or Explicit axis types
(``--config.mesh_axis_types``).
"""

import abc
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from examples.training import distributed

MODES = ('sharded', 'fsdp', 'pmap', 'none')
AXIS_TYPES = {'auto': AxisType.Auto, 'explicit': AxisType.Explicit}
"""``--config.mesh_axis_types`` -> the mesh's axis type (``sharded`` and ``fsdp``)."""
DATA_AXIS = 'data'
FSDP_AXIS = 'fsdp'
PMAP_AXIS = 'batch'


class DataParallel(abc.ABC):
  """Where the state and batches live and how steps are compiled."""

  data_axis_name: str | None = None
  """The device axis that batch-wide layers (BatchNorm) reduce over; only ``pmap`` has one."""

  gather_variables: Callable | None = None
  """Inside a step, the model's variables as the forward pass needs them; only ``fsdp`` has
  one (each variable whole on every device)."""

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
  """``sharded`` and ``fsdp``: ``jax.jit`` over a ``Mesh``; see the module docstring.

  Works across processes: each process passes its local part of the batch.

  Args:
    platform: the JAX platform whose devices to use; ``None``: the default.
    axis_types: a key of :data:`AXIS_TYPES`.
    fsdp_devices: ``0``: replicate the state over a 1-D ``data`` mesh
      (``sharded``); otherwise the size of the ``fsdp`` axis of a
      ``(data, fsdp)`` mesh (``fsdp``).
  """

  def __init__(self, platform: str | None = None, *, axis_types: str = 'auto',
               fsdp_devices: int = 0):
    devices = jax.devices(platform)
    if fsdp_devices:
      shape, names = (len(devices) // fsdp_devices, fsdp_devices), (DATA_AXIS, FSDP_AXIS)
    else:
      shape, names = (len(devices),), (DATA_AXIS,)
    self.mesh = jax.make_mesh(shape, names, axis_types=(AXIS_TYPES[axis_types],) * len(names),
                              devices=devices)
    self._fsdp_devices = fsdp_devices
    # Explicit axes are part of an array's type and change only by reshard.
    self._constrain = (jax.sharding.reshard if axis_types == 'explicit'
                       else jax.lax.with_sharding_constraint)
    self._replicated = NamedSharding(self.mesh, PartitionSpec())
    self._batch_sharding = NamedSharding(self.mesh, PartitionSpec(names))
    if fsdp_devices:
      self.gather_variables = self._gather

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  def state_sharding(self, shape: tuple[int, ...]) -> NamedSharding:
    """Where a state leaf of ``shape`` lives: split over ``fsdp`` on its largest divisible axis."""
    if not self._fsdp_devices:
      return self._replicated
    divisible = [axis for axis, size in enumerate(shape) if size % self._fsdp_devices == 0]
    if not divisible:
      return self._replicated
    split = max(divisible, key=lambda axis: shape[axis])
    return NamedSharding(self.mesh, PartitionSpec(
        *(FSDP_AXIS if axis == split else None for axis in range(len(shape)))))

  def put_state(self, state):
    def place(x):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, self.state_sharding(x.shape),
                                          lambda index: x[index])

    return jax.tree.map(place, state)

  def get_state(self, state):
    def fetch(x):
      if x.sharding.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(fetch, state)

  def put_batch(self, batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self._batch_sharding, x), batch
    )

  def _placed(self, tree):
    return jax.tree.map(
        lambda x: self._constrain(x, self.state_sharding(x.shape)), tree)

  def compile(self, step, *, donate_argnums):
    # Outputs are placed as put_state places them, so every step compiles once.
    return jax.jit(lambda state, batch: self._placed(step(state, batch)),
                   donate_argnums=donate_argnums)

  def _gather(self, variables):
    return jax.tree.map(lambda x: self._constrain(x, self._replicated), variables)


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
    # The first replica of the first shard: a shard holds one replica, or all of them where
    # a jit outside pmap replicated the stack (JAX 0.7).
    return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data)[0], state)

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


def check_mesh(config: ml_collections.ConfigDict) -> None:
  """Checks ``--config.mesh_axis_types`` and ``--config.fsdp_devices``.

  Raises:
    ValueError: naming the flag.
  """
  if config.mesh_axis_types not in AXIS_TYPES:
    raise ValueError(f'Unknown --config.mesh_axis_types={config.mesh_axis_types!r}; valid '
                     f'values are: {", ".join(AXIS_TYPES)}.')
  if check_mode(config.parallel) != 'fsdp':
    return
  devices = jax.device_count(config.platform or None)
  if not (isinstance(config.fsdp_devices, int) and config.fsdp_devices >= 0
          and devices % _fsdp_size(config.fsdp_devices, config.platform or None) == 0):
    raise ValueError(f'--config.fsdp_devices={config.fsdp_devices!r} must divide the {devices} '
                     'devices (0: each process\'s local devices).')


def _fsdp_size(fsdp_devices: int, platform: str | None) -> int:
  return fsdp_devices or jax.local_device_count(platform)


def device_count(mode: str, platform: str | None = None) -> int:
  """How many devices share each global batch in ``mode`` (see :func:`make`)."""
  return 1 if check_mode(mode) == 'none' else jax.device_count(platform or None)


def describe_devices(config: ml_collections.ConfigDict) -> dict[str, str | int]:
  """The devices a run of ``config`` trains on, as its checkpoints record them.

  The flags alone do not pin them (``platform=''`` is JAX's default, ``sharded``
  all of the platform's devices), and other devices sum in another order.
  """
  device = jax.devices(config.platform or None)[0]
  return {'parallel': config.parallel, 'platform': device.platform,
          'device_kind': device.device_kind,
          'device_count': device_count(config.parallel, config.platform),
          'process_count': jax.process_count()}


def process_batch_size(config: ml_collections.ConfigDict) -> int:
  """This process's share of ``config.batch_size`` over the devices that ``config.parallel`` uses.

  Raises:
    ValueError: naming ``--config.batch_size`` if it does not split evenly.
  """
  return distributed.process_batch_size(config.batch_size,
                                        device_count(config.parallel, config.platform))


def make(mode: str, platform: str | None = None, *, axis_types: str = 'auto',
         fsdp_devices: int = 0) -> DataParallel:
  """Returns the :class:`DataParallel` for ``--config.parallel`` (one of :data:`MODES`).

  Args:
    mode: ``sharded``, ``fsdp``, ``pmap`` or ``none``.
    platform: the JAX platform whose devices to use, e.g. ``'cpu'``; ``None``
      (or ``''``) is JAX's default backend.
    axis_types: ``sharded`` and ``fsdp``: the mesh's axis types, a key of
      :data:`AXIS_TYPES`.
    fsdp_devices: ``fsdp``: the size of the ``fsdp`` mesh axis; 0: each
      process's local devices.
  """
  platform = platform or None
  if check_mode(mode) == 'none':
    return SingleDevice(platform)
  if mode == 'pmap':
    return Pmapped(platform)
  return Sharded(platform, axis_types=axis_types,
                 fsdp_devices=_fsdp_size(fsdp_devices, platform) if mode == 'fsdp' else 0)


def from_config(config: ml_collections.ConfigDict) -> DataParallel:
  """:func:`make` with ``config.parallel``, ``platform``, ``mesh_axis_types`` and ``fsdp_devices``."""
  return make(config.parallel, config.platform, axis_types=config.mesh_axis_types,
              fsdp_devices=config.fsdp_devices)
