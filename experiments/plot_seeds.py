"""Seeds as error bars and bands: runs grouped by their configs, one figure.

  # final test error against a field, a panel per value of another:
  python -m experiments.plot_seeds DIR --x_field=dni.update_prob \\
      --panel_field=model.depth --metric=error --out=docs/stochastic.png
  # mean curves over seeds with a shaded band (± one std), against steps or
  # wall time:
  python -m experiments.plot_seeds DIR --curves --panel_field=two_networks.T \\
      --metric=b_error --time --out=two_networks.png

Every run under ``DIR`` (``config.json`` + ``metrics.jsonl``) counts; runs
whose configs agree on ``method`` and the named fields are the seeds of one
point or curve. ``error`` is ``100·(1 − accuracy)``; ``--scale`` multiplies
any other metric. A method has the same colour as in ``experiments.plot``
(``plot_style.method_color``, a function of the method's name). Errors are
one paragraph starting with ``error:``.
"""

import glob
import os
import sys

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402  pylint: disable=g-import-not-at-top

from dni_jax.training import results  # noqa: E402
from dni_jax.training import tensorboard  # noqa: E402
from dni_jax.training.metrics_log import read_metrics  # noqa: E402
from experiments import cli  # noqa: E402
from experiments import plot_style  # noqa: E402

_OUT = flags.DEFINE_string("out", "seeds.png", "Output image file.")
_TITLE = flags.DEFINE_string("title", "", "Figure title.")
_METRIC = flags.DEFINE_string("metric", "error", "Metric of the --split "
                              "records ('error' = 100·(1 − accuracy)).")
_SPLIT = flags.DEFINE_string("split", "test", "Records to read.")
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiply the metric.")
_X_FIELD = flags.DEFINE_string("x_field", "", "Config field on the x axis "
                               "(final values); empty with --curves.")
_PANEL_FIELD = flags.DEFINE_string("panel_field", "", "One panel per value "
                                   "of this config field.")
_CURVES = flags.DEFINE_bool("curves", False, "Mean curves over seeds with a "
                            "± std band instead of final values.")
_TIME = flags.DEFINE_bool("time", False, "With --curves: a second row "
                          "against wall time (TensorBoard stamps).")
_LOG = flags.DEFINE_bool("log", False, "Logarithmic y axis.")


def field(config: dict, name: str):
  """A dotted field of a flattened config (``None`` if absent)."""
  return config.get(name) if name else None


def load(root: str, metric: str, split: str, scale: float,
         with_time: bool = False):
  """``[(config, steps, values, wall seconds or None)]`` for every run."""
  out = []
  for run in results.find_runs(root):
    config = results.flat_config(run)
    xs, ys = plot_style.series(read_metrics(os.path.join(run, "metrics.jsonl")),
                             split, metric)
    ys = [y * (1 if metric == "error" else scale) for y in ys]
    out.append((config, xs, ys,
                _wall(run, split, metric) if with_time else None))
  return out


def _wall(run: str, split: str, metric: str):
  """``{step: seconds since the run's start}`` from its event files."""
  paths = [p for p in sorted(glob.glob(os.path.join(
      run, "events.out.tfevents.*"))) if os.path.getsize(p)]
  try:
    start = min(tensorboard.start_time(p) for p in paths)
  except ValueError:  # no events written yet (a run just started)
    return None
  tag = f"{split}/{'accuracy' if metric == 'error' else metric}"
  stamps = {}
  for path in paths:
    for step, _, wall in tensorboard.read_scalars(path, wall_time=True).get(
        tag, []):
      stamps[step] = wall - start
  return stamps


def _panels(runs, panel_field):
  values = sorted({field(c, panel_field) for c, *_ in runs},
                  key=lambda v: (v is None, v))
  return values or [None]


def _by_method(runs):
  methods = {}
  for run in runs:
    methods.setdefault(run[0]["method"], []).append(run)
  return dict(sorted(methods.items(), key=lambda kv: plot_style.sort_key(kv[0])))


def plot_finals(runs, x_field, panel_field, ylabel):
  missing = [r for r in runs if field(r[0], x_field) is None]
  if missing:
    print(f"warning: {len(missing)} runs have no {x_field} in config.json "
          "and are left out", file=sys.stderr)
  runs = [r for r in runs if field(r[0], x_field) is not None]
  panels = _panels(runs, panel_field)
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4),
                           squeeze=False)
  for ax, panel in zip(axes[0], panels):
    chosen = [r for r in runs if field(r[0], panel_field) == panel]
    for method, group in _by_method(chosen).items():
      xs = sorted({field(c, x_field) for c, *_ in group})
      means, stds = [], []
      for x in xs:
        finals = [ys[-1] for c, _, ys, _ in group
                  if field(c, x_field) == x and ys]
        means.append(np.mean(finals))
        stds.append(np.std(finals, ddof=1) if len(finals) > 1 else 0.0)
      ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=method,
                  color=plot_style.method_color(method))
    ax.set(xlabel=x_field, ylabel=ylabel,
           title=f"{panel_field} = {panel}" if panel_field else "")
  return fig, axes[0]


def plot_curves(runs, panel_field, ylabel, with_time):
  panels = _panels(runs, panel_field)
  rows = 2 if with_time else 1
  fig, axes = plt.subplots(rows, len(panels),
                           figsize=(5 * len(panels), 3.8 * rows),
                           squeeze=False)
  for col, panel in enumerate(panels):
    chosen = [r for r in runs if field(r[0], panel_field) == panel]
    for method, group in _by_method(chosen).items():
      steps, mean, std = plot_style.mean_band(
          [(xs, ys) for _, xs, ys, _ in group])
      if not steps:
        continue
      color = plot_style.method_color(method)
      xaxes = [np.array(steps)]
      if with_time:
        walls = [w for *_, w in group]
        if all(w and all(s in w for s in steps) for w in walls):
          xaxes.append(np.mean([[w[s] for s in steps] for w in walls], 0))
        else:
          xaxes.append(None)
      for row, x in enumerate(xaxes):
        if x is None:
          continue
        plot_style.draw_curve(axes[row][col], x, mean, std, color=color,
                              label=f"{method} (n={len(group)})")
    title = f"{panel_field} = {panel}" if panel_field else ""
    axes[0][col].set(xlabel="step", ylabel=ylabel, title=title)
    if with_time:
      axes[1][col].set(xlabel="wall time (s)", ylabel=ylabel, title=title)
  return fig, axes.ravel()


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def main(argv):
  if len(argv) != 2:
    _fail("give one folder: python -m experiments.plot_seeds DIR "
          "--x_field=FIELD (or --curves) --out=seeds.png")
  if not os.path.isdir(argv[1]):
    _fail(f"{argv[1]} does not exist: give the --workdir of a sweep "
          "(experiments.sweep) or a folder of runs (experiments.main).")
  runs = load(argv[1], _METRIC.value, _SPLIT.value, _SCALE.value,
              _CURVES.value and _TIME.value)
  if not runs:
    _fail(f"no runs under {argv[1]}: a run folder holds config.json and "
          "metrics.jsonl (made by experiments.main or experiments.sweep).")
  ylabel = (f"{_SPLIT.value} error (%)" if _METRIC.value == "error"
            else f"{_SPLIT.value} {_METRIC.value}")
  if _CURVES.value:
    fig, axes = plot_curves(runs, _PANEL_FIELD.value, ylabel, _TIME.value)
  else:
    if not _X_FIELD.value:
      _fail("give --x_field=FIELD (a config field for the x axis, e.g. "
            "dni.update_prob), or --curves for mean curves over steps.")
    fig, axes = plot_finals(runs, _X_FIELD.value, _PANEL_FIELD.value, ylabel)
  for ax in axes:
    if _LOG.value:
      ax.set_yscale("log")
      plot_style.plain_log_ticks(
          ax, plot_style.percent if _METRIC.value == "error"
          else plot_style.plain)
  plot_style.finish(fig, axes, _OUT.value, _TITLE.value)
  print(f"wrote {_OUT.value} ({len(runs)} runs)")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
