"""The training layer: config → objects, loops, run bookkeeping, checkpoints.

- ``train``: ``train_and_evaluate(config, workdir)``, the entry point.
- ``experiment``: config → data, network, optimisers (validates every field).
- ``run``: the run bookkeeping every loop shares (``Loop``, ``run``).
- ``feedforward``, ``recurrent``: the loops of the two task families.
- ``checkpoint``, ``metrics_log``, ``report``: Orbax checkpoints,
  ``metrics.jsonl``, summaries and tables.
"""

from dni_jax.training.train import train_and_evaluate
