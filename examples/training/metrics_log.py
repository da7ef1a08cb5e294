"""Records as JSON lines, written by process 0 only: ``metrics.jsonl`` and the like.

A kill can cut the last record short. :func:`read` drops such a record with a
warning, and a resumed run rewrites the file without it (atomically, so a kill
during the rewrite leaves the old file or the new one).
"""

import json
import os

import jax
from absl import logging

from examples.training import errors


class JsonLinesLog:
  """Appends one JSON object per line to ``path``.

  Raises:
    WriteError: from :meth:`rewrite` and :meth:`write`, naming ``path``, on an
      ``OSError`` (a full disk, an I/O error).
  """

  def __init__(self, path: str):
    self.path = path
    self._enabled = jax.process_index() == 0

  def rewrite(self, records: list[dict]) -> None:
    """Replaces the file's records, e.g. with the history a resumed run restored."""
    if self._enabled:
      try:
        with open(self.path + '.tmp', 'w') as f:
          f.writelines(json.dumps(record) + '\n' for record in records)
        os.replace(self.path + '.tmp', self.path)
      except OSError as error:
        raise errors.WriteError(self.path, error) from error

  def write(self, record: dict) -> None:
    if self._enabled:
      try:
        with open(self.path, 'a') as f:
          f.write(json.dumps(record) + '\n')
      except OSError as error:
        raise errors.WriteError(self.path, error) from error


class MetricsLog(JsonLinesLog):
  """``<workdir>/metrics.jsonl``: one record per epoch."""

  def __init__(self, workdir: str):
    super().__init__(os.path.join(workdir, 'metrics.jsonl'))

  def start(self, history: list[dict]) -> None:
    """Replaces the records with ``history``: a checkpoint's, or none for a new run.

    The checkpoint holds every record up to its step, so a file that cannot be read (not
    UTF-8, not JSON, not readable) loses nothing: it is replaced with a warning naming it.
    """
    if self._enabled and os.path.exists(self.path):
      try:
        read(self.path)  # Warns of a record cut short.
      except ValueError as error:
        logging.warning("%s; replaced by the checkpoint's history.", error)
    self.rewrite(history)


def read(path: str) -> list[dict]:
  """Reads the records of a JSON-lines file such as ``metrics.jsonl``.

  A last line that a kill cut short (no newline after it) is dropped with a warning.

  Raises:
    ValueError: naming the file (and line): for a record before the last one that is not a
      JSON object, for bytes that are not UTF-8, and for a file that cannot be read (a
      directory, no permission).
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as error:
    raise ValueError(f'{path} cannot be read: [Errno {error.errno}] {error.strerror}') from error
  lines = data.split(b'\n')
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line.decode())
    except UnicodeDecodeError as error:
      raise ValueError(f'{path}, line {number}, is not UTF-8 text: {error.reason} at byte '
                       f'{error.start} of the line') from error
    except ValueError as error:
      if number < len(lines):  # Followed by a newline: not cut short by a kill.
        raise ValueError(f'{path}, line {number}, is not a JSON record: {error}') from error
      logging.warning('%s: dropped line %d, a record cut short (by a kill?).', path, number)
      continue
    if not isinstance(record, dict):  # A ValueError, as for any line that is not a record.
      raise ValueError(f'{path}, line {number}, is not a JSON record: {line.decode()[:80]}')  # noqa: TRY004
    records.append(record)
  return records
