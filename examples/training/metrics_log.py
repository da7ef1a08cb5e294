"""Per-epoch metrics as JSON lines (written by process 0 only)."""

import json
import os

import jax


class MetricsLog:
  """Appends one JSON object per line to ``<workdir>/metrics.jsonl``."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._enabled = jax.process_index() == 0

  def rewrite(self, records: list[dict]) -> None:
    """Replaces the file's records, e.g. with the history a resumed run restored."""
    if self._enabled:
      with open(self.path, 'w') as f:
        f.writelines(json.dumps(record) + '\n' for record in records)

  def write(self, record: dict) -> None:
    if self._enabled:
      with open(self.path, 'a') as f:
        f.write(json.dumps(record) + '\n')


def read(path: str) -> list[dict]:
  """Reads the records of a ``metrics.jsonl`` file."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
