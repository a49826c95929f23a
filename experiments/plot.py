"""Learning curves of several runs on one figure.

  python -m experiments.plot <workdir> [<workdir> ...] --out=curves.png

Each workdir is a run (it holds metrics.jsonl) or a folder of runs at any
depth: a comparison (one subfolder per method), a sweep, or folders of
those. Left: a training metric; right: an evaluation metric. By default
both follow the task family, read from the run's config.json:

- image and bit tasks: train loss | test error (%);
- Copy / Repeat Copy: train loss | curriculum length (train records);
- character corpora: train bpc | valid bpc;
- the two-network system: network A's test error | network B's test error
  against steps (the paper's Fig. 5b), e.g.

  python -m experiments.plot /tmp/two_networks --out=two_networks.png

``--train_metric``, ``--metric`` (``error`` = 100·(1 − accuracy), or any
metric name) and ``--split`` override them; ``--x=chars`` plots against the
characters seen (sequence tasks) instead of steps, e.g.

  python -m experiments.plot workdirs/ptb_T8 --x=chars --out=docs/ptb_char_bpc.png

``--x=wall`` plots a sequence run against wall time: its characters × the
seconds per character of its cell (``ptb_speed.cell_name``: ``dni_T5`` is
DNI at T = 5), measured side by side in one benchmark, not the time each run
took (runs that resume across sittings have no honest one). The seconds per
character come from ``--seconds_per_char=bptt_T8=1.2e-6,dni_T5=8e-7`` or,
where that is empty, from the nearest ``seconds_per_char.json`` (``{cell:
s/char}``) in the run's folder or a folder above it, which ``reproduce
--table=ptb_speed`` writes beside its cells, e.g.

  python -m experiments.plot <workdir>/ptb_speed --x=wall --out=ptb_wall.png

A sweep's folder (``python -m experiments.sweep``) works too: runs whose
configs differ only in the seed are drawn as one mean curve with a shaded
± one-std band (over the steps every seed logged), labelled by its group
and the number of seeds (``cdni (n=3)``), e.g.

  python -m experiments.plot /tmp/copy3 --out=copy_seeds.png

A curve is labelled by its method, read from the run's config.json, not by
its folder. Curves of one method are told apart by the config fields in
which they differ (``cdni, opt.learning_rate=0.003``), or else by their
folders (``dni [copy_T3]``), and drawn in different line styles. Each
method keeps its colour in every figure, whatever its folder is called
(backprop/bptt blue, dni orange, cdni/dni_aux green, ...;
``plot_style.method_color``, shared with ``experiments.plot_seeds``).

Y axes are logarithmic where the metric is a loss, an error or bpc, with
labelled ticks whatever their span. A series with no points is named in a
warning, and so are runs whose ``log_every`` (or ``eval_every``) leaves
fewer than five points over their ``num_steps`` (a 200-step run with
``log_every=1000`` logs its training metrics once, at the end), with the
``--config.log_every`` that would give a curve; a series of one point is
drawn as a dot. Errors (no folder given, a folder that does not exist, one
with no runs; for ``--x=wall``, a run that is not a sequence run or whose
cell has no seconds per character) are one paragraph starting with ``error:`` and a non-zero exit
status. (``experiments.plot_seeds`` draws final values as error bars
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
from experiments import cli  # noqa: E402
from experiments import plot_style  # noqa: E402
from experiments import ptb_speed  # noqa: E402
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
_X = flags.DEFINE_enum(
    "x", "step", ["step", "chars", "wall"], "Horizontal axis: the step, the "
    "characters seen, or wall time = characters × the seconds per character "
    "of the run's cell (sequence runs).")
_SECONDS_PER_CHAR = flags.DEFINE_string(
    "seconds_per_char", "", "--x=wall: each cell's seconds per character, "
    "e.g. bptt_T8=1.2e-6,dni_T5=8e-7 (cell: <method>_T<unroll>); empty: "
    "read from the nearest seconds_per_char.json at or above each run.")

_COPY_TASKS = ("copy", "repeat_copy")
_CORPORA = ("ptb_char", "tiny_shakespeare")
# Fewer points than this over a whole run is not a curve: say so.
_FEW_POINTS = 5
_RUN_HELP = ("give a run's --workdir (a folder with metrics.jsonl, made by "
             "experiments.main) or a folder of runs (a comparison's or a "
             "sweep's --workdir)")


class PlotError(Exception):
  """A mistake in the command line, as one paragraph for the user."""


def default_panels(data_name: str | None) -> tuple[str, str, str]:
  """``(train metric, right metric, right split)`` of a task family."""
  if data_name in _COPY_TASKS:
    return "loss", "length", "train"
  if data_name in _CORPORA:
    return "bpc", "bpc", "valid"
  return "loss", "error", "test"


def _is_run(folder: str) -> bool:
  return os.path.exists(os.path.join(folder, "metrics.jsonl"))


def _runs_under(path: str) -> list[str]:
  """Run folders under ``path`` at any depth (a run holds no other runs)."""
  found = []
  for folder, dirs, _ in os.walk(path):
    dirs.sort()
    if folder != path and _is_run(folder):
      found.append(os.path.relpath(folder, path))
      dirs[:] = []
  return found


def find_runs(paths: list[str]) -> dict[str, str]:
  """``{label: run folder}`` for runs and folders of runs (at any depth).

  Raises:
    PlotError: a path that does not exist or holds no run.
  """
  runs = {}
  for path in paths:
    path = os.path.normpath(path)
    if not os.path.exists(path):
      raise PlotError(f"{path} does not exist: {_RUN_HELP}.")
    if _is_run(path):
      runs[os.path.basename(path)] = path
      continue
    subruns = _runs_under(path) if os.path.isdir(path) else []
    if not subruns:
      raise PlotError(f"no runs in {path}: no metrics.jsonl in it or in any "
                      f"folder under it; {_RUN_HELP}.")
    for d in subruns:
      label = d.replace(os.sep, "/")
      if len(paths) > 1:
        label = f"{os.path.basename(path)}/{label}"
      runs[label] = os.path.join(path, d)
  return dict(sorted(runs.items(), key=lambda item: sort_key(item[0])))


def _seedless(label: str) -> str:
  """A member's label without its ``seed=N`` part (``seed=0`` → ``seeds``)."""
  return re.sub(r"(^|[,/])seed=\d+(?=$|[,/])", "", label).strip(",/") or "seeds"


def _config(run_dir: str) -> dict | None:
  """The run's flattened config.json, or ``None`` where it is unreadable."""
  try:
    return results.flat_config(run_dir)
  except (OSError, ValueError):
    return None


def group_seeds(runs: dict[str, str]) -> dict[str, list[str]]:
  """``{label: [run folders]}``: runs whose labels differ only in their
  ``seed=N`` part and whose configs agree on every field but the seed (and
  what may change on resume) form one group, labelled without the seed.
  Any other run, or one without a readable config.json, stays on its own."""
  groups, label_of = {}, {}
  for label, run_dir in runs.items():
    config = _config(run_dir)
    if config is None:
      key = (label, run_dir)
    else:
      key = (_seedless(label), json.dumps(
          {k: v for k, v in config.items()
           if k not in results.IGNORED_FIELDS}, sort_keys=True))
    if key not in label_of:
      label_of[key] = key[0] if key[0] not in groups else label
    groups.setdefault(label_of[key], []).append(run_dir)
  return groups


def _folder_part(label: str, method: str) -> str:
  """A group's folder label without what names its method (``copy_T3/dni``
  → ``copy_T3``; ``method=dni,lr=1`` → ``lr=1``)."""
  rest = re.sub(rf"(^|[,/]){re.escape(method)}$", "", label)
  rest = re.sub(rf"(^|,)method={re.escape(method)}(?=$|[,/])", "", rest)
  return rest.strip(",/") or label


def legend_labels(groups: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
  """``{group: (legend label, method)}``, in legend order.

  A group is named by its method, from its config.json (from its folder
  label where that is unreadable). Groups of one method add the config
  fields in which they differ (at most three), or else their folder
  labels; a group of several seeds adds ``(n=K)``.
  """
  configs = {key: _config(dirs[0]) for key, dirs in groups.items()}
  methods = {key: str((c or {}).get("method") or plot_style.method_of(key))
             for key, c in configs.items()}
  by_method = {}
  for key in groups:
    by_method.setdefault(methods[key], []).append(key)
  names = {}
  for method, keys in by_method.items():
    known = [configs[k] for k in keys if configs[k] is not None]
    fields = [f for f in results.varying_fields(known) if f != "method"]
    for k in keys:
      described = [f"{f}={configs[k][f]}" for f in fields
                   if configs[k] is not None and f in configs[k]]
      names[k] = ", ".join([method] + (described if len(fields) <= 3
                                       else []))
    shared = [k for k in keys if [names[j] for j in keys].count(names[k]) > 1]
    for k in shared:  # the folder tells them apart
      names[k] = f"{names[k]} [{_folder_part(k, method)}]"
  labels = {key: (names[key] if len(dirs) == 1 else
                  f"{names[key]} (n={len(dirs)})", methods[key])
            for key, dirs in groups.items()}
  rank = lambda m: (plot_style.METHOD_ORDER.index(m)
                    if m in plot_style.METHOD_ORDER else 99, m)
  return dict(sorted(labels.items(),
                     key=lambda kv: (rank(kv[1][1]), kv[1][0])))


def data_name(run_dir: str) -> str | None:
  return (_config(run_dir) or {}).get("data.name")


def _is_two_networks(run_dir: str) -> bool:
  return "two_networks.T" in (_config(run_dir) or {})


# Wall-time units: (label, seconds), the first whose span the longest run
# reaches twice.
_WALL_UNITS = (("h", 3600.0), ("min", 60.0), ("s", 1.0))


def parse_seconds_per_char(text: str) -> dict[str, float]:
  """``{cell: s/char}`` of ``--seconds_per_char=bptt_T8=1.2e-6,...``.

  Raises:
    PlotError: a part that is not ``cell=<positive number>``.
  """
  out = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    cell, _, value = part.partition("=")
    try:
      seconds = float(value)
    except ValueError:
      seconds = None
    if not cell.strip() or seconds is None or not seconds > 0:
      raise PlotError(
          f"--seconds_per_char={text}: {part!r} is not cell=<seconds per "
          "character>; give e.g. --seconds_per_char=bptt_T8=1.2e-6,"
          "dni_T5=8e-7 (cells named <method>_T<unroll>).")
    out[cell.strip()] = seconds
  return out


def _seconds_per_char_file(run_dir: str) -> str | None:
  """The nearest ``seconds_per_char.json`` at or above ``run_dir``."""
  folder = os.path.abspath(run_dir)
  while True:
    path = os.path.join(folder, ptb_speed.SECONDS_PER_CHAR_FILE)
    if os.path.isfile(path):
      return path
    parent = os.path.dirname(folder)
    if parent == folder:
      return None
    folder = parent


def _read_seconds_per_char(path: str) -> dict[str, float]:
  try:
    with open(path) as f:
      table = json.load(f)
  except (OSError, ValueError) as e:
    reason = getattr(e, "strerror", None) or e
    raise PlotError(f"could not read {path} ({reason}): it should map cells "
                    'to seconds per character, e.g. {"bptt_T8": 1.2e-06}; '
                    "fix it, or give --seconds_per_char=bptt_T8=1.2e-6,..."
                    ) from None
  if not isinstance(table, dict) or not all(
      isinstance(v, (int, float)) and v > 0 for v in table.values()):
    raise PlotError(f"{path} should map cells to positive seconds per "
                    'character, e.g. {"bptt_T8": 1.2e-06}; fix it, or give '
                    "--seconds_per_char=bptt_T8=1.2e-6,...")
  return {str(k): float(v) for k, v in table.items()}


def wall_cell(run_dir: str, records: list[dict]) -> str:
  """The cell (``ptb_speed.cell_name``) of a sequence run.

  Raises:
    PlotError: not a sequence run with a character count.
  """
  config = _config(run_dir) or {}
  if ("method" not in config or not isinstance(config.get("unroll"), int) or
      not any(r.get("chars") is not None for r in records)):
    raise PlotError(
        f"--x=wall plots against characters × the seconds per character of "
        f"a run's cell, which only sequence runs have (a config.json with "
        f"method and unroll, records with chars); the run in {run_dir} is "
        f"not one: use --x=step (or --x=chars for sequence runs).")
  return ptb_speed.cell_name(config["method"], config["unroll"])


def seconds_per_char_of(cell: str, run_dir: str, flag: str = "") -> float:
  """The cell's seconds per character: from ``flag``
  (``--seconds_per_char``) or, where it is empty, from the nearest
  ``seconds_per_char.json`` at or above ``run_dir``.

  Raises:
    PlotError: neither has the cell (or the flag or the file is malformed).
  """
  if flag:
    table, where = parse_seconds_per_char(flag), (
        f"--seconds_per_char has no {cell}")
  else:
    path = _seconds_per_char_file(run_dir)
    table = _read_seconds_per_char(path) if path else {}
    where = (f"{path} has no {cell}" if path else
             f"--seconds_per_char is empty and no "
             f"{ptb_speed.SECONDS_PER_CHAR_FILE} is in {run_dir} or a "
             f"folder above it")
  if cell not in table:
    known = f" (it has {', '.join(sorted(table))})" if table else ""
    raise PlotError(
        f"no seconds per character for cell {cell} (the run in "
        f"{run_dir}): "
        f"{where}{known}. Give it as --seconds_per_char={cell}=<seconds>"
        f"[,<cell>=<seconds>...], or in {ptb_speed.SECONDS_PER_CHAR_FILE} "
        f'({{"{cell}": <seconds>}}) in the runs\' folder, where reproduce '
        "--table=ptb_speed writes the ones it measures.")
  return table[cell]


def wall_unit(longest_seconds: float) -> tuple[str, float]:
  """``(label, seconds)`` of the unit for wall times up to ``longest``."""
  for unit in _WALL_UNITS:
    if longest_seconds >= 2 * unit[1]:
      return unit
  return _WALL_UNITS[-1]


def with_wall(records: list[dict], sec_per_char: float,
              unit_seconds: float = 1.0) -> list[dict]:
  """``records``, each with ``wall`` = its ``chars`` × ``sec_per_char`` in
  units of ``unit_seconds`` (where it has ``chars``)."""
  return [{**r, "wall": r["chars"] * sec_per_char / unit_seconds}
          if r.get("chars") is not None else r for r in records]


def _pick(flag: str, default: str) -> str:
  return default if flag == "auto" else flag


def _plot(ax, serieses, label, what, color, linestyle) -> None:
  """One run's curve, or the mean ± std band of a group of seeds."""
  serieses = [s for s in serieses if s[0]]
  if not serieses:
    print(f"warning: run {label!r} has no {what} records; its curve is empty "
          "(choose another --metric/--split?)", file=sys.stderr)
    return
  if len(serieses) == 1:
    xs, ys, std = *serieses[0], None
  else:
    xs, ys, std = mean_band(serieses)
  plot_style.draw_curve(ax, xs, ys, std, color=color, linestyle=linestyle,
                        label=label)


def _cadence_warning(sparse: dict[str, tuple[dict, dict]]) -> None:
  """One warning for the runs whose cadence leaves them too few points:
  ``{label: ({"log_every" or "eval_every": points}, config)}``."""
  if not sparse:
    return
  what = {"log_every": "training", "eval_every": "evaluation"}
  fields = [f for f in what if any(f in p for p, _ in sparse.values())]
  logged, advice = [], []
  for field in fields:
    counts = sorted({p[field] for p, _ in sparse.values() if field in p})
    count = "/".join(map(str, counts))
    every = "/".join(map(str, sorted(
        {c[field] for p, c in sparse.values() if field in p})))
    logged.append(f"{count} {what[field]} record"
                  f"{'' if counts == [1] else 's'} ({field}={every})")
    steps = min(c["num_steps"] for p, c in sparse.values() if field in p)
    advice.append(f"--config.{field}="
                  f"{max(1, steps // (20 if field == 'log_every' else 10))}")
  steps = "/".join(map(str, sorted({c["num_steps"]
                                    for _, c in sparse.values()})))
  names = ", ".join(repr(label) for label in sparse)
  print(f"warning: too few points for a curve: {names} each logged "
        f"{' and '.join(logged)} in {steps} steps. For a curve, train again "
        f"into a new --workdir with {' '.join(advice)}.", file=sys.stderr)


def draw(paths: list[str], train_metric: str = "auto", metric: str = "auto",
         split: str = "auto", x: str = "step", seconds_per_char: str = ""):
  """The figure of the runs under ``paths``: ``(fig, (left, right axes),
  {group: [run folders]})``. ``x="wall"`` plots against characters × the
  seconds per character of each run's cell (``seconds_per_char``: the
  ``--seconds_per_char`` text; empty: the nearest seconds_per_char.json).

  Raises:
    PlotError: no paths, or a path that does not exist or holds no run; for
      ``x="wall"``, a run that is not a sequence run or whose cell has no
      seconds per character.
  """
  if not paths:
    raise PlotError("give one or more run folders, e.g. python -m "
                    "experiments.plot /tmp/dni_jax/binary_addition "
                    "--out=curves.png")
  runs = find_runs(paths)
  first = next(iter(runs.values()))
  two_networks = _is_two_networks(first)
  default = (("a_error", "b_error", "test") if two_networks
             else default_panels(data_name(first)))
  # The left panel reads training records, or for the two-network system
  # network A's evaluation.
  left_split = "test" if two_networks and train_metric == "auto" else "train"
  train_metric = _pick(train_metric, default[0])
  metric, split = _pick(metric, default[1]), _pick(split, default[2])
  groups = group_seeds(runs)
  labels = legend_labels(groups)
  read = {d: read_metrics(os.path.join(d, "metrics.jsonl"))
          for dirs in groups.values() for d in dirs}
  if x == "wall":  # every run's s/char first: an error draws nothing
    spc = {}
    for key in labels:
      for d in groups[key]:
        spc[d] = seconds_per_char_of(wall_cell(d, read[d]), d,
                                     seconds_per_char)
    unit, unit_seconds = wall_unit(max(
        (r["chars"] * spc[d] for d, records in read.items()
         for r in records if r.get("chars") is not None), default=0.0))
    read = {d: with_wall(records, spc[d], unit_seconds)
            for d, records in read.items()}
  fig, (ax_train, ax_eval) = plt.subplots(1, 2, figsize=(11, 4.2))
  sparse, styles = {}, {}
  for key, (label, method) in labels.items():
    run_dirs = groups[key]
    styles[method] = styles.get(method, -1) + 1
    linestyle = plot_style.LINESTYLES[styles[method] % len(
        plot_style.LINESTYLES)]
    color = method_color(method)
    records = [read[d] for d in run_dirs]
    config = _config(run_dirs[0]) or {}
    panels = ((ax_train, left_split, train_metric), (ax_eval, split, metric))
    for ax, records_split, name in panels:
      serieses = [series(r, records_split, name, x) for r in records]
      _plot(ax, serieses, label, f"{records_split} {name}", color, linestyle)
      # A cadence that leaves the whole run under _FEW_POINTS points (not a
      # run still on its way to them): the warning names the field to set.
      field = "log_every" if records_split == "train" else "eval_every"
      points = max(len(xs) for xs, _ in serieses)
      if (0 < points < _FEW_POINTS and
          isinstance(config.get(field), int) and config[field] > 0 and
          isinstance(config.get("num_steps"), int) and
          config["num_steps"] // config[field] < _FEW_POINTS):
        sparse.setdefault(label, ({}, config))[0][field] = points
  _cadence_warning(sparse)
  if x == "wall":
    xlabel = f"wall time ({unit}), from the measured s/char"
  else:
    xlabel = "characters seen" if x == "chars" else "step"
  left = "training" if left_split == "train" else left_split
  ax_train.set(xlabel=xlabel, ylabel=f"{left_split} {train_metric}",
               yscale="log", title=f"{left} {train_metric}")
  ylabel = f"{split} error (%)" if metric == "error" else f"{split} {metric}"
  ax_eval.set(xlabel=xlabel, ylabel=ylabel, title=ylabel,
              yscale="log" if metric in ("error", "loss", "bpc") or
              metric.endswith("_error") else "linear")
  plot_style.plain_log_ticks(ax_train, plain)
  if ax_eval.get_yscale() == "log":
    plot_style.plain_log_ticks(ax_eval, percent if metric == "error" else plain)
  return fig, (ax_train, ax_eval), groups


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def main(argv):
  out = _OUT.value
  folder = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(folder):
    _fail(f"--out={out}: the folder {folder} does not exist; create it or "
          "choose another --out.")
  if _SECONDS_PER_CHAR.value and _X.value != "wall":
    _fail(f"--seconds_per_char gives the seconds per character of --x=wall, "
          f"not of --x={_X.value}; add --x=wall or drop --seconds_per_char.")
  try:
    fig, axes, groups = draw(argv[1:], _TRAIN_METRIC.value, _METRIC.value,
                             _SPLIT.value, _X.value, _SECONDS_PER_CHAR.value)
  except PlotError as e:
    _fail(str(e))
  try:
    plot_style.finish(fig, axes, out, _TITLE.value)
  except OSError as e:
    _fail(f"--out={out}: could not write the figure ({e.strerror or e}).")
  runs = sum(map(len, groups.values()))
  print(f"wrote {out} ({runs} runs, {len(groups)} curves)")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
