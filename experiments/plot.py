"""Learning curves of several runs on one figure.

  python -m experiments.plot <workdir> [<workdir> ...] --out=curves.png

Each workdir is a run (it holds metrics.jsonl) or a comparison (its
subfolders do, one per method). Left: a training metric (``--train_metric``,
default loss); right: test error (%), or, with ``--metric=bpc`` etc., any
other metric of the ``--split`` records. ``--x=chars`` plots against the
characters seen (sequence tasks) instead of steps, e.g.

  python -m experiments.plot workdirs/ptb_T8 --x=chars --train_metric=bpc \
      --metric=bpc --split=valid --out=docs/ptb_char_bpc.png
"""

import os

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top

from dni_jax.training.metrics_log import read_metrics  # noqa: E402

_OUT = flags.DEFINE_string("out", "curves.png", "Output image file.")
_TITLE = flags.DEFINE_string("title", "", "Figure title.")
_METRIC = flags.DEFINE_string(
    "metric", "error", "Right panel: 'error' (100·(1 − test accuracy)) or "
    "the name of any metric of the --split records.")
_SPLIT = flags.DEFINE_string("split", "test", "Right panel's records: test "
                             "or valid.")
_TRAIN_METRIC = flags.DEFINE_string("train_metric", "loss",
                                    "Left panel's training metric.")
_X = flags.DEFINE_enum("x", "step", ["step", "chars"], "Horizontal axis.")


def find_runs(paths: list[str]) -> dict[str, str]:
  """``{label: metrics.jsonl path}`` for runs and comparison folders."""
  runs = {}
  for path in paths:
    path = os.path.normpath(path)
    file = os.path.join(path, "metrics.jsonl")
    if os.path.exists(file):
      runs[os.path.basename(path)] = file
      continue
    subruns = sorted(d for d in os.listdir(path) if os.path.exists(
        os.path.join(path, d, "metrics.jsonl"))) if os.path.isdir(path) else []
    if not subruns:
      raise app.UsageError(f"no metrics.jsonl in {path!r} or its subfolders")
    for d in subruns:
      runs[d if len(paths) == 1 else f"{os.path.basename(path)}/{d}"] = \
          os.path.join(path, d, "metrics.jsonl")
  return runs


def _series(records, split, key):
  points = [(r[_X.value], r[key]) for r in records
            if r["split"] == split and r.get(key) is not None]
  return [p[0] for p in points], [p[1] for p in points]


def main(argv):
  runs = find_runs(argv[1:])
  if not runs:
    raise app.UsageError("give one or more workdirs")
  fig, (ax_loss, ax_test) = plt.subplots(1, 2, figsize=(11, 4.2))
  for label, path in runs.items():
    records = read_metrics(path)
    ax_loss.plot(*_series(records, "train", _TRAIN_METRIC.value), label=label)
    if _METRIC.value == "error":
      steps, acc = _series(records, _SPLIT.value, "accuracy")
      ax_test.plot(steps, [100 * (1 - a) for a in acc], marker=".", label=label)
    else:
      ax_test.plot(*_series(records, _SPLIT.value, _METRIC.value), marker=".",
                   label=label)
  x = "characters seen" if _X.value == "chars" else "step"
  ax_loss.set(xlabel=x, ylabel=f"train {_TRAIN_METRIC.value}", yscale="log",
              title=f"training {_TRAIN_METRIC.value}")
  ylabel = (f"{_SPLIT.value} error (%)" if _METRIC.value == "error"
            else f"{_SPLIT.value} {_METRIC.value}")
  ax_test.set(xlabel=x, ylabel=ylabel, yscale="log", title=ylabel)
  for ax in (ax_loss, ax_test):
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
  if _TITLE.value:
    fig.suptitle(_TITLE.value)
  fig.tight_layout()
  fig.savefig(_OUT.value, dpi=120)
  print(f"wrote {_OUT.value} ({len(runs)} runs)")


if __name__ == "__main__":
  app.run(main)
