"""One run or a sweep of any example: the study's optimizer, names, report and checks."""

import os
from typing import Any
from typing import NamedTuple

import jax
import ml_collections
from flax import nnx

from examples.study import defaults as study_defaults
from examples.study import gradient_statistics
from examples.study import methods
from examples.study import report
from examples.study import sweep
from examples.study.example import Data
from examples.study.example import Example
from examples.training import datasets
from examples.training import defaults as training_defaults
from examples.training import fields
from examples.training import loop
from examples.training import resume
from examples.training import validation

RESUMABLE_KEYS = ('sweep', 'compilation_cache')
"""The study's fields that a resumed run may change, besides the core's and the example's."""


def is_sweep(config: ml_collections.ConfigDict) -> bool:
  """Whether ``config.sweep`` lists models, methods or seeds."""
  return any((config.sweep.models, config.sweep.methods, config.sweep.seeds))


def validate_config(example: Example, config: ml_collections.ConfigDict) -> None:
  """Checks every field: the study's, the example's and the training core's.

  Each field against its declaration comes first, so the checks after it may read the
  fields as the values they declare.

  Raises:
    ValueError: naming the first bad flag and what it accepts.
  """
  fields.check(config, {**training_defaults.FIELDS, **study_defaults.FIELDS, **example.fields})
  methods.check_methods(config)
  datasets.check_dataset(config.dataset, example.datasets)
  fields.check_names('--config.sweep.models' if config.sweep.models else '--config.model',
                     sweep.grid(config)[0], example.check_model, 'model')
  if example.validate_config is not None:
    example.validate_config(config)
  validation.validate(config)


def train_and_evaluate(example: Example, config: ml_collections.ConfigDict, workdir: str,
                       data: Data | None = None) -> list[dict[str, Any]]:
  """Checks ``config``, then trains ``config.model`` with ``config.method`` and ``config.seed``.

  One run of any example, called from Python; ``python -m examples.main`` runs the same.

  Args:
    example: the example's record, e.g.
      ``examples.image_classification.example.EXAMPLE``.
    config: the run's config (see the example's ``configs/default.py``).
    workdir: receives ``metrics.jsonl``, the event files, ``checkpoints/`` and
      whatever ``example.score`` writes.
    data: ``example.load_data(config)``, if the caller has it already.

  Returns:
    The per-epoch records of :func:`examples.training.loop.fit`, as in
    ``metrics.jsonl``; the last one also holds what ``example.score`` measured.

  Raises:
    ValueError: naming the first bad flag, before anything is loaded or written.
  """
  validate_config(example, config)
  return _train_checked(example, config, workdir, data)


def _train_checked(example: Example, config: ml_collections.ConfigDict, workdir: str,
                   data: Data | None = None) -> list[dict[str, Any]]:
  """:func:`train_and_evaluate` of a config already checked (a sweep checks it once)."""
  data = example.load_data(config) if data is None else data
  source = data.make_source(config)
  task = example.make_task(config, data)
  learning_rate = example.learning_rate(config, source.steps_per_epoch)
  resumable_keys = (*RESUMABLE_KEYS, *example.resumable_keys(config))
  abstract_model = nnx.eval_shape(lambda: task.create_model(nnx.Rngs(config.seed), None))
  stacked_axes = None
  if example.stacked_axes is not None:
    stacked_axes = example.stacked_axes(abstract_model)
  transform = methods.gradient_transform(config.method, stacked_axes,
                                        methods.embedding_rows(abstract_model))
  history = loop.fit(config, workdir, task, source,
                     methods.make_optimizer_from(config.method, learning_rate, transform),
                     resumable_keys=resumable_keys,
                     gradient_statistics=gradient_statistics.for_run(
                         config, abstract_model, transform, stacked_axes),
                     name=f'{config.model} {config.method} seed {config.seed}')
  if example.score is not None:
    model = resume.load_model(config, workdir, task, resumable_keys=resumable_keys)
    history[-1].update(example.score(config, workdir, model, data))
  return history


class Sweep(NamedTuple):
  """What :func:`run_sweep` returns."""

  results: list[sweep.RunResult]
  table: str
  """The markdown table (``table.md``); empty on processes other than 0."""
  curves: str
  """The path of ``curves.png``; empty on processes other than 0."""


def run_sweep(example: Example, config: ml_collections.ConfigDict, workdir: str) -> Sweep:
  """Runs ``config.sweep`` (see :func:`examples.study.sweep.grid`) and writes its report.

  Process 0 writes ``table.md``, ``curves.png`` and the example's figures into ``workdir``.
  """
  data = example.load_data(config)
  results = sweep.run_sweep(
      lambda one, run_dir: _train_checked(example, one, run_dir, data), config, workdir)
  if jax.process_index() != 0:
    return Sweep(results, '', '')
  table, curves = report.write_report(
      results, workdir, dataset=config.get('dataset', config.example),
      table_columns=example.table_columns, curves=example.curves)
  if example.write_figures is not None:
    example.write_figures(config, workdir, results, data)
  return Sweep(results, table, curves)


def run(example: Example, config: ml_collections.ConfigDict, workdir: str) -> None:
  """The shared entry point: one run, or a sweep and its report, of ``example``."""
  validate_config(example, config)
  validation.prepare_workdir(workdir)  # The first write; the flags are valid.
  if config.compilation_cache:
    # Sweep runs of one method compile identical steps; later runs load them from disk.
    jax.config.update('jax_compilation_cache_dir', os.path.join(workdir, 'jax_cache'))
  if not is_sweep(config):
    history = _train_checked(example, config, workdir)
    if jax.process_index() == 0:
      print(f'Final: {loop.summary(history[-1])}')
      print(f'Metrics (metrics.jsonl, TensorBoard) and checkpoints in {workdir}')
    return
  table = run_sweep(example, config, workdir).table
  if jax.process_index() == 0:
    print(table)
    print(f'Report (table.md, differences.md with Welch\'s t, curves.png and the example\'s '
          f'figures) in {workdir}')
