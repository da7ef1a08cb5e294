"""Reading a run back from its checkpoints: which settings may change on resume, and the model."""

import json
from collections.abc import Iterable
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from examples.training import checkpointing
from examples.training.task import Task

RESUMABLE_KEYS = (
    'num_epochs', 'resume', 'log_every_steps', 'checkpoint_every_steps', 'progress_bar',
    'on_nonfinite', 'max_nonfinite_steps', 'log_gradient_statistics',
    'coordinator_address', 'process_id',  # They choose no device: the same devices, the same sums.
    # They train nothing; checkpoints written before them have none.
    'fixed_on_resume', 'resume_on_other_devices',
)
"""Config fields a resumed run may change and still end bit for bit where an uninterrupted run
ends; every other field must equal the checkpoint's."""

DEVICE_KEYS = ('parallel', 'mesh_axis_types', 'fsdp_devices', 'platform', 'num_processes')
"""Config fields that choose the devices and how a step is split over them. Another choice sums
in another order, so a resumed run may change them only with
``--config.resume_on_other_devices=True``, and then differs from an uninterrupted run by
rounding, which training can grow."""


def config_to_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as the JSON a checkpoint stores (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def check_same_run(saved_config: dict, config: ml_collections.ConfigDict, checkpoint: str,
                   resumable_keys: Iterable[str] = ()) -> None:
  """Refuses to resume ``checkpoint`` if its run had other settings than ``config``.

  Args:
    saved_config: the ``config`` item of the checkpoint.
    config: this run's config.
    checkpoint: the checkpoint's path, for the message.
    resumable_keys: fields besides :data:`RESUMABLE_KEYS` that may differ
      (a field also covers its sub-fields, e.g. ``sweep``); :data:`DEVICE_KEYS` join
      them with ``config.resume_on_other_devices``, and ``config.fixed_on_resume``
      takes fields back out of all.

  Raises:
    ValueError: listing every differing field with both values.
  """
  may_change = set(RESUMABLE_KEYS) | set(resumable_keys)
  if config.get('resume_on_other_devices', False):
    may_change |= set(DEVICE_KEYS)
  may_change -= set(config.get('fixed_on_resume', ()))
  before, now = _flatten(saved_config), _flatten(config_to_json(config))
  missing = '<unset>'
  differing = [
      key for key in sorted(before.keys() | now.keys())
      if not any(key == k or key.startswith(k + '.') for k in may_change)
      and before.get(key, missing) != now.get(key, missing)
  ]
  if differing:
    changes = '; '.join(f'{key}: {before.get(key, missing)!r} there, {now.get(key, missing)!r} now'
                        for key in differing)
    devices = [key for key in differing if key in DEVICE_KEYS]
    other_devices = (
        f' {", ".join(devices)} may change with --config.resume_on_other_devices=True; the run '
        'then sums in another order and does not end bit for bit where an uninterrupted one does.'
        if devices else '')
    raise ValueError(
        f'--config.resume=True, but the checkpoint {checkpoint} is of a run with other settings '
        f'({changes}). Pass the checkpoint\'s values, or choose a new --workdir; only '
        f'{", ".join(sorted(may_change))} may change on resume.{other_devices}'
    )


def check_same_devices(saved: dict | None, devices: dict, config: ml_collections.ConfigDict,
                       checkpoint: str) -> None:
  """Refuses to resume ``checkpoint`` on other devices than it was trained on.

  Args:
    saved: the devices the ``loop`` item records; ``None`` in checkpoints
      written before it did, which are taken to match.
    devices: this run's, from :func:`examples.training.parallel.describe_devices`.
    config: this run's config; ``resume_on_other_devices`` allows other devices.
    checkpoint: the checkpoint's path, for the message.

  Raises:
    ValueError: listing every difference with both values.
  """
  if saved is None or config.get('resume_on_other_devices', False):
    return
  differing = [key for key in sorted(saved.keys() | devices.keys())
               if saved.get(key) != devices.get(key)]
  if differing:
    changes = '; '.join(f'{key}: {saved.get(key)!r} there, {devices.get(key)!r} now'
                        for key in differing)
    raise ValueError(
        f'--config.resume=True, but the checkpoint {checkpoint} was trained on other devices '
        f'({changes}). Resume on its devices, or pass --config.resume_on_other_devices=True: the '
        'run then sums in another order and does not end bit for bit where an uninterrupted one '
        'does.')


def load_model(config: ml_collections.ConfigDict, workdir: str, task: Task,
               *, resumable_keys: Iterable[str] = ()) -> nnx.Module:
  """The trained model of the newest intact checkpoint that ``loop.fit`` wrote into ``workdir``.

  Only the model is read: no optimizer is built and no optimizer state loaded.

  Args:
    config: the run's config; it must match the checkpoint's as for a resume, but for
      :data:`DEVICE_KEYS`: a model may be read on any devices.
    workdir: the run's work directory.
    task: builds the model's structure.
    resumable_keys: as for ``loop.fit``.

  Raises:
    FileNotFoundError: if ``workdir`` holds no intact checkpoint.
    ValueError: if the checkpoint is of a run with other settings.
  """
  abstract = nnx.eval_shape(lambda: task.create_model(nnx.Rngs(config.seed), None))
  graphdef, state = nnx.split(abstract)
  like = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), nnx.to_pure_dict(state))
  checkpointer = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    restored = checkpointer.restore_latest(
        model_like=like, optimizer=False,
        check=lambda r: check_same_run(r.config, config, r.path, (*resumable_keys, *DEVICE_KEYS)))
  finally:
    checkpointer.close()
  if restored is None:
    raise FileNotFoundError(f'No intact checkpoint in {checkpointer.directory}.')
  nnx.replace_by_pure_dict(state, restored.model)
  return nnx.merge(graphdef, state)
