"""Seeds as error bars and bands: runs grouped by their configs, one figure.

  # final test error against a field, a panel per value of another:
  python -m experiments.plot_seeds DIR --x_field=dni.update_prob \\
      --panel_field=model.depth --metric=error --out=docs/stochastic.png
  # mean curves over seeds with a shaded band (± one std), against steps or
  # wall time:
  python -m experiments.plot_seeds DIR --curves --panel_field=two_networks.T \\
      --metric=b_error --time --out=two_networks.png
  # test error against the update probability at several points of training
  # (the paper's Fig. 7, seeds as error bars), a panel per step:
  python -m experiments.plot_seeds DIR --x_field=dni.update_prob \\
      --at_steps=4000,12000,40000 --metric=error --out=stochastic_steps.png

Every run under ``DIR`` (``config.json`` + ``metrics.jsonl``) counts; runs
whose configs agree on ``method`` and the named fields are the seeds of one
point or curve. With ``--at_steps`` every seed of every point needs a record
at each step listed (else the error names the steps they have); the x axis
is logarithmic when its values are positive and span more than a factor of
10, and linear with the points unjoined for a population of more than 8
values (``configs/update_population.py``). ``error`` is ``100·(1 − accuracy)``; ``--scale`` multiplies any other
metric. A method has the same colour as in ``experiments.plot``
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
from matplotlib import ticker  # noqa: E402  pylint: disable=g-import-not-at-top
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
_SPLIT = flags.DEFINE_string(
    "split", None, "Records to read; unset: the first of test, valid, "
    "train that the runs log (Copy and Repeat Copy: train).")
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
_AT_STEPS = flags.DEFINE_list("at_steps", [], "With --x_field: one panel per "
                              "step listed (e.g. 4000,12000,40000), the "
                              "metric at that step instead of the final "
                              "value.")


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


def _with_x(runs, x_field):
  """The runs that have ``x_field`` (a warning counts the others)."""
  missing = [r for r in runs if field(r[0], x_field) is None]
  if missing:
    print(f"warning: {len(missing)} runs have no {x_field} in config.json "
          "and are left out", file=sys.stderr)
  return [r for r in runs if field(r[0], x_field) is not None]


def plot_finals(runs, x_field, panel_field, ylabel):
  runs = _with_x(runs, x_field)
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


def _steps_text(steps) -> str:
  """``500 to 40000, every 500``, or the steps themselves if few or uneven."""
  steps = sorted(steps)
  if not steps:
    return "none"
  gaps = {b - a for a, b in zip(steps, steps[1:])}
  if len(steps) > 4 and len(gaps) == 1:
    return f"{steps[0]} to {steps[-1]}, every {gaps.pop()}"
  if len(steps) <= 8:
    return ", ".join(map(str, steps))
  return (", ".join(map(str, steps[:3])) + ", …, " +
          ", ".join(map(str, steps[-2:])) + f" ({len(steps)} steps)")


class MissingStep(ValueError):
  """A group of seeds has no record at an ``--at_steps`` step."""


def points_at_steps(runs, x_field, steps, what="metric"):
  """``{step: {method: (xs, means, stds, ns)}}``: per method and x value, the
  mean and std (n − 1; 0 for one seed) over seeds of the value recorded at
  each step. Runs without ``x_field`` are left out (``plot_finals``' rule).

  Raises ``MissingStep`` (one paragraph, ``what`` names the records) if a
  group (method, x value) does not have a record at a step in all of its
  seeds."""
  runs = _with_x(runs, x_field)
  out = {step: {} for step in steps}
  for method, group in _by_method(runs).items():
    xs = sorted({field(c, x_field) for c, *_ in group})
    seeds = {x: [dict(zip(steps_, ys)) for c, steps_, ys, _ in group
                 if field(c, x_field) == x] for x in xs}
    for step in steps:
      means, stds, ns = [], [], []
      for x in xs:
        at = [s[step] for s in seeds[x] if step in s]
        if len(at) < len(seeds[x]):
          common = set.intersection(*(set(s) for s in seeds[x]))
          n = len(seeds[x])
          seeds_text = (f"{n} seeds, {n - len(at)} without it" if at
                        else f"{n} seed" + ("s" if n > 1 else ""))
          raise MissingStep(
              f"no {what} record at step {step} for method={method}, "
              f"{x_field}={x} ({seeds_text}): the steps "
              f"{'it has' if n == 1 else 'all its seeds have'} are "
              f"{_steps_text(common)}. Give --at_steps among those (a run "
              "still training has its later steps when it gets there).")
        means.append(float(np.mean(at)))
        stds.append(float(np.std(at, ddof=1)) if len(at) > 1 else 0.0)
        ns.append(len(at))
      out[step][method] = (xs, means, stds, ns)
  return out


def _numbers(values) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool)
             for v in values)


# More distinct values than this on the x axis make a population (the
# paper's Fig. 7: p drawn uniformly): points only, on a linear axis.
_POPULATION = 8


def plot_at_steps(runs, x_field, steps, ylabel, what="metric"):
  """One panel per step: ``points_at_steps`` as error bars against
  ``x_field``, a log x axis if its values are positive and span more than a
  factor of 10 (p = 0.05 … 1). A population (more than ``_POPULATION``
  values, e.g. ``configs/update_population.py``) is drawn as points on a
  linear axis, unjoined."""
  points = points_at_steps(runs, x_field, steps, what)
  fig, axes = plt.subplots(1, len(steps), figsize=(5 * len(steps), 4),
                           squeeze=False, sharey=True)
  xs_all = {x for by in points.values() for xs, *_ in by.values()
            for x in xs}
  population = len(xs_all) > _POPULATION
  log_x = (bool(xs_all) and _numbers(xs_all) and min(xs_all) > 0
           and max(xs_all) > 10 * min(xs_all) and not population)
  for ax, step in zip(axes[0], steps):
    for method, (xs, means, stds, _) in points[step].items():
      ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=method,
                  color=plot_style.method_color(method),
                  linestyle="none" if population else "-")
    if log_x:
      ax.set_xscale("log")
      ax.set_xticks(sorted(xs_all))
      ax.xaxis.set_major_formatter(ticker.FuncFormatter(plot_style.plain))
      ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set(xlabel=x_field, title=f"step {step}")
  axes[0][0].set(ylabel=ylabel)
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


def _at_steps(values) -> list[int]:
  """``--at_steps``' steps, in the order given, each once."""
  steps = []
  for value in values:
    try:
      step = int(value)
    except ValueError:
      _fail(f"--at_steps takes steps separated by commas (e.g. "
            f"--at_steps=4000,12000,40000); {value!r} is not a step.")
    if step not in steps:
      steps.append(step)
  return steps


def main(argv):
  if len(argv) != 2:
    _fail("give one folder: python -m experiments.plot_seeds DIR "
          "--x_field=FIELD (or --curves) --out=seeds.png")
  steps = _at_steps(_AT_STEPS.value)
  if steps:
    drop = [f for f, given in (("--curves", _CURVES.value),
                               ("--panel_field", _PANEL_FIELD.value)) if given]
    if drop:
      _fail(f"--at_steps draws one panel per step against --x_field; drop "
            f"{' and '.join(drop)} (--curves draws whole curves over steps, "
            "--panel_field panels of its own).")
    if not _X_FIELD.value:
      _fail("--at_steps needs --x_field=FIELD, the config field on the x "
            "axis (e.g. dni.update_prob).")
  if not os.path.isdir(argv[1]):
    _fail(f"{argv[1]} does not exist: give the --workdir of a sweep "
          "(experiments.sweep) or a folder of runs (experiments.main).")
  split = _SPLIT.value or results.default_split(results.find_runs(argv[1]))
  runs = load(argv[1], _METRIC.value, split, _SCALE.value,
              _CURVES.value and _TIME.value)
  if not runs:
    _fail(f"no runs under {argv[1]}: a run folder holds config.json and "
          "metrics.jsonl (made by experiments.main or experiments.sweep).")
  ylabel = (f"{split} error (%)" if _METRIC.value == "error"
            else f"{split} {_METRIC.value}")
  if _CURVES.value:
    fig, axes = plot_curves(runs, _PANEL_FIELD.value, ylabel, _TIME.value)
  else:
    if not _X_FIELD.value:
      _fail("give --x_field=FIELD (a config field for the x axis, e.g. "
            "dni.update_prob), or --curves for mean curves over steps.")
    if steps:
      try:
        fig, axes = plot_at_steps(runs, _X_FIELD.value, steps, ylabel,
                                  f"{split} {_METRIC.value}")
      except MissingStep as e:
        _fail(str(e))
    else:
      fig, axes = plot_finals(runs, _X_FIELD.value, _PANEL_FIELD.value,
                              ylabel)
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
