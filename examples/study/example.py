"""The one record an example gives the study: its checks, data, task and report."""

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Protocol

import ml_collections
from flax import nnx

from examples.study import methods
from examples.study.report import Column
from examples.study.sweep import RunResult
from examples.training.fields import Field
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
    fields: what each of the example's own config fields accepts
      (``configs/default.py``'s ``FIELDS``); the study checks them with the
      core's and its own before anything else.
    datasets: the names ``config.dataset`` may take.
    check_model: ``name ->`` raises ``ValueError`` unless the example has a
      model of that name; the study checks every model of the sweep with it.
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
    validate_config: optional ``config ->`` checks what the declarations
      cannot (e.g. that the image size fits every model), after the study's
      checks and before anything is loaded or written; raises ``ValueError``
      naming the flag.
    stacked_axes: optional ``model -> `` each parameter's stacked axes (the
      layer axis of ``nnx.scan``) as a pure dict like
      ``nnx.to_pure_dict(nnx.state(model, nnx.Param))``, read from the model
      (e.g. with :func:`znorm_optax.stacked_axes_from_specs`). It gets the
      task's model as ``nnx.eval_shape`` builds it. ``znorm`` and ``gc`` then
      take statistics per layer, and the gradient log records each layer.
      Embedding tables need no entry: the study finds every ``nnx.Embed``
      (:func:`examples.study.methods.embedding_rows`).
  """

  fields: Mapping[str, Field]
  datasets: Sequence[str]
  check_model: Callable[[str], None]
  load_data: Callable[[Config], Data]
  make_task: Callable[[Config, Data], Task]
  table_columns: Sequence[Column]
  curves: Sequence[Column]
  learning_rate: Callable[[Config, int], methods.LearningRate] = _constant_learning_rate
  resumable_keys: Callable[[Config], Sequence[str]] = _nothing_may_change
  score: Callable[[Config, str, nnx.Module, Data], dict[str, float]] | None = None
  write_figures: Callable[[Config, str, Sequence[RunResult], Data], None] | None = None
  validate_config: Callable[[Config], None] | None = None
  stacked_axes: Callable[[nnx.Module], methods.StackedAxes] | None = None
