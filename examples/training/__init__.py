"""The training core shared by the examples; it knows nothing about any one task.

A task plugs in with three things:

1. A :class:`~examples.training.task.Task`: ``create_model(rngs,
   batch_norm_axis_name)`` returning an ``nnx.Module``, ``train_loss(model,
   batch) -> (loss, metric_sums)`` and ``eval_metrics(model, batch) ->
   metric_sums``. Metric values are sums over the batch's real examples
   (weight by ``batch['mask']``); the core adds the example count and reports
   means, e.g. ``train_loss`` and ``test_accuracy``.
2. A :class:`~examples.training.task.DataSource` of process-local NumPy
   batches, e.g. :class:`~examples.training.data.ArraySource` for arrays in
   memory. Split the global batch with
   :func:`~examples.training.distributed.process_batch_size`.
3. An optimizer, usually :func:`~examples.training.methods.make_optimizer`
   with a method name (``adam``, ``znorm``, ``gc``, ``clip``, ``wd1e-3``,
   ``wd1e-4``) and a learning rate or optax schedule.

Then :func:`~examples.training.loop.fit` trains with ``--config.parallel`` =
``sharded`` (default), ``pmap`` or ``none`` on the devices of
``--config.platform`` (JAX's default backend unless set), evaluates every epoch,
writes ``metrics.jsonl`` and TensorBoard event files (and, with
``--config.log_gradient_statistics=True``, each parameter leaf's gradient norm
and std before and after the method's transform at every log step, into
``gradient_statistics.jsonl`` and TensorBoard), checkpoints with orbax (named
items, the run's config, checksums, fall-back to the previous intact
checkpoint) and resumes with ``--config.resume`` only into the same run. NaN or
Inf in the loss, gradients or updates stops the run, or with
``--config.on_nonfinite=skip`` skips the step. SIGTERM or SIGINT stops it after
the step in flight with a verified checkpoint; a second run on the same work
directory is refused; a failed write stops it with one line naming the path.
:func:`~examples.training.sweep.run_sweep` runs models x
methods x seeds, and :func:`~examples.training.report.write_report` makes the
mean ± std table, the per-epoch curves with the task's own columns and, from
the runs' gradient statistics, the per-layer gradient norm against depth.
Multi-host runs call :func:`~examples.training.distributed.initialize` first.

Modules: ``methods`` (optimizer registry), ``task`` (interfaces), ``steps``
(jittable steps), ``parallel`` (data-parallel modes), ``distributed``
(processes), ``data`` (in-memory source, padding), ``checkpointing`` (orbax),
``metrics_log`` (JSONL), ``tensorboard_log`` (event files), ``gradient_log``
(per-layer gradient statistics), ``validation`` (config and work directory
checks), ``cli`` (the shared command line), ``loop`` (the training loop),
``stop_signals`` (SIGTERM, SIGINT, preemption notices), ``workdir_lock`` (one
run per work directory), ``errors`` (why a run stopped), ``sweep`` and
``report``.
"""
