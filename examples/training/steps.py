"""Pure, jittable train and eval steps built from a :class:`~examples.training.task.Task`.

The steps work on ``nnx.split((model, optimizer))`` state so that the same
function can be compiled by ``jax.jit`` (single device or sharded over a mesh)
or by ``jax.pmap``. Steps return metric *sums*, which the loop adds up on device
with :func:`accumulate` and reads once per log interval.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from examples.training.task import COUNT
from examples.training.task import MASK
from examples.training.task import Batch
from examples.training.task import Metrics
from examples.training.task import Task

State = nnx.State
TrainStep = Callable[[State, Batch], tuple[State, Metrics]]
EvalStep = Callable[[State, Batch], Metrics]


def _with_count(metric_sums: Metrics, batch: Batch) -> Metrics:
  return dict(metric_sums, **{COUNT: jnp.sum(batch[MASK])})


@jax.jit
def accumulate(metric_sums: Metrics | None, new: Metrics) -> Metrics:
  """``metric_sums + new``, leaf by leaf, on device; ``None`` counts as zero."""
  if metric_sums is None:
    return new
  return jax.tree.map(jnp.add, metric_sums, new)


def train_step(task: Task, graphdef: nnx.GraphDef, axis_name: str | None = None) -> TrainStep:
  """One optimizer step; returns the new state and this batch's metric sums.

  Args:
    task: supplies the loss.
    graphdef: the static half of ``nnx.split((model, optimizer))``.
    axis_name: the ``pmap`` axis. When set, gradients are averaged over it
      (``lax.pmean``), metric sums are added over it, and the BatchNorm running
      statistics are averaged after the update so replicas never drift apart.
  """

  def step(state: State, batch: Batch) -> tuple[State, Metrics]:
    model, optimizer = nnx.merge(graphdef, state)
    model.train()
    (_, metric_sums), grads = nnx.value_and_grad(task.train_loss, has_aux=True)(model, batch)
    metric_sums = _with_count(metric_sums, batch)
    if axis_name is not None:
      grads = jax.lax.pmean(grads, axis_name)
      metric_sums = jax.lax.psum(metric_sums, axis_name)
    optimizer.update(model, grads)
    if axis_name is not None:
      nnx.update(model, jax.lax.pmean(nnx.state(model, nnx.BatchStat), axis_name))
    return nnx.state((model, optimizer)), metric_sums

  return step


def eval_step(task: Task, graphdef: nnx.GraphDef, axis_name: str | None = None) -> EvalStep:
  """One evaluation batch's metric sums, with the model in eval mode."""

  def step(state: State, batch: Batch) -> Metrics:
    model, _ = nnx.merge(graphdef, state)
    model.eval()
    metric_sums = _with_count(task.eval_metrics(model, batch), batch)
    if axis_name is not None:
      metric_sums = jax.lax.psum(metric_sums, axis_name)
    return metric_sums

  return step

