"""``train_and_evaluate(config, workdir)``: the entry point of every run.

Validates the config, then trains each method named in ``config.method``
with the loop of its task family: ``feedforward`` (images, binary addition)
or ``recurrent`` (sequence tasks). Several comma-separated methods each run
in ``workdir/<method>`` and a comparison table is printed at the end.
"""

from __future__ import annotations

import os

import ml_collections

from dni_jax.training import experiment
from dni_jax.training import feedforward
from dni_jax.training import recurrent
from dni_jax.training import report


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, dict]:
  """Trains every method named in ``config.method``; returns their summaries."""
  experiment.validate(config)
  names = experiment.methods(config)
  is_recurrent = experiment.is_recurrent(config)
  train_one = recurrent.train_one if is_recurrent else feedforward.train_one
  summaries = {}
  for name in names:
    run_config = ml_collections.ConfigDict(config.to_dict())
    run_config.method = name
    run_dir = workdir if len(names) == 1 else os.path.join(workdir, name)
    summaries[name] = train_one(run_config, run_dir)
  if len(names) > 1:
    table = (report.recurrent_table if is_recurrent
             else report.comparison_table)(summaries)
    print(f"\n{config.data.name}: comparison after {config.num_steps} steps "
          f"(workdir {workdir})\n" + table, flush=True)
  return summaries
