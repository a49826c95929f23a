"""Seeds into error bars: every run under a folder, grouped by what differs.

  python -m experiments.summarize DIR [--metrics=error,b_error] [--split=test]

Finds every run under ``DIR`` (a folder with ``config.json`` and
``metrics.jsonl``, at any depth), groups the runs whose configs differ only
in ``seed`` (and in the fields a run may change on resume: step budget,
cadence, data location), and prints per group and metric the final value
and the best value over the run's evaluations as ``mean ± std`` (sample
standard deviation, n − 1) with min/max and the number of seeds. A group is
named by the config fields that tell the groups apart (e.g.
``method=cdni model.depth=6``); a field missing from some configs (written
before the field existed) counts only where present. The table is also written as
``DIR/summary.md`` and ``DIR/summary.csv``.

``error`` is derived as ``1 − accuracy`` where a run logs accuracy; "best"
is the maximum of accuracy-like metrics (accuracy, exact_match,
max_length_solved) and the minimum of the others.
"""

from __future__ import annotations

import csv
import os

from absl import app
from absl import flags

from dni_jax.training import results

_METRICS = flags.DEFINE_list(
    "metrics", [], "Metrics to report; empty: every metric of the split.")
_SPLIT = flags.DEFINE_string("split", "test", "The split whose records count.")
_SCALE = flags.DEFINE_float(
    "scale", 1.0, "Multiply every value (e.g. 100 for errors in percent).")

_HIGHER_IS_BETTER = ("accuracy", "exact_match", "max_length_solved")


def summarize(root: str, split: str = "test", metrics=(),
              scale: float = 1.0) -> list[dict]:
  """One row per (group, metric): final and best values over the seeds."""
  runs = results.find_runs(root)
  if not runs:
    raise SystemExit(f"no runs under {root}: a run folder holds config.json "
                     "and metrics.jsonl (made by experiments.main).")
  configs = {run: results.flat_config(run) for run in runs}
  varying = results.varying_fields(list(configs.values()))
  groups: dict[str, list[str]] = {}
  for run in runs:
    name = " ".join(f"{k}={configs[run].get(k)}" for k in varying) or "all"
    groups.setdefault(name, []).append(run)
  rows = []
  for name, members in groups.items():
    series = [{k: v for k, (_, v) in results.metric_series(run, split).items()}
              for run in members]
    names = metrics or sorted(set().union(*series))
    for metric in names:
      finals, bests = [], []
      for s in series:
        if metric in s:
          pick = max if metric in _HIGHER_IS_BETTER else min
          finals.append(scale * s[metric][-1])
          bests.append(scale * pick(s[metric]))
      if finals:
        rows.append({"group": name, "metric": metric,
                     "final": results.stats(finals),
                     "best": results.stats(bests)})
  return rows


def _cell(stats: dict) -> str:
  return f"{stats['mean']:.4g} ± {stats['std']:.2g}"


def markdown(rows: list[dict]) -> str:
  lines = ["| group | metric | final (mean ± std) | best (mean ± std) | "
           "final min / max | seeds |", "|---|---|---|---|---|---|"]
  for r in rows:
    f = r["final"]
    lines.append(f"| {r['group']} | {r['metric']} | {_cell(f)} | "
                 f"{_cell(r['best'])} | {f['min']:.4g} / {f['max']:.4g} | "
                 f"{f['n']} |")
  return "\n".join(lines)


def write(root: str, rows: list[dict]) -> None:
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write(markdown(rows) + "\n")
  with open(os.path.join(root, "summary.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["group", "metric", "final_mean", "final_std",
                     "final_min", "final_max", "best_mean", "best_std",
                     "seeds"])
    for r in rows:
      fin, best = r["final"], r["best"]
      writer.writerow([r["group"], r["metric"], fin["mean"], fin["std"],
                       fin["min"], fin["max"], best["mean"], best["std"],
                       fin["n"]])


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: python -m experiments.summarize DIR")
  root = argv[1]
  rows = summarize(root, _SPLIT.value, tuple(_METRICS.value), _SCALE.value)
  print(markdown(rows))
  write(root, rows)


if __name__ == "__main__":
  app.run(main)
