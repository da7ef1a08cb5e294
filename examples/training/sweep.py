"""Runs models x methods x seeds and writes every run's per-epoch history.

Outputs in the sweep's work directory:

* ``results.json``: ``[{"model", "method", "seed", "history": [...]}, ...]``;
* ``results.csv``: one row per run and epoch;
* ``runs/<model>/<method>/seed_<seed>/``: each run's own work directory
  (``metrics.jsonl``, checkpoints), so an interrupted sweep can resume.
"""

import csv
import dataclasses
import itertools
import json
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax

from examples.training import methods as methods_lib

History = list[dict[str, Any]]
RunFn = Callable[[str, str, int, str], History]
"""``(model, method, seed, run_workdir) -> history`` of one training run."""


@dataclasses.dataclass
class RunResult:
  model: str
  method: str
  seed: int
  history: History


def run_sweep(
    run_one: RunFn,
    *,
    models: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    workdir: str,
) -> list[RunResult]:
  """Runs every (model, method, seed) and saves the results as JSON and CSV.

  Args:
    run_one: trains one configuration in the given work directory.
    models: model names, passed through to ``run_one``.
    methods: names from :data:`examples.training.methods.METHODS`; checked
      before anything runs.
    seeds: random seeds.
    workdir: where the results and the runs' work directories go.

  Returns:
    The results in model, method, seed order.
  """
  for method in methods:
    methods_lib.check_method(method)
  if not (models and methods and seeds):
    raise ValueError('A sweep needs at least one model, one method and one seed.')
  results = []
  for model, method, seed in itertools.product(models, methods, seeds):
    run_dir = os.path.join(workdir, 'runs', model, method, f'seed_{seed}')
    results.append(RunResult(model, method, seed, run_one(model, method, seed, run_dir)))
  if jax.process_index() == 0:
    save_results(results, workdir)
  return results


def save_results(results: Sequence[RunResult], workdir: str) -> None:
  """Writes ``results.json`` and ``results.csv`` into ``workdir``."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump([dataclasses.asdict(r) for r in results], f, indent=1)
  rows = [
      {'model': r.model, 'method': r.method, 'seed': r.seed, **record}
      for r in results
      for record in r.history
  ]
  columns = list(dict.fromkeys(key for row in rows for key in row))
  with open(os.path.join(workdir, 'results.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)


def load_results(workdir: str) -> list[RunResult]:
  """Reads the ``results.json`` that :func:`run_sweep` wrote."""
  with open(os.path.join(workdir, 'results.json')) as f:
    return [RunResult(**r) for r in json.load(f)]
