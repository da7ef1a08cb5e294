"""Orbax checkpoints with named items, content checksums and a fall-back to intact ones.

A checkpoint holds the items ``model`` and ``optimizer`` (pytrees of host NumPy
arrays, e.g. ``nnx.State.to_pure_dict()``), ``loop`` and ``config`` (JSON), and
``checksums``: a CRC-32 of every array and of both JSON items. Orbax 0.12
checks OCDBT's b-tree nodes but not the array data (zarr3's ``crc32c`` codec
covers the shard index only): a flipped bit in a zstd-compressed data file
restores as wrong values without an error.

Every save is read back and checked against those checksums before older
checkpoints are deleted, so a good checkpoint is never deleted while the newest
one is unverified. Once verified, the size and CRC-32 of each of its files go
into ``file_checksums.json`` in the step directory; a restore checks them first,
so most damage is found before orbax reads a byte. A restore that fails either
check moves that checkpoint aside (into ``<workdir>/corrupt_checkpoints/``),
warns with its path and tries the previous one.

The temporary directory that a killed process's save left behind is deleted by
the next save, synchronously, not by orbax's ``cleanup_tmp_directories``: orbax
cleans in a thread that ``CheckpointManager.close`` does not wait for, so a
checkpointer that only read left it running into the next checkpointer's cleanup
of the same directory (``FileNotFoundError``). A checkpointer that only reads
(``load_model``) deletes no temporary directory: another process may be writing it.

A reader (``read_only=True``: ``load_model``) changes nothing: it creates no
directory, writes no manifest and moves no damaged checkpoint aside; it only
warns and falls back. An ``OSError`` while saving (a full disk, an I/O error, a
read-only directory) raises :class:`~examples.training.errors.WriteError`
naming the checkpoint; the checkpoints saved before it stay.
"""

import json
import logging as logging_std
import os
import shutil
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from examples.training import errors
from examples.training import tree_paths

ARRAY_ITEMS = ('model', 'optimizer')
JSON_ITEMS = ('loop', 'config')
_CHECKSUMS = 'checksums'
_MANIFEST = 'file_checksums.json'


class CheckpointError(Exception):
  """A checkpoint that cannot be restored or does not match its checksums."""


class Restored(NamedTuple):
  """The items of one checkpoint; those not asked for are ``None``."""

  step: int
  path: str
  model: Any
  optimizer: Any
  loop: dict | None
  config: dict | None


def metric_sums_to_json(metric_sums) -> dict[str, list]:
  """An epoch's running metric sums as JSON for the ``loop`` item, dtype kept: resume is exact."""
  return {name: [value.item(), str(value.dtype)] for name, value in metric_sums.items()}


def metric_sums_from_json(saved: dict[str, list]) -> dict[str, np.ndarray]:
  """The inverse of :func:`metric_sums_to_json`."""
  return {name: np.asarray(value, dtype) for name, (value, dtype) in saved.items()}


def _array_checksums(tree) -> dict[str, int]:
  """CRC-32 of each array's dtype, shape and bytes, keyed by its path."""
  sums = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    array = np.ascontiguousarray(leaf)
    header = f'{array.dtype.str}{array.shape}'.encode()
    sums[tree_paths.path_name(path)] = zlib.crc32(array.tobytes(), zlib.crc32(header))
  return sums


def _json_checksum(value) -> int:
  return zlib.crc32(json.dumps(value, sort_keys=True).encode())


def _file_checksums(directory: str) -> dict[str, list[int]]:
  """``[size, CRC-32]`` of every file under ``directory`` but the manifest, by relative path."""
  sums = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      relative = os.path.relpath(path, directory)
      if relative.startswith(_MANIFEST):
        continue
      crc = 0
      with open(path, 'rb') as f:
        while chunk := f.read(1 << 24):
          crc = zlib.crc32(chunk, crc)
      sums[relative] = [os.path.getsize(path), crc]
  return sums


class _QuietOsErrors(logging_std.Filter):
  """Drops orbax's logs of a write that failed on an ``OSError``: the run reports it in one line.

  Orbax logs such a failure, with its traceback, from each of its writing threads, and
  asyncio logs each of its writing tasks whose exception nobody retrieved.
  """

  def filter(self, record: logging_std.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    if record.levelno < logging_std.ERROR or not (
        '/orbax/' in record.pathname or _from_orbax(error)):
      return True
    return errors.os_error_in(error) is None and errors.os_error_in(
        Exception(record.getMessage())) is None


def _from_orbax(error: BaseException | None) -> bool:
  """Whether `error` was raised in orbax or names one of its temporary directories."""
  if error is None:
    return False
  frames = traceback.extract_tb(error.__traceback__)
  return (any('/orbax/' in frame.filename for frame in frames)
          or '.orbax-checkpoint-tmp' in str(error))


logging_std.getLogger('absl').addFilter(_QuietOsErrors())
logging_std.getLogger('asyncio').addFilter(_QuietOsErrors())
_report_unraisable = sys.unraisablehook


def _quiet_closed_loops(unraisable) -> None:
  """Drops TensorStore's calls into the event loop of an orbax write that failed and closed it.

  They come from its threads, dozens at a time, after the failure the run reports in one line.
  """
  error = unraisable.exc_value
  if not (isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'):
    _report_unraisable(unraisable)


sys.unraisablehook = _quiet_closed_loops


def _raise_as_write_error(path: str, error: Exception):
  """Raises ``error`` as a :class:`WriteError` naming ``path`` if an ``OSError`` caused it."""
  os_error = errors.os_error_in(error)
  if os_error is None:
    raise error
  raise errors.WriteError(path, os_error) from error


def _mismatches(expected: dict, actual: dict) -> list[str]:
  return sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))


class Checkpointer:
  """Saves every ``every_steps`` steps into ``<workdir>/checkpoints`` and restores the newest intact one.

  The arrays are host NumPy arrays (one copy, whatever the parallel mode), so a
  run can resume under a different ``--config.parallel`` (with
  ``--config.resume_on_other_devices=True``). Saves run in the
  background; the next save (or :meth:`close`) waits for one, reads it back and
  checks its checksums, and only then deletes checkpoints beyond
  ``max_to_keep``.
  """

  def __init__(self, workdir: str, every_steps: int = 1, max_to_keep: int = 2, *,
               read_only: bool = False):
    if every_steps <= 0:
      raise ValueError(f'--config.checkpoint_every_steps={every_steps} must be positive.')
    self._every_steps = every_steps
    self._max_to_keep = max_to_keep
    self._read_only = read_only
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    self._corrupt_directory = os.path.abspath(os.path.join(workdir, 'corrupt_checkpoints'))
    self._manager = ocp.CheckpointManager(
        self.directory,
        # Deletions are ours: see _verify_and_prune and _remove_unfinished_saves.
        options=ocp.CheckpointManagerOptions(max_to_keep=None, create=not read_only,
                                             cleanup_tmp_directories=False),
    )
    self._unverified: dict | None = None  # The step of the save in flight and its arrays.
    self._unfinished_saves_removed = False
    if not read_only:
      try:
        self._check_writable(self.directory)  # A run stops before it trains, not at its first save.
      except errors.WriteError:
        self._manager.close()
        raise

  def steps(self) -> list[int]:
    """The saved steps, newest first."""
    return sorted(self._manager.all_steps(), reverse=True)

  def step_path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def due(self, step: int) -> bool:
    """Whether the save interval has come round at ``step``."""
    return step % self._every_steps == 0

  def save(self, step: int, *, model: Any, optimizer: Any, loop: dict, config: dict) -> None:
    """Starts saving the items at ``step``; the previous save is verified first.

    Raises:
      WriteError: if this save or the previous one met an ``OSError``.
    """
    self._verify_and_prune()
    if not self._unfinished_saves_removed:
      self._remove_unfinished_saves()
    self._check_writable(self.step_path(step))
    checksums = {'model': _array_checksums(model), 'optimizer': _array_checksums(optimizer),
                 'loop': _json_checksum(loop), 'config': _json_checksum(config)}
    try:
      self._manager.save(
          step,
          args=ocp.args.Composite(
              model=ocp.args.StandardSave(model), optimizer=ocp.args.StandardSave(optimizer),
              loop=ocp.args.JsonSave(loop), config=ocp.args.JsonSave(config),
              checksums=ocp.args.JsonSave(checksums),
          ),
          force=True,
      )
    except Exception as error:  # noqa: BLE001 (re-raised; only OSError's cause is renamed)
      _raise_as_write_error(self.step_path(step), error)
    self._unverified = {'step': step, 'model': model, 'optimizer': optimizer}

  def _check_writable(self, name: str) -> None:
    """Raises :class:`WriteError` naming ``name`` if no file can be created in :attr:`directory`.

    Orbax would find out in its background save, whose threads then wait minutes, holding
    the process open at exit, for a directory that was never created.
    """
    if jax.process_index() == 0:
      try:
        with tempfile.TemporaryFile(dir=self.directory):
          pass
      except OSError as error:
        raise errors.WriteError(name, error) from error

  def _remove_unfinished_saves(self) -> None:
    """Deletes the temporary directories that saves of a killed process left in ``directory``.

    Orbax's save starts with a barrier of all processes, so none writes before
    the primary process has finished deleting.
    """
    if jax.process_index() == 0:
      for unfinished in ocp.utils.tmp_checkpoints(self.directory):
        logging.info('Removing %s, left by a save that did not finish.', unfinished.get())
        try:
          unfinished.get().rmtree()
        except OSError as error:
          raise errors.WriteError(str(unfinished.get()), error) from error
    self._unfinished_saves_removed = True

  def _verify_and_prune(self) -> None:
    """Waits for the save in flight, reads it back, then deletes checkpoints beyond ``max_to_keep``."""
    pending, self._unverified = self._unverified, None
    try:
      self._manager.wait_until_finished()
    except Exception as error:  # noqa: BLE001 (re-raised; only OSError's cause is renamed)
      _raise_as_write_error(self.step_path(pending['step']) if pending else self.directory, error)
    if pending is None:
      return
    try:
      self.restore(pending['step'], model_like=pending['model'],
                   optimizer_like=pending['optimizer'])
    except CheckpointError as error:
      self._set_aside(pending['step'], error, 'keeping the older checkpoints')
      return  # Keep every older checkpoint.
    self._write_manifest(pending['step'])
    for step in self.steps()[self._max_to_keep:]:
      self._manager.delete(step)

  def _restore_items(self, step: int, items: dict, checksums: dict | None = None) -> dict:
    """Restores ``items`` (orbax restore args by name) of ``step`` and checks them.

    Raises:
      CheckpointError: naming the checkpoint's path.
    """
    path = self.step_path(step)
    try:
      restored = dict(self._manager.restore(step, args=ocp.args.Composite(**items)).items())
      checksums = restored.get(_CHECKSUMS, checksums)
      bad = [name for name in JSON_ITEMS
             if name in items and checksums[name] != _json_checksum(restored[name])]
      for name in ARRAY_ITEMS:
        if name in items:
          bad += [f'{name}/{leaf}' for leaf in
                  _mismatches(checksums[name], _array_checksums(restored[name]))]
    except Exception as error:  # Orbax, TensorStore and JSON raise many kinds.
      reason = ' '.join(str(error).split(' [tensorstore_spec')[0].split())[:500]
      raise CheckpointError(f'{path} cannot be restored: {type(error).__name__}: {reason}') from error
    if bad:
      more = f' and {len(bad) - 5} more' if len(bad) > 5 else ''
      raise CheckpointError(f'{path} does not match its checksums in {", ".join(bad[:5])}{more}')
    restored[_CHECKSUMS] = checksums
    return restored

  def restore(self, step: int, *, model_like: Any = None, optimizer_like: Any = None,
              optimizer: bool = True, check: Callable[[Restored], None] | None = None) -> Restored:
    """Restores and verifies the checkpoint of ``step``.

    Args:
      step: a saved step, e.g. from :meth:`steps`.
      model_like: a pytree of NumPy arrays shaped like the saved model;
        ``None`` restores the arrays as saved.
      optimizer_like: the same for the optimizer.
      optimizer: whether to restore the optimizer item at all.
      check: called with the ``loop`` and ``config`` items (arrays ``None``)
        before the arrays are read, e.g. to refuse another run's checkpoint;
        what it raises propagates.

    Raises:
      CheckpointError: naming the checkpoint's path, if it cannot be read or an
        item does not match its checksum.
    """
    manifest_written = self._check_manifest(step)
    json_items = self._restore_items(step, {
        'loop': ocp.args.JsonRestore(), 'config': ocp.args.JsonRestore(),
        _CHECKSUMS: ocp.args.JsonRestore()})
    restored = Restored(step, self.step_path(step), None, None, json_items['loop'],
                        json_items['config'])
    if check is not None:
      check(restored)
    items = {'model': ocp.args.StandardRestore(model_like)}
    if optimizer:
      items['optimizer'] = ocp.args.StandardRestore(optimizer_like)
    arrays = self._restore_items(step, items, json_items[_CHECKSUMS])
    if optimizer and not manifest_written:
      self._write_manifest(step)  # Every item is verified now.
    return restored._replace(model=arrays['model'], optimizer=arrays.get('optimizer'))

  def _write_manifest(self, step: int) -> None:
    if jax.process_index() == 0 and not self._read_only:
      sums = _file_checksums(self.step_path(step))
      path = os.path.join(self.step_path(step), _MANIFEST)
      try:
        with open(path + '.tmp', 'w') as f:
          json.dump(sums, f)
        os.replace(path + '.tmp', path)
      except OSError as error:
        raise errors.WriteError(path, error) from error

  def _check_manifest(self, step: int) -> bool:
    """Compares the files of ``step`` with its manifest; ``False`` if it has none yet.

    Raises:
      CheckpointError: naming the first file that is missing or differs.
    """
    directory = self.step_path(step)
    path = os.path.join(directory, _MANIFEST)
    if not os.path.exists(path):
      return False
    try:
      with open(path) as f:
        expected = json.load(f)
    except (OSError, ValueError) as error:
      raise CheckpointError(f'{path} cannot be read: {error}') from error
    actual = _file_checksums(directory)
    for relative, (size, crc) in expected.items():
      if relative not in actual:
        raise CheckpointError(f'{os.path.join(directory, relative)} is missing')
      if actual[relative] != [size, crc]:
        got = actual[relative][0]
        change = f'{size} bytes written, {got} now' if got != size else 'its CRC-32 differs'
        raise CheckpointError(f'{os.path.join(directory, relative)} is damaged ({change})')
    return True

  def restore_latest(self, **restore_kwargs) -> Restored | None:
    """The newest checkpoint that restores and verifies (see :meth:`restore`); ``None`` if none.

    Each one that fails is moved aside with a warning that names it.
    """
    for step in self.steps():
      try:
        return self.restore(step, **restore_kwargs)
      except CheckpointError as error:
        self._set_aside(step, error, 'falling back to the previous checkpoint')
    return None

  def _set_aside(self, step: int, error: CheckpointError, action: str) -> None:
    """Moves a bad checkpoint out of the way, so the run falls back to, and later saves over, it.

    A reader only warns: it changes nothing in a directory that a run may be using.
    """
    if self._read_only:
      logging.warning('%s; %s.', error, action)
      return
    target = os.path.join(self._corrupt_directory, f'{step}-{time.strftime("%Y%m%d-%H%M%S")}')
    if jax.process_index() == 0:
      os.makedirs(self._corrupt_directory, exist_ok=True)
      shutil.move(self.step_path(step), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'checkpoint {step} set aside')
    self._manager.reload()
    logging.warning('%s; moved %s to %s, %s.', error, self.step_path(step), target, action)

  def close(self) -> None:
    """Finishes and verifies a save in flight, then releases the manager."""
    try:
      self._verify_and_prune()
    finally:
      self._manager.close()
