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
import ml_collections

from examples.training import workdir_lock

History = list[dict[str, Any]]
RunFn = Callable[[ml_collections.ConfigDict, str], History]
"""``(run_config, run_workdir) -> history`` of one training run."""


@dataclasses.dataclass
class RunResult:
  model: str
  method: str
  seed: int
  history: History


def grid(config: ml_collections.ConfigDict) -> tuple[Sequence[str], Sequence[str], Sequence[int]]:
  """The models, methods and seeds of ``config.sweep``; an empty list means the run's own."""
  return (config.sweep.models or (config.model,), config.sweep.methods or (config.method,),
          config.sweep.seeds or (config.seed,))


def run_config(config: ml_collections.ConfigDict, model: str, method: str,
               seed: int) -> ml_collections.ConfigDict:
  """A copy of the sweep's ``config`` for one run: ``model``, ``method`` and ``seed`` set."""
  one = config.copy_and_resolve_references()
  one.update(model=model, method=method, seed=seed)
  return one


def run_directory(workdir: str, model: str, method: str, seed: int) -> str:
  """The work directory of one run of the sweep in ``workdir``."""
  return os.path.join(workdir, 'runs', model, method, f'seed_{seed}')


def run_sweep(run_one: RunFn, config: ml_collections.ConfigDict, workdir: str) -> list[RunResult]:
  """Runs every (model, method, seed) of :func:`grid` and saves the results as JSON and CSV.

  With ``--config.resume=True``, a run whose work directory holds a finished
  run returns its history without training again, and an interrupted run
  continues from its last checkpoint: a stopped sweep picks up where it was.

  Args:
    run_one: trains one run's config in the given work directory.
    config: the sweep's config; see :func:`grid`.
    workdir: where the results and the runs' work directories go.

  Returns:
    The results in model, method, seed order.
  """
  models, methods, seeds = grid(config)
  if not (models and methods and seeds):
    raise ValueError('A sweep needs at least one model, one method and one seed.')
  results = []
  os.makedirs(workdir, exist_ok=True)
  with workdir_lock.WorkdirLock(workdir):  # One sweep per directory; each run locks its own.
    for model, method, seed in itertools.product(models, methods, seeds):
      history = run_one(run_config(config, model, method, seed),
                        run_directory(workdir, model, method, seed))
      results.append(RunResult(model, method, seed, history))
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
