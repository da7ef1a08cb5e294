"""Which statistics path each leaf takes, on each platform.

Three paths compute the same eq. 1:

* per leaf (:mod:`znorm_optax._moments`): every leaf reduced on its own, two
  reads of it. Every option and input, including rescaling for tiny ``eps``;
  the CPU default, where its reductions are the cheapest.
* grouped (:mod:`znorm_optax._grouped`): many leaves reduced together (all of
  them packed on GPUs, those of one shape on TPUs), two reads of each; a few
  reductions per step instead of two per leaf. The GPU and TPU default.
* Pallas (:mod:`znorm_optax._pallas`): Triton kernels that read each leaf once,
  on GPUs only, opt-in.

The factories' ``kernels`` option, else ``$ZNORM_OPTAX_KERNELS``, else
``'auto'``, picks the paths per platform (:data:`PLATFORM_PATHS`). The platform
is the one the step is lowered for (``lax.platform_dependent``), so an
ahead-of-time lowering for a TPU on a CPU host takes the TPU's path, with one
exception: ``'auto'`` traces only the path of the default device's platform
(every branch of ``lax.platform_dependent`` is traced, at a cost on every
compile), and every path lowers for every platform. Deviceless compilation sets
``jax.default_device`` to a device of its target, as JAX's recipe for it does.
"""

import collections
import functools
import os
from collections.abc import Sequence
from typing import Any

import jax

from znorm_optax import _grouped
from znorm_optax import _leaves
from znorm_optax import _moments
from znorm_optax import _pallas

KERNELS_ENV = 'ZNORM_OPTAX_KERNELS'
DEFAULT = 'auto'
PLATFORM_PATHS = {
    'auto': {'cpu': 'per_leaf', 'cuda': 'packed', 'rocm': 'packed', 'tpu': 'variadic',
             'default': 'per_leaf'},
    'xla': {'default': 'per_leaf'},
    'grouped': {'tpu': 'variadic', 'default': 'packed'},
    'pallas': {'cuda': 'pallas', 'rocm': 'pallas', 'default': 'pallas_interpreted'},
}
"""For each choice, the path on each platform: 'packed' and 'variadic' are the
grouped path's two layouts; 'pallas_interpreted' runs the kernels in interpret
mode (for tests)."""
CHOICES = tuple(PLATFORM_PATHS)


def check_choice(kernels: str | None, caller: str) -> None:
  """Rejects a `kernels` option that is not None or one of :data:`CHOICES`."""
  if kernels is not None and kernels not in CHOICES:
    raise ValueError(f'{caller}: kernels must be one of {", ".join(CHOICES)} (or None for '
                     f'${KERNELS_ENV}, else {DEFAULT!r}), got {kernels!r}.')


def selected(kernels: str | None = None) -> str:
  """The choice: `kernels` if given, else ``$ZNORM_OPTAX_KERNELS``, else :data:`DEFAULT`."""
  if kernels is not None:
    return kernels
  choice = os.environ.get(KERNELS_ENV, DEFAULT)
  if choice not in CHOICES:
    raise ValueError(f'{KERNELS_ENV} must be one of {", ".join(CHOICES)}, got {choice!r}.')
  return choice


def standardized_on_paths(
    leaves: Sequence[jax.Array],
    axes: Sequence[tuple[int, ...]],
    eps: Any,
    *,
    axis_name: _leaves.AxisName,
    kernels: str | None,
) -> list[jax.Array]:
  """Eq. 1 of each leaf over its `axes`, in its accumulation dtype, each on its path.

  The platform's path comes from `kernels` (:data:`PLATFORM_PATHS`), each leaf's
  from :func:`leaf_path`.
  """
  if not leaves:
    return []
  choice = selected(kernels)
  paths = dict(PLATFORM_PATHS[choice])
  default_path = paths.get(_default_platform()) if choice == 'auto' else None
  if default_path is not None:
    # Under jit every branch is traced, so each compile would trace every platform's path;
    # a step is lowered for the default device's platform, and every path lowers anywhere.
    # Deviceless compilation for an accelerator sets jax.default_device to one of its devices.
    paths = {'default': default_path}
  for platform in ('cuda', 'rocm'):
    if paths.get(platform) == 'pallas' and not _pallas.lowers_for(platform):
      paths[platform] = 'packed'
  # Decided here, where a Python eps is still concrete; branches get it by closure.
  rescale = _moments.tiny_stds_matter(eps)
  # One function per path, so that platforms on the same path share a branch.
  on_path = {path: functools.partial(_on_path, path, tuple(map(tuple, axes)), axis_name, eps,
                                     rescale) for path in set(paths.values())}
  branches = {platform: on_path[path] for platform, path in paths.items()}
  if len(branches) == 1:
    return branches['default'](list(leaves))
  return jax.lax.platform_dependent(list(leaves), **branches)


def _default_platform() -> str:
  """The platform of ``jax.default_device`` where it is set, else of the default backend.

  'gpu' is named as CUDA, whose path ROCm shares.
  """
  device = jax.config.jax_default_device
  if device is None:
    platform = jax.default_backend()
  else:
    platform = device if isinstance(device, str) else device.platform
  return 'cuda' if platform == 'gpu' else platform


def leaf_path(preferred: str, leaf: jax.Array, axes: tuple[int, ...], axis_name: Any, *,
              rescale: bool) -> str:
  """The path that takes `leaf`'s statistics where the platform's path is `preferred`.

  `preferred` is a value of :data:`PLATFORM_PATHS`; a leaf that path does not
  take goes per leaf, the path that takes every leaf and option.
  """
  if preferred in _grouped.LAYOUTS:
    taken = not rescale and _grouped.supports(leaf, preferred)
  elif preferred.startswith('pallas'):
    taken = _pallas.supports(leaf, axes, axis_name)
  else:
    taken = False
  return preferred if taken else 'per_leaf'


def _on_path(preferred, axes, axis_name, eps, rescale, leaves):
  """Eq. 1 of each leaf, on the path :func:`leaf_path` gives it."""
  by_path = collections.defaultdict(list)
  for i, (leaf, leaf_axes) in enumerate(zip(leaves, axes)):
    by_path[leaf_path(preferred, leaf, leaf_axes, axis_name, rescale=rescale)].append(i)
  outputs = [None] * len(leaves)
  for path, indices in by_path.items():
    chosen = [leaves[i] for i in indices]
    chosen_axes = [axes[i] for i in indices]
    if path == 'per_leaf':
      results = _moments.standardized_per_leaf(chosen, chosen_axes, eps, rescale=rescale,
                                               axis_name=axis_name)
    elif path in _grouped.LAYOUTS:
      results = _grouped.standardized_grouped(chosen, chosen_axes, eps, layout=path,
                                              axis_name=axis_name)
    else:
      results = _pallas.standardized_by_kernels(chosen, chosen_axes, eps,
                                                interpret=path == 'pallas_interpreted')
    for i, result in zip(indices, results):
      outputs[i] = result
  return outputs
