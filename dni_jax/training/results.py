"""Finished runs on disk: finding them, their configs, metric series, stats.

Shared by ``experiments.summarize`` (tables over seeds) and
``experiments.plot_seeds`` (error bars and bands). A *run* is a folder with
``config.json`` and ``metrics.jsonl`` (what ``experiments.main`` writes).
"""

from __future__ import annotations

import json
import math
import os

from dni_jax.training import workdir as workdir_lib
from dni_jax.training.metrics_log import read_metrics

# Fields that do not make two runs different experiments: the seed, and
# what may change on resume (step budget, cadence, data location).
IGNORED_FIELDS = frozenset(workdir_lib.RESUMABLE) | {"seed"}


def find_runs(root: str) -> list[str]:
  """Every run folder under ``root``, at any depth, in sorted order."""
  runs = []
  for folder, dirs, files in os.walk(root):
    dirs.sort()
    if "config.json" in files and "metrics.jsonl" in files:
      runs.append(folder)
  return runs


def flat_config(run: str) -> dict:
  """The run's ``config.json`` as ``{"a.b": value}``."""
  with open(os.path.join(run, "config.json")) as f:
    return workdir_lib._flatten(json.load(f))  # pylint: disable=protected-access


def metric_series(run: str, split: str) -> dict[str, tuple[list, list]]:
  """``{metric: (steps, values)}`` of the run's ``split`` records.

  ``error`` is added as ``1 − accuracy`` where a record has accuracy.
  """
  series = {}
  records = sorted((r for r in read_metrics(os.path.join(run, "metrics.jsonl"))
                    if r["split"] == split), key=lambda r: r["step"])
  for record in records:
    if "accuracy" in record and "error" not in record:
      record = {**record, "error": 1.0 - record["accuracy"]}
    for key, value in record.items():
      if key not in ("step", "split") and isinstance(value, (int, float)):
        steps, values = series.setdefault(key, ([], []))
        steps.append(record["step"])
        values.append(float(value))
  return series


def varying_fields(configs: list[dict]) -> list[str]:
  """Fields (minus ``IGNORED_FIELDS``) that take two values or more.

  A field missing from some configs (written before the field existed)
  counts only where present.
  """
  keys = sorted(set().union(*configs) - IGNORED_FIELDS)
  return [k for k in keys
          if len({json.dumps(c[k]) for c in configs if k in c}) > 1]


def stats(values: list[float]) -> dict:
  """Mean, sample standard deviation (n − 1), min, max and n."""
  n = len(values)
  mean = sum(values) / n
  std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
         if n > 1 else 0.0)
  return {"mean": mean, "std": std, "min": min(values), "max": max(values),
          "n": n}
