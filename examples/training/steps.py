"""Pure, jittable train and eval steps built from a :class:`~examples.training.task.Task`.

The steps work on ``nnx.split((model, optimizer))`` state so that the same
function can be compiled by ``jax.jit`` (single device or sharded over a mesh)
or by ``jax.pmap``. Steps return metric *sums*, which the loop adds up on device
with :func:`accumulate` and reads once per log interval.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from examples.training import gradient_log
from examples.training.task import COUNT
from examples.training.task import MASK
from examples.training.task import Batch
from examples.training.task import Metrics
from examples.training.task import Task

State = nnx.State
EvalStep = Callable[[State, Batch], Metrics]
TrainStep = Callable[[tuple[State, dict], Batch], tuple[tuple[State, dict], Metrics]]


def _with_count(metric_sums: Metrics, batch: Batch) -> Metrics:
  return dict(metric_sums, **{COUNT: jnp.sum(batch[MASK])})


@jax.jit
def accumulate(metric_sums: Metrics | None, new: Metrics) -> Metrics:
  """``metric_sums + new``, leaf by leaf, on device; ``None`` counts as zero."""
  if metric_sums is None:
    return new
  return jax.tree.map(jnp.add, metric_sums, new)


LOSS, GRADIENTS, UPDATES = 1, 2, 4
"""Bits of a non-finite step's ``parts``: what held a NaN or an Inf."""
PART_NAMES = {LOSS: 'loss', GRADIENTS: 'gradients',
              UPDATES: 'updated state (parameters, optimizer state or batch statistics)'}
SKIPPED = 'skipped_steps'
"""Metric key of the steps a ``skip_nonfinite`` train step skipped."""

Health = dict[str, jax.Array]
"""Int32 scalars the train step updates: ``step`` (steps run), ``nonfinite_steps``,
``consecutive`` (non-finite steps in a row), ``stop_step`` and ``stop_parts``: the
step at which ``consecutive`` first reached the limit and what was non-finite
then (-1 and 0 until it does)."""


def initial_health(step: int) -> dict[str, np.ndarray]:
  """The :data:`Health` of a run that starts (or resumes) at ``step``."""
  health = {'step': step, 'nonfinite_steps': 0, 'consecutive': 0, 'stop_step': -1,
            'stop_parts': 0}
  return {name: np.asarray(value, np.int32) for name, value in health.items()}


def describe_parts(parts: int) -> str:
  """``'loss and gradients'`` for ``LOSS | GRADIENTS``."""
  names = [name for bit, name in PART_NAMES.items() if parts & bit]
  return ' and '.join(names) if len(names) < 3 else f'{", ".join(names[:-1])} and {names[-1]}'


def _all_finite(tree) -> jax.Array:
  flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
           if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


def _track(health: Health, parts: jax.Array, max_consecutive: int) -> Health:
  bad = parts != 0
  step = health['step'] + 1
  consecutive = jnp.where(bad, health['consecutive'] + 1, 0)
  stops_now = (consecutive >= max_consecutive) & (health['stop_step'] < 0)
  return {
      'step': step,
      'nonfinite_steps': health['nonfinite_steps'] + bad.astype(jnp.int32),
      'consecutive': consecutive,
      'stop_step': jnp.where(stops_now, step, health['stop_step']),
      'stop_parts': jnp.where(stops_now, parts, health['stop_parts']),
  }


def _gathered(task_function: Callable, gather_variables: Callable | None) -> Callable:
  """``task_function(model, batch)`` on the model with ``gather_variables`` applied to its state.

  Under differentiation the gather's transpose sends each gradient back to
  where its parameter lives. The model's updated state other than its
  parameters (BatchNorm statistics) comes back into ``model``.
  """
  if gather_variables is None:
    return task_function

  def gathered(model, batch):
    graphdef, state = nnx.split(model)
    whole = nnx.merge(graphdef, gather_variables(state))
    outputs = task_function(whole, batch)
    nnx.update(model, nnx.state(whole, nnx.Not(nnx.Param)))
    return outputs

  return gathered


def train_step(task: Task, graphdef: nnx.GraphDef, axis_name: str | None = None, *,
               skip_nonfinite: bool = False, max_consecutive: int = 1,
               gradient_statistics: gradient_log.StepStatistics | None = None,
               gather_variables: Callable | None = None) -> TrainStep:
  """One optimizer step on ``(state, health)``; returns them updated and this batch's metric sums.

  Every step checks the loss, the gradients and the updated state for NaN and
  Inf on device and records what it finds in :data:`Health`, which the loop
  reads only at log intervals, so no step waits for the host.

  Args:
    task: supplies the loss.
    graphdef: the static half of ``nnx.split((model, optimizer))``.
    axis_name: the ``pmap`` axis. When set, gradients are averaged over it
      (``lax.pmean``), metric sums are added over it, and the BatchNorm running
      statistics are averaged after the update so replicas never drift apart.
    skip_nonfinite: keep the old state (parameters, optimizer state and batch
      statistics) when anything is non-finite, leave the step's metrics out of
      the sums and count it under :data:`SKIPPED`.
    max_consecutive: non-finite steps in a row after which ``health`` records a
      stop; 1 stops at the first.
    gradient_statistics: if given, the step returns ``(metric_sums,
      statistics)`` instead of ``metric_sums``: what it computes from the
      (averaged) gradient and the parameters.
    gather_variables: if given, the loss runs on the model with this applied
      to its state (``fsdp``: each variable whole; see
      :attr:`examples.training.parallel.DataParallel.gather_variables`).
  """
  train_loss = _gathered(task.train_loss, gather_variables)

  def step(carry: tuple[State, Health], batch: Batch) -> tuple[tuple[State, Health], Metrics]:
    state, health = carry
    old_leaves, treedef = jax.tree.flatten(state)
    model, optimizer = nnx.merge(graphdef, state)
    model.train()
    (loss, metric_sums), grads = nnx.value_and_grad(train_loss, has_aux=True)(model, batch)
    metric_sums = _with_count(metric_sums, batch)
    if axis_name is not None:
      loss = jax.lax.pmean(loss, axis_name)
      grads = jax.lax.pmean(grads, axis_name)
      metric_sums = jax.lax.psum(metric_sums, axis_name)
    if gradient_statistics is not None:
      statistics = gradient_statistics(health['step'] + 1, nnx.to_pure_dict(grads),
                                       nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    optimizer.update(model, grads)
    if axis_name is not None:
      nnx.update(model, jax.lax.pmean(nnx.state(model, nnx.BatchStat), axis_name))
    new_state = nnx.state((model, optimizer))
    # On XLA:CPU relu(NaN) is 0, so a NaN model can give a finite loss: check all three.
    parts = (jnp.where(_all_finite((loss, metric_sums)), 0, LOSS)
             | jnp.where(_all_finite(grads), 0, GRADIENTS)
             | jnp.where(_all_finite(new_state), 0, UPDATES)).astype(jnp.int32)
    if skip_nonfinite:
      finite = parts == 0
      kept = [jnp.where(finite, new, old)
              for new, old in zip(jax.tree.leaves(new_state), old_leaves, strict=True)]
      new_state = jax.tree.unflatten(treedef, kept)
      metric_sums = {name: jnp.where(finite, value, jnp.zeros_like(value))
                     for name, value in metric_sums.items()}
      metric_sums[SKIPPED] = jnp.where(finite, 0.0, 1.0)
    carry = (new_state, _track(health, parts, max_consecutive))
    if gradient_statistics is not None:
      return carry, (metric_sums, statistics)
    return carry, metric_sums

  return step


def eval_step(task: Task, graphdef: nnx.GraphDef, axis_name: str | None = None, *,
              gather_variables: Callable | None = None) -> EvalStep:
  """One evaluation batch's metric sums, with the model in eval mode."""
  eval_metrics = _gathered(task.eval_metrics, gather_variables)

  def step(state: State, batch: Batch) -> Metrics:
    model, _ = nnx.merge(graphdef, state)
    model.eval()
    metric_sums = _with_count(eval_metrics(model, batch), batch)
    if axis_name is not None:
      metric_sums = jax.lax.psum(metric_sums, axis_name)
    return metric_sums

  return step

