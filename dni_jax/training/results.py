"""Finished runs on disk: finding them, their configs, metric series, stats.

Shared by ``experiments.summarize`` (tables over seeds: ``summarize``,
``markdown``, ``write_summary``), ``experiments.plot_seeds`` (error bars and
bands) and ``experiments.reproduce``. A *run* is a folder with
``config.json`` and ``metrics.jsonl`` (what ``experiments.main`` writes).
"""

from __future__ import annotations

import csv
import json
import math
import os

from dni_jax.errors import DNIError
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
  """The run's ``config.json`` as ``{"a.b": value}``, a field added since
  it was written at the value that behaves as the run did
  (``workdir.ADDED_FIELDS``)."""
  with open(os.path.join(run, "config.json")) as f:
    return workdir_lib.flatten(workdir_lib.with_added_fields(json.load(f)))


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


def t_interval(values: list[float], level: float = 0.95) -> tuple:
  """Student-t interval of the mean of ``values`` (n ≥ 2): ``(low, high)``."""
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top
  if len(values) < 2:
    raise ValueError(f"an interval needs two values or more, got "
                     f"{len(values)}")
  s = stats(values)
  half = (scipy_stats.t.ppf(0.5 + level / 2, s["n"] - 1) * s["std"] /
          math.sqrt(s["n"]))
  return s["mean"] - half, s["mean"] + half


_HIGHER_IS_BETTER = ("accuracy", "exact_match", "max_length_solved",
                     "max_task_length_solved", "cosine", "grad_cosine",
                     "sg_cosine", "sg_r2")


def higher_is_better(metric: str) -> bool:
  """Whether "best" is the maximum: accuracy-like metrics and a
  synthesizer's fit (cosine, R², per slot or stage too). A metric with a
  prefix or an index (``synthetic/accuracy``, ``grad_cosine/0``) counts by
  its named part."""
  return any(part in _HIGHER_IS_BETTER or part.startswith("sg_r2_slot")
             for part in metric.split("/"))


# The split ``summarize`` reads when none is named: the first of these the
# runs log (Copy and Repeat Copy hold nothing out: their records are "train").
SPLIT_ORDER = ("test", "valid", "train")


def _splits_of(run: str) -> set[str]:
  return {r["split"] for r in read_metrics(
      os.path.join(run, "metrics.jsonl"), warn=False)}


def _ordered(splits: set[str]) -> list[str]:
  return ([s for s in SPLIT_ORDER if s in splits] +
          sorted(splits - set(SPLIT_ORDER)))


def _first(splits: set[str]) -> str:
  return (_ordered(splits) or list(SPLIT_ORDER))[0]


def default_split(runs: list[str]) -> str:
  """The split read when none is named: the first of ``SPLIT_ORDER`` the
  runs log ("test" if they log nothing yet)."""
  return _first(set().union(*map(_splits_of, runs)))


def _until(series: dict[str, tuple[list, list]], at: int, run: str,
           split: str) -> dict[str, list]:
  """``{metric: values}`` of the records at steps ≤ ``at``.

  Raises:
    DNIError: the run has no ``split`` records, or they end before ``at``
      or begin after it.
  """
  first = min((steps[0] for steps, _ in series.values()), default=None)
  last = max((steps[-1] for steps, _ in series.values()), default=None)
  if last is None:
    raise DNIError(
        f"{run} has no '{split}' records yet: train it on to its first "
        "evaluation (rerun its command; it resumes), or summarize a folder "
        "without it.")
  if last < at:
    raise DNIError(
        f"{run} has '{split}' records up to step {last} only, not to "
        f"--at={at}: train it on (rerun its command; it resumes), or give "
        "an --at no later than every run's last record.")
  if first > at:
    raise DNIError(
        f"{run}'s first '{split}' record is at step {first}, after "
        f"--at={at}: give an --at of {first} or later.")
  return {k: [v for step, v in zip(steps, values) if step <= at]
          for k, (steps, values) in series.items()}


def summarize(root: str, split: str | None = "test", metrics=(),
              scale: float = 1.0, at: int | None = None) -> list[dict]:
  """One row per (group, metric): final and best values over the seeds
  (``{"group", "metric", "split", "final", "best"}``).

  ``split=None``: each group reads the first of ``SPLIT_ORDER`` its runs
  log (a Copy group its train records beside an MNIST group's test ones).
  ``at``: each run read as it stood at step ``at`` ("final" is its newest
  record at or before ``at``, "best" the best of those), e.g. to set a
  longer run beside a shorter one at the shorter one's budget.

  Raises:
    FileNotFoundError: ``root`` is not a folder, or holds no run.
    DNIError: no run logs ``split``, the message naming the splits they
      do; or (``at``) a run has no ``split`` records yet, or they end
      before ``at`` or begin after it.
  """
  if not os.path.isdir(root):
    raise FileNotFoundError(
        f"{root} " + ("is not a folder" if os.path.exists(root) else
                      "does not exist") + ": give the --workdir of a sweep "
        "(experiments.sweep) or a folder of runs (experiments.main).")
  runs = find_runs(root)
  if not runs:
    raise FileNotFoundError(
        f"no runs under {root}: a run folder holds config.json and "
        "metrics.jsonl (made by experiments.main or experiments.sweep).")
  per_run = {run: _splits_of(run) for run in runs}
  splits = _ordered(set().union(*per_run.values()))
  if not splits:
    raise DNIError(
        f"the runs under {root} have logged no records yet: a run writes "
        "its first at step log_every (or eval_every); summarize it then.")
  if split is not None and split not in splits:
    raise DNIError(
        f"no '{split}' records under {root}: its runs log "
        + ", ".join(f"'{s}'" for s in splits) + f". Give --split={splits[0]} "
        "(or leave --split unset)" + (
            "; Copy and Repeat Copy hold nothing out, so their records are "
            "'train'." if splits == ["train"] else "."))
  configs = {run: flat_config(run) for run in runs}
  varying = varying_fields(list(configs.values()))
  groups: dict[str, list[str]] = {}
  for run in runs:
    name = " ".join(f"{k}={configs[run].get(k)}" for k in varying) or "all"
    groups.setdefault(name, []).append(run)
  rows = []
  for name, members in groups.items():
    read = split or _first(set().union(*(per_run[r] for r in members)))
    series = [_until(metric_series(run, read), at, run, read)
              if at is not None else
              {k: v for k, (_, v) in metric_series(run, read).items()}
              for run in members]
    names = metrics or sorted(set().union(*series))
    for metric in names:
      finals, bests = [], []
      for s in series:
        if s.get(metric):
          pick = max if higher_is_better(metric) else min
          finals.append(scale * s[metric][-1])
          bests.append(scale * pick(s[metric]))
      if finals:
        rows.append({"group": name, "metric": metric, "split": read,
                     "final": stats(finals), "best": stats(bests)})
  return rows


def _cell(s: dict) -> str:
  """``mean ± std``; a single seed has no spread: ``value (n = 1)``."""
  if s["n"] == 1:
    return f"{s['mean']:.4g} (n = 1)"
  return f"{s['mean']:.4g} ± {s['std']:.2g}"


def markdown(rows: list[dict]) -> str:
  """``summarize``'s rows as a Markdown table."""
  lines = ["| group | metric | split | final (mean ± std) | "
           "best (mean ± std) | final min / max | seeds |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    f = r["final"]
    lines.append(f"| {r['group']} | {r['metric']} | {r['split']} | "
                 f"{_cell(f)} | "
                 f"{_cell(r['best'])} | {f['min']:.4g} / {f['max']:.4g} | "
                 f"{f['n']} |")
  return "\n".join(lines)


def write_summary(root: str, rows: list[dict]) -> None:
  """``root/summary.md`` and ``root/summary.csv`` of ``summarize``'s rows."""
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write(markdown(rows) + "\n")
  with open(os.path.join(root, "summary.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["group", "metric", "split", "final_mean", "final_std",
                     "final_min", "final_max", "best_mean", "best_std",
                     "seeds"])
    for r in rows:
      fin, best = r["final"], r["best"]
      writer.writerow([r["group"], r["metric"], r["split"], fin["mean"],
                       fin["std"], fin["min"], fin["max"], best["mean"],
                       best["std"], fin["n"]])
