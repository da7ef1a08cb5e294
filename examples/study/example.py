"""The one record an example gives the study: its checks, data, task and report."""

import dataclasses
from collections.abc import Callable
from collections.abc import Sequence
from typing import Protocol

import ml_collections
from flax import nnx

from examples.study import methods
from examples.study.report import Column
from examples.study.sweep import RunResult
from examples.training.task import DataSource
from examples.training.task import Task

Config = ml_collections.ConfigDict


class Data(Protocol):
  """What an example's ``input_pipeline.load(config)`` returns; a sweep loads it once."""

  def make_source(self, config: Config) -> DataSource:
    """One run's batches: ``config.batch_size`` over all processes, shuffled with ``config.seed``."""


def _constant_learning_rate(config: Config, steps_per_epoch: int) -> methods.LearningRate:
  del steps_per_epoch
  return config.learning_rate


def _nothing_may_change(config: Config) -> Sequence[str]:
  del config
  return ()


@dataclasses.dataclass(frozen=True)
class Example:
  """An example, as :func:`examples.study.experiment.run` trains it.

  Attributes:
    validate_config: checks the example's own fields (dataset, every model of
      the sweep, ...) before anything is loaded or written; raises
      ``ValueError`` naming the flag. The core's and the study's fields are
      checked by the study.
    load_data: ``input_pipeline.load``: ``config -> Data``. It may not depend
      on the model, method or seed: a sweep loads once and shares it.
    make_task: ``(config, data) -> Task``: the model ``config.model`` and its
      loss and metrics.
    table_columns: the report table's columns after model and method: ``(key
      of the last epoch's record, label, decimals)``.
    curves: the per-epoch curves of the report, in the same form.
    learning_rate: ``(config, steps_per_epoch) ->`` a learning rate or optax
      schedule; ``config.learning_rate`` by default.
    resumable_keys: ``config ->`` the example's fields that a resumed run may
      change because they do not change what it trains (a data directory).
    score: optional ``(config, workdir, model, data) -> {key: value}``, run
      after training with the final model; the values join the last epoch's
      record, so the table can show them.
    write_figures: optional ``(config, workdir, results, data)``, run by
      process 0 after a sweep's report, e.g. prediction grids.
    stacked_axes: optional ``model -> `` each parameter's stacked axes (the
      layer axis of ``nnx.scan``) as a pure dict like
      ``nnx.to_pure_dict(nnx.state(model, nnx.Param))``, read from the model
      (e.g. with :func:`znorm_optax.stacked_axes_from_specs`). It gets the
      task's model as ``nnx.eval_shape`` builds it. ``znorm`` and ``gc`` then
      take statistics per layer, and the gradient log records each layer.
      Embedding tables need no entry: the study finds every ``nnx.Embed``
      (:func:`examples.study.methods.embedding_rows`).
  """

  validate_config: Callable[[Config], None]
  load_data: Callable[[Config], Data]
  make_task: Callable[[Config, Data], Task]
  table_columns: Sequence[Column]
  curves: Sequence[Column]
  learning_rate: Callable[[Config, int], methods.LearningRate] = _constant_learning_rate
  resumable_keys: Callable[[Config], Sequence[str]] = _nothing_may_change
  score: Callable[[Config, str, nnx.Module, Data], dict[str, float]] | None = None
  write_figures: Callable[[Config, str, Sequence[RunResult], Data], None] | None = None
  stacked_axes: Callable[[nnx.Module], methods.StackedAxes] | None = None
