"""Records as JSON lines, written by process 0 only: ``metrics.jsonl`` and the like."""

import json
import os

import jax


class JsonLinesLog:
  """Appends one JSON object per line to ``path``."""

  def __init__(self, path: str):
    self.path = path
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


class MetricsLog(JsonLinesLog):
  """``<workdir>/metrics.jsonl``: one record per epoch."""

  def __init__(self, workdir: str):
    super().__init__(os.path.join(workdir, 'metrics.jsonl'))


def read(path: str) -> list[dict]:
  """Reads the records of a JSON-lines file such as ``metrics.jsonl``."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
