"""Learning curves of several runs on one figure.

  python -m experiments.plot <workdir> [<workdir> ...] --out=curves.png

Each workdir is a run (it holds metrics.jsonl) or a comparison (its
subfolders do, one per method). Left: a training metric; right: an
evaluation metric. By default both follow the task family, read from the
run's config.json:

- image and bit tasks: train loss | test error (%);
- Copy / Repeat Copy: train loss | curriculum length (train records);
- character corpora: train bpc | valid bpc.

``--train_metric``, ``--metric`` (``error`` = 100·(1 − accuracy), or any
metric name) and ``--split`` override them; ``--x=chars`` plots against the
characters seen (sequence tasks) instead of steps, e.g.

  python -m experiments.plot workdirs/ptb_T8 --x=chars --out=docs/ptb_char_bpc.png

A sweep's folder (``python -m experiments.sweep``) works too: runs whose
configs differ only in the seed are drawn as one mean curve with a shaded
± one-std band (over the steps every seed logged), labelled without the
seed and with the number of seeds, e.g.

  python -m experiments.plot /tmp/copy3 --out=copy_seeds.png

Each method keeps its colour in every figure (backprop/bptt blue, dni
orange, cdni/dni_aux green, ...); a series with no points is named in a
warning. (``experiments.plot_seeds`` draws final values as error bars
against a config field, and curves against wall time.)
"""

import json
import os
import re
import sys

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top

from dni_jax.training import results  # noqa: E402
from dni_jax.training.metrics_log import read_metrics  # noqa: E402
from experiments import plot_style  # noqa: E402
from experiments.plot_style import mean_band  # noqa: E402,F401
from experiments.plot_style import method_color  # noqa: E402,F401
from experiments.plot_style import METHOD_COLORS  # noqa: E402,F401
from experiments.plot_style import METHOD_ORDER  # noqa: E402,F401
from experiments.plot_style import percent  # noqa: E402
from experiments.plot_style import plain  # noqa: E402
from experiments.plot_style import series  # noqa: E402
from experiments.plot_style import sort_key  # noqa: E402

_OUT = flags.DEFINE_string("out", "curves.png", "Output image file.")
_TITLE = flags.DEFINE_string("title", "", "Figure title.")
_METRIC = flags.DEFINE_string(
    "metric", "auto", "Right panel: 'error' (100·(1 − accuracy)), or the "
    "name of any metric of the --split records; 'auto' follows the task.")
_SPLIT = flags.DEFINE_string("split", "auto", "Right panel's records: test, "
                             "valid or train; 'auto' follows the task.")
_TRAIN_METRIC = flags.DEFINE_string(
    "train_metric", "auto", "Left panel's training metric; 'auto' follows "
    "the task.")
_X = flags.DEFINE_enum("x", "step", ["step", "chars"], "Horizontal axis.")

_COPY_TASKS = ("copy", "repeat_copy")
_CORPORA = ("ptb_char", "tiny_shakespeare")


def default_panels(data_name: str | None) -> tuple[str, str, str]:
  """``(train metric, right metric, right split)`` of a task family."""
  if data_name in _COPY_TASKS:
    return "loss", "length", "train"
  if data_name in _CORPORA:
    return "bpc", "bpc", "valid"
  return "loss", "error", "test"


def find_runs(paths: list[str]) -> dict[str, str]:
  """``{label: run folder}`` for runs and comparison folders."""
  runs = {}
  for path in paths:
    path = os.path.normpath(path)
    if os.path.exists(os.path.join(path, "metrics.jsonl")):
      runs[os.path.basename(path)] = path
      continue
    subruns = sorted(d for d in os.listdir(path) if os.path.exists(
        os.path.join(path, d, "metrics.jsonl"))) if os.path.isdir(path) else []
    if not subruns:
      raise app.UsageError(f"no metrics.jsonl in {path!r} or its subfolders")
    for d in subruns:
      label = d if len(paths) == 1 else f"{os.path.basename(path)}/{d}"
      runs[label] = os.path.join(path, d)
  return dict(sorted(runs.items(), key=lambda item: sort_key(item[0])))


def _seedless(label: str) -> str:
  """A member's label without its ``seed=N`` part (``seed=0`` → ``seeds``)."""
  return re.sub(r"(^|[,/])seed=\d+(?=$|[,/])", "", label).strip(",/") or "seeds"


def group_seeds(runs: dict[str, str]) -> dict[str, list[str]]:
  """``{label: [run folders]}``: runs whose labels differ only in their
  ``seed=N`` part and whose configs agree on every field but the seed (and
  what may change on resume) form one group, labelled without the seed.
  Any other run, or one without a readable config.json, stays on its own."""
  groups, label_of = {}, {}
  for label, run_dir in runs.items():
    try:
      config = results.flat_config(run_dir)
      key = (_seedless(label), json.dumps(
          {k: v for k, v in config.items()
           if k not in results.IGNORED_FIELDS}, sort_keys=True))
    except (OSError, ValueError):
      key = (label, run_dir)
    if key not in label_of:
      label_of[key] = key[0] if key[0] not in groups else label
    groups.setdefault(label_of[key], []).append(run_dir)
  return groups


def data_name(run_dir: str) -> str | None:
  try:
    with open(os.path.join(run_dir, "config.json")) as f:
      return json.load(f)["data"]["name"]
  except (OSError, ValueError, KeyError):
    return None


def _pick(flag: str, default: str) -> str:
  return default if flag == "auto" else flag


def _plot(ax, serieses, label, what) -> None:
  """One run's curve, or the mean ± std band of a group of seeds."""
  serieses = [s for s in serieses if s[0]]
  if not serieses:
    print(f"warning: run {label!r} has no {what} records; its curve is empty "
          "(choose another --metric/--split?)", file=sys.stderr)
    return
  color = method_color(label)
  if len(serieses) == 1:
    xs, ys = serieses[0]
    ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label,
            color=color)
    return
  xs, mean, std = mean_band(serieses)
  ax.plot(xs, mean, label=f"{label} (n={len(serieses)})", color=color,
          marker="." if len(xs) < 30 else None)
  ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.2)


def main(argv):
  runs = find_runs(argv[1:])
  if not runs:
    raise app.UsageError("give one or more workdirs")
  names = {label: data_name(d) for label, d in runs.items()}
  train_metric, metric, split = default_panels(next(iter(names.values())))
  train_metric = _pick(_TRAIN_METRIC.value, train_metric)
  metric, split = _pick(_METRIC.value, metric), _pick(_SPLIT.value, split)
  fig, (ax_train, ax_eval) = plt.subplots(1, 2, figsize=(11, 4.2))
  groups = group_seeds(runs)
  for label, run_dirs in groups.items():
    records = [read_metrics(os.path.join(d, "metrics.jsonl"))
               for d in run_dirs]
    _plot(ax_train, [series(r, "train", train_metric, _X.value)
                     for r in records], label, f"train {train_metric}")
    _plot(ax_eval, [series(r, split, metric, _X.value) for r in records],
          label, f"{split} {metric}")
  x = "characters seen" if _X.value == "chars" else "step"
  ax_train.set(xlabel=x, ylabel=f"train {train_metric}", yscale="log",
               title=f"training {train_metric}")
  ylabel = f"{split} error (%)" if metric == "error" else f"{split} {metric}"
  ax_eval.set(xlabel=x, ylabel=ylabel, title=ylabel,
              yscale="log" if metric in ("error", "loss", "bpc") else "linear")
  plot_style.plain_log_ticks(ax_train, plain)
  if ax_eval.get_yscale() == "log":
    plot_style.plain_log_ticks(ax_eval, percent if metric == "error" else plain)
  plot_style.finish(fig, (ax_train, ax_eval), _OUT.value, _TITLE.value)
  print(f"wrote {_OUT.value} ({len(runs)} runs, {len(groups)} curves)")


if __name__ == "__main__":
  app.run(main)
