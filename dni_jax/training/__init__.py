"""The training layer: config → objects, loops, run bookkeeping, checkpoints.

- ``train``: ``train_and_evaluate(config, workdir)``, the entry point.
- ``experiment``: config → data, network, optimisers (validates every field).
- ``run``: the run bookkeeping every loop shares (``Loop``, ``run``).
- ``feedforward``, ``recurrent``, ``pipelined``, ``two_networks``: the
  loops of the task families (each a ``run.Loop``; all but the pipeline
  also vmap a sweep group, ``make_batched_loop``).
- ``families``: the kinds of training, each declared once (which configs,
  methods, checks, loop module, results table, vmappable).
- ``sweep``: a config's sweep members, vmapped groups, the group runner;
  ``batching``: a group's member axis and per-member hyper-parameters.
- ``results``: finished runs on disk, grouped by config, seed statistics.
- ``evaluate``: a workdir's latest checkpoints restored with the runs' own
  ``config.json`` and evaluated (``evaluate_workdir``).
- ``workdir``, ``tensorboard``: a workdir's config identity; event files.
- ``checkpoint``, ``metrics_log``, ``report``: Orbax checkpoints,
  ``metrics.jsonl``, summaries and tables.
- ``host_memory``: glibc keeps freed memory, so XLA:CPU's big scratch
  buffers are reused instead of page-faulted in at every step.
"""

from dni_jax.training.train import train_and_evaluate
