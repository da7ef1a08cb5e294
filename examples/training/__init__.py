"""The training core shared by the examples; it knows no model, dataset or method.

A caller gives :func:`~examples.training.loop.fit` four things:

1. A :class:`~examples.training.task.Task`: ``create_model(rngs,
   data_axis_name)`` returning an ``nnx.Module`` (``data_axis_name`` names the
   device axis under ``pmap``, for layers such as BatchNorm whose statistics
   span the global batch; ``None`` otherwise), ``train_loss(model, batch) ->
   (loss, metric_sums)`` and ``eval_metrics(model, batch) -> metric_sums``.
   Metric values are sums over the batch's real examples (weight by
   ``batch['mask']``); the core adds the example count and reports means,
   e.g. ``train_loss`` and ``test_accuracy``.
2. A :class:`~examples.training.task.DataSource` of process-local NumPy
   batches, e.g. :class:`~examples.training.data.ArraySource` for arrays in
   memory. Split the global batch with
   :func:`~examples.training.parallel.process_batch_size`.
3. An optax optimizer, and with ``--config.log_gradient_statistics`` a
   :class:`~examples.training.gradient_log.StepStatistics` that computes the
   gradient statistics (the study's computes them with the library).
4. A config with the fields of :func:`~examples.training.defaults.get_config`.

It then trains with ``--config.parallel`` = ``sharded`` (default), ``pmap`` or
``none`` on the devices of ``--config.platform`` (JAX's default backend unless
set), evaluates every epoch, writes ``metrics.jsonl`` and TensorBoard event
files (and, with ``--config.log_gradient_statistics=True``, each parameter
leaf's gradient norm and std before and after the method's gradient transform
at every log step, into ``gradient_statistics.jsonl`` and TensorBoard), checkpoints with
orbax (named items, the run's config, checksums, fall-back to the previous
intact checkpoint) and resumes with ``--config.resume`` only into the same run
on the same devices, where it ends bit for bit as an uninterrupted run does
(other devices take ``--config.resume_on_other_devices=True``).
NaN or Inf in the loss, gradients or updates stops the run, or with
``--config.on_nonfinite=skip`` skips the step. SIGTERM or SIGINT stops it after
the step in flight with a verified checkpoint; a second run on the same work
directory is refused; a failed write stops it with one line naming the path.
Multi-host runs call :func:`~examples.training.distributed.initialize` first
(:func:`~examples.training.cli.run` does).

The paper's study (the compared optimizers, sweeps, reports) sits above this core, in
:mod:`examples.study`.

Modules: ``task`` (interfaces), ``defaults`` (the core's config fields),
``steps`` (jittable steps), ``parallel`` (data-parallel modes), ``distributed``
(processes), ``data`` (in-memory source, padding), ``datasets`` (dataset-name
checks, optional tfds), ``checkpointing`` (orbax), ``resume`` (same-run check,
``load_model``), ``metrics_log`` (JSONL), ``tensorboard_log`` (event files),
``gradient_log`` (the gradient statistics' log), ``tree_paths`` (leaf names), ``fields`` (what each config
field accepts), ``validation`` (config and work directory checks), ``cli`` (the shared command line), ``loop`` (the
training loop), ``stop_signals`` (SIGTERM, SIGINT, preemption notices),
``workdir_lock`` (one run per work directory) and ``errors`` (why a run
stopped).
"""
