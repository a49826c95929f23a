"""experiments.plot: the right metric per task family, stable colours, ticks,
labels by method, short runs and one-paragraph errors."""

import json
import os
import subprocess
import sys

from matplotlib import colors
import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments import plot
from experiments import plot_style

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(folder, data_name, records, **fields):
  os.makedirs(folder)
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump({"data": {"name": data_name}, **fields}, f)
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)


def _losses(values, split="train", key="loss", every=10):
  return [{"step": every * (i + 1), "split": split, key: v}
          for i, v in enumerate(values)]


def _visible_tick_labels(fig, ax):
  fig.canvas.draw()
  lo, hi = sorted(ax.get_ylim())
  return [t.get_text() for t in ax.yaxis.get_ticklabels(which="both")
          if t.get_text() and lo <= t.get_position()[1] <= hi]


def _legend(ax):
  """``{legend label: colour}`` of the panel's curves."""
  handles, labels = ax.get_legend_handles_labels()
  out = {}
  for handle, label in zip(handles, labels):
    line = handle.lines[0] if hasattr(handle, "lines") else handle
    out[label] = colors.to_hex(line.get_color())
  return out


@pytest.fixture(autouse=True)
def _close_figures():
  yield
  plt.close("all")


def test_panels_follow_the_task_family():
  assert plot.default_panels("mnist") == ("loss", "error", "test")
  assert plot.default_panels("copy") == ("loss", "length", "train")
  assert plot.default_panels("ptb_char") == ("bpc", "bpc", "valid")


def test_colours_are_fixed_per_method_and_legend_order_stable():
  assert plot.method_color("dni") == plot.method_color("workdirs/x/dni")
  assert plot.method_color("dni") == plot.method_color("method=dni,seed=0")
  assert plot.method_color("dni_aux") == plot.method_color("copy_T2_dni_aux")
  assert plot.method_color("cdni_unlocked") == plot.method_color(
      "depth_3_cdni_unlocked") != plot.method_color("dni_unlocked")
  assert len({plot.method_color(m) for m in ("backprop", "dni", "cdni")}) == 3
  labels = ["cdni", "dni", "backprop"]
  assert sorted(labels, key=plot.sort_key) == ["backprop", "dni", "cdni"]


def test_percent_ticks_are_plain():
  assert [plot.percent(v) for v in (40.0, 2.0, 0.5)] == ["40%", "2%", "0.5%"]


def test_series_of_error_and_of_a_missing_metric():
  records = [{"step": 2, "split": "test", "accuracy": 0.9},
             {"step": 1, "split": "train", "loss": 1.0}]
  xs, ys = plot.series(records, "test", "error")
  assert xs == [2] and abs(ys[0] - 10.0) < 1e-9
  assert plot.series(records, "valid", "bpc") == ([], [])


def test_plot_copy_and_mnist_runs_with_a_warning_for_an_empty_series(
    tmp_path):
  _run(tmp_path / "copy" / "bptt", "copy",
       [{"step": 5, "split": "train", "loss": 0.5, "length": 2}])
  _run(tmp_path / "copy" / "dni", "copy",
       [{"step": 5, "split": "train", "loss": 0.4, "length": 3}])
  _run(tmp_path / "mnist", "mnist",
       [{"step": 5, "split": "train", "loss": 0.5}])  # no test records yet
  out = tmp_path / "copy.png"
  done = subprocess.run(
      [sys.executable, "-m", "experiments.plot", str(tmp_path / "copy"),
       f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert os.path.getsize(out) > 0 and "warning" not in done.stderr
  done = subprocess.run(
      [sys.executable, "-m", "experiments.plot", str(tmp_path / "mnist"),
       f"--out={tmp_path / 'mnist.png'}"], cwd=ROOT, capture_output=True,
      text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "warning: run 'mnist' has no test error records" in done.stderr


def test_a_sweeps_seeds_are_one_band(tmp_path):
  """Seeds of one config become one group (mean, std over the common
  steps); another method, or the same config under another name, does not."""
  def run(name, method, seed, losses):
    folder = tmp_path / "sweep" / name
    os.makedirs(folder)
    with open(folder / "config.json", "w") as f:
      json.dump({"data": {"name": "mnist"}, "method": method, "seed": seed,
                 "num_steps": 10}, f)
    with open(folder / "metrics.jsonl", "w") as f:
      f.writelines(json.dumps({"step": s, "split": "train", "loss": v}) + "\n"
                   for s, v in losses)
  run("method=dni,seed=0", "dni", 0, [(1, 1.0), (2, 0.5)])
  run("method=dni,seed=1", "dni", 1, [(1, 3.0), (2, 1.5), (3, 1.0)])
  run("method=cdni,seed=0", "cdni", 0, [(1, 2.0)])
  run("repeat", "dni", 0, [(1, 1.0)])  # same config as seed 0, own name
  groups = plot.group_seeds(plot.find_runs([str(tmp_path / "sweep")]))
  assert {k: len(v) for k, v in groups.items()} == {
      "method=dni": 2, "method=cdni": 1, "repeat": 1}
  xs, mean, std = plot.mean_band([([1, 2], [1.0, 0.5]),
                                  ([1, 2, 3], [3.0, 1.5, 1.0])])
  assert xs == [1, 2]
  np.testing.assert_allclose(mean, [2.0, 1.0])
  np.testing.assert_allclose(std, [np.sqrt(2.0), np.sqrt(0.5)])
  assert plot._seedless("a/seed=3") == "a"  # pylint: disable=protected-access
  assert plot._seedless("seed=0") == "seeds"  # pylint: disable=protected-access
  out = tmp_path / "bands.png"
  done = subprocess.run(
      [sys.executable, "-m", "experiments.plot", str(tmp_path / "sweep"),
       f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "(4 runs, 3 curves)" in done.stdout and os.path.getsize(out) > 0


@pytest.mark.parametrize("lo,hi", [(0.3, 0.6), (0.31, 0.45), (1.1, 1.8),
                                   (49.9, 50.3)])
def test_a_log_axis_under_a_decade_has_tick_labels(tmp_path, lo, hi):
  """A Copy run's loss over less than a decade (and a test error near 50%)
  still reads: at least two labelled ticks in view, plain numbers."""
  values = list(np.linspace(hi, lo, 6))
  _run(tmp_path / "copy", "copy", _losses(values))
  _run(tmp_path / "mnist", "mnist", _losses(values) +
       _losses([1 - v / 100 for v in values], "test", "accuracy"))
  fig, (ax_train, _), _ = plot.draw([str(tmp_path / "copy")])
  labels = _visible_tick_labels(fig, ax_train)
  assert len(labels) >= 2, labels
  assert all(float(t) > 0 for t in labels)
  fig, (_, ax_error), _ = plot.draw([str(tmp_path / "mnist")])
  assert ax_error.get_yscale() == "log"
  labels = _visible_tick_labels(fig, ax_error)
  assert len(labels) >= 2 and all(t.endswith("%") for t in labels), labels


def test_a_log_axis_over_decades_keeps_plain_1_2_5_ticks():
  fig, ax = plt.subplots()
  ax.plot([1, 2], [0.01, 3])
  ax.set_yscale("log")
  plot_style.plain_log_ticks(ax, plot.plain)
  labels = _visible_tick_labels(fig, ax)
  assert {"0.01", "0.1", "0.2", "0.5", "1", "2"} <= set(labels), labels
  assert not any("10^" in t or "e" in t for t in labels)


def test_a_run_is_labelled_by_its_method_not_its_folder(tmp_path):
  _run(tmp_path / "my_run", "mnist", _losses([2, 1]), method="cdni")
  _, (ax, _), _ = plot.draw([str(tmp_path / "my_run")])
  assert list(_legend(ax)) == ["cdni"]
  # Two workdirs of other methods: the method alone.
  _run(tmp_path / "a", "mnist", _losses([2, 1]), method="dni")
  _run(tmp_path / "b", "mnist", _losses([2, 1]), method="backprop")
  _, (ax, _), _ = plot.draw([str(tmp_path / "a"), str(tmp_path / "b")])
  assert list(_legend(ax)) == ["backprop", "dni"]
  # Two runs of one method: the field that differs tells them apart, or
  # else the folder.
  _run(tmp_path / "lr" / "x", "mnist", _losses([2, 1]), method="dni",
       opt={"learning_rate": 0.1})
  _run(tmp_path / "lr" / "y", "mnist", _losses([2, 1]), method="dni",
       opt={"learning_rate": 0.2})
  _, (ax, _), _ = plot.draw([str(tmp_path / "lr")])
  assert list(_legend(ax)) == ["dni, opt.learning_rate=0.1",
                               "dni, opt.learning_rate=0.2"]
  _, (ax, _), _ = plot.draw([str(tmp_path / "a"), str(tmp_path / "my_run"),
                             str(tmp_path / "lr" / "x")])
  assert list(_legend(ax)) == ["dni [a]", "dni [x]", "cdni"]
  lines = {line.get_label(): line for line in ax.get_lines()}
  assert lines["dni [a]"].get_linestyle() != lines["dni [x]"].get_linestyle()


def _sweep_member(folder, method, seed, losses, **fields):
  _run(folder, "binary_addition", _losses(losses), method=method, seed=seed,
       num_steps=20, **fields)


def test_a_sweeps_band_names_its_group_and_n(tmp_path):
  """``experiments.sweep --seeds=2 --config.method=cdni`` names its members
  seed=0 and seed=1: the band is still cdni's."""
  for seed in (0, 1):
    _sweep_member(tmp_path / "cdni" / f"seed={seed}", "cdni", seed,
                  [2 + seed, 1])
    _sweep_member(tmp_path / "dni" / f"seed={seed}", "dni", seed,
                  [2 + seed, 1.5], opt={"learning_rate": 0.01})
    _sweep_member(tmp_path / "dni_lr" / f"seed={seed}", "dni", seed,
                  [2 + seed, 1.2], opt={"learning_rate": 0.1})
  _, (ax, _), groups = plot.draw([str(tmp_path / "cdni")])
  assert list(_legend(ax)) == ["cdni (n=2)"] and len(groups) == 1
  _, (ax, _), groups = plot.draw([str(tmp_path)])
  assert list(_legend(ax)) == [
      "dni, opt.learning_rate=0.01 (n=2)", "dni, opt.learning_rate=0.1 (n=2)",
      "cdni (n=2)"]


def test_a_method_has_one_colour_in_comparisons_and_sweeps(tmp_path):
  for method in ("backprop", "dni", "cdni"):
    _run(tmp_path / "comparison" / method, "binary_addition",
         _losses([2, 1]), method=method, num_steps=20)
  for seed in (0, 1):
    _sweep_member(tmp_path / "sweep" / f"seed={seed}", "cdni", seed, [2, 1])
  _, (ax, _), _ = plot.draw([str(tmp_path / "comparison")])
  comparison = _legend(ax)
  _, (ax, _), _ = plot.draw([str(tmp_path / "sweep")])
  sweep = _legend(ax)
  cdni = colors.to_hex(plot_style.method_color("cdni"))
  assert comparison["cdni"] == sweep["cdni (n=2)"] == cdni
  assert len(set(comparison.values())) == 3


def test_a_short_run_is_a_dot_and_its_cadence_is_named(tmp_path, capsys):
  """200 steps with log_every=1000 and eval_every=500 log once, at the end:
  the dot shows and a warning names the flags that would give a curve."""
  records = [{"step": 200, "split": "train", "loss": 5.6},
             {"step": 200, "split": "test", "accuracy": 0.5}]
  for method in ("dni", "cdni"):
    _run(tmp_path / "short" / method, "binary_addition", records,
         method=method, num_steps=200, log_every=1000, eval_every=500)
  _, axes, _ = plot.draw([str(tmp_path / "short")])
  for ax in axes:
    (line, *_) = ax.get_lines()
    assert line.get_marker() not in (None, "None", "", ".")
    assert line.get_markersize() >= 6
  err = capsys.readouterr().err
  assert "'dni', 'cdni'" in err and "in 200 steps" in err
  assert "--config.log_every=10" in err and "--config.eval_every=20" in err
  # A long run that has logged few points so far is not warned about.
  _run(tmp_path / "long", "binary_addition", records, method="dni",
       num_steps=12000, log_every=1000, eval_every=500)
  plot.draw([str(tmp_path / "long")])
  assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("args,expected", [
    (["/no/such/folder"], "error: /no/such/folder does not exist: give a "
     "run's --workdir"),
    (["{empty}"], "error: no runs in {empty}"),
    ([], "error: give one or more run folders"),
])
def test_plot_errors_are_one_paragraph(tmp_path, args, expected):
  empty = tmp_path / "empty"
  empty.mkdir()
  args = [a.format(empty=empty) for a in args]
  done = subprocess.run(
      [sys.executable, "-m", "experiments.plot", *args,
       f"--out={tmp_path / 'x.png'}"], cwd=ROOT, capture_output=True,
      text=True, timeout=120)
  assert done.returncode != 0
  assert done.stderr.startswith(expected.format(empty=empty)), done.stderr
  assert done.stderr.count("\n") == 1 and not done.stdout
  assert "Traceback" not in done.stderr and "flags" not in done.stderr


def test_two_networks_draws_both_networks_test_error_with_a_band(tmp_path):
  """The paper's Fig. 5b: A's test error left, B's right, seeds as bands."""
  for method in ("locked", "dni"):
    for seed in range(2):
      records = [{"step": s, "split": split, "a_error": 0.5 / s + seed,
                  "b_error": 0.7 / s, "loss": 9.0}
                 for s in (1, 2, 3) for split in ("train", "test")]
      _run(tmp_path / f"method={method},seed={seed}", "mnist", records,
           method=method, seed=seed, num_steps=3,
           two_networks={"T": 4})
  fig, (left, right), groups = plot.draw([str(tmp_path)])
  del fig
  assert sorted(len(v) for v in groups.values()) == [2, 2]
  assert left.get_title() == "test a_error"
  assert right.get_title() == "test b_error"
  curve = [l for l in left.get_lines()
           if l.get_color() == plot_style.method_color("dni")][0]
  np.testing.assert_allclose(curve.get_ydata(), [1.0, 0.75, 2 / 3])


def test_a_method_ending_in_another_s_name_keeps_its_own_colour():
  assert plot_style.method_of("no_dni") == "no_dni"
  assert plot_style.method_of("depth_3_dni") == "dni"
  assert plot_style.method_color("no_dni") != plot_style.method_color("dni")


# experiments.plot_seeds defines flags of the same names as experiments.plot,
# so its functions run in a subprocess of their own.
_AT_STEPS_PROBE = """
import json, sys
from experiments import plot_seeds
runs = plot_seeds.load(sys.argv[1], "error", "test", 1.0)
steps = [int(s) for s in sys.argv[2].split(",")]
points = plot_seeds.points_at_steps(runs, "dni.update_prob", steps)
fig, axes = plot_seeds.plot_at_steps(runs, "dni.update_prob", steps, "error")
drawn = [{"title": ax.get_title(), "xscale": ax.get_xscale(),
          "xticks": [t.get_text() for t in ax.get_xticklabels()],
          "linestyles": {c.get_label(): c.lines[0].get_linestyle()
                         for c in ax.containers},
          "lines": {c.get_label(): [list(map(float, c.lines[0].get_xdata())),
                                    list(map(float, c.lines[0].get_ydata()))]
                    for c in ax.containers}} for ax in axes]
print(json.dumps({"points": {str(k): v for k, v in points.items()},
                  "drawn": drawn}))
"""

_PS = (0.05, 0.2, 1.0)


def _accuracy(method, p, seed, step):
  """A made-up test accuracy of each seed of each point at each step."""
  return 0.5 + step / 1000 + p / 10 + (0.05 if method == "cdni" else 0) + (
      0.01 * seed)


def _p_sweep(root, steps=(100, 200, 300), seeds=(0, 1), ps=_PS):
  """Fig. 7's population: methods × update probabilities × seeds."""
  for method in ("dni", "cdni"):
    for p in ps:
      for seed in seeds:
        records = [{"step": s, "split": split, "accuracy":
                    _accuracy(method, p, seed, s), "loss": 1.0}
                   for s in steps for split in ("train", "test")]
        _run(root / f"method={method},p={p},seed={seed}", "mnist", records,
             method=method, seed=seed, num_steps=300,
             dni={"update_prob": p})


def test_plot_seeds_at_steps_draws_seed_means_per_step(tmp_path):
  """The paper's Fig. 7 over seeds: a panel per step, each point the mean
  (± std) over seeds of the test error at that step, on a log p axis."""
  _p_sweep(tmp_path / "sweep")
  out = tmp_path / "steps.png"
  done = subprocess.run(
      [sys.executable, "-m", "experiments.plot_seeds", str(tmp_path / "sweep"),
       "--x_field=dni.update_prob", "--at_steps=100,300", "--metric=error",
       f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert os.path.getsize(out) > 1000 and "(12 runs)" in done.stdout
  done = subprocess.run(
      [sys.executable, "-c", _AT_STEPS_PROBE, str(tmp_path / "sweep"),
       "300,100"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  probe = json.loads(done.stdout)
  assert list(probe["points"]) == ["300", "100"]
  assert [ax["title"] for ax in probe["drawn"]] == ["step 300", "step 100"]
  for step, ax in zip((300, 100), probe["drawn"]):
    assert ax["xscale"] == "log"  # p from 0.05 to 1: over a factor of 10
    assert ax["xticks"] == ["0.05", "0.2", "1"]
    assert set(ax["linestyles"].values()) == {"-"}  # joined
    points = probe["points"][str(step)]
    assert list(points) == list(ax["lines"]) == ["dni", "cdni"]
    for method in ("dni", "cdni"):
      errors = [[100 * (1 - _accuracy(method, p, seed, step))
                 for seed in (0, 1)] for p in _PS]
      xs, means, stds, ns = points[method]
      assert xs == list(_PS) and ns == [2, 2, 2]
      np.testing.assert_allclose(means, np.mean(errors, 1))
      np.testing.assert_allclose(stds, np.std(errors, 1, ddof=1))
      np.testing.assert_allclose(ax["lines"][method], [_PS, np.mean(errors, 1)])


def test_a_population_over_p_is_drawn_as_points_on_a_linear_axis(tmp_path):
  """Many values of p, one seed each (configs/update_population.py): the
  points are not joined, and p is on a linear axis although it spans more
  than a factor of 10."""
  ps = tuple(round(0.07 * k + 0.01, 2) for k in range(12))  # 0.01 … 0.78
  _p_sweep(tmp_path / "sweep", seeds=(0,), ps=ps)
  done = subprocess.run(
      [sys.executable, "-c", _AT_STEPS_PROBE, str(tmp_path / "sweep"), "300"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  probe = json.loads(done.stdout)
  (ax,) = probe["drawn"]
  assert ax["xscale"] == "linear"
  assert ax["linestyles"] == {"dni": "None", "cdni": "None"}
  for method in ("dni", "cdni"):
    xs, means, _, ns = probe["points"]["300"][method]
    assert xs == list(ps) and ns == [1] * len(ps)
    np.testing.assert_allclose(means, [100 * (1 - _accuracy(
        method, p, 0, 300)) for p in ps])


@pytest.mark.parametrize("args,expected", [
    (["--x_field=dni.update_prob", "--at_steps=100,400"],
     "error: no test error record at step 400 for method=dni, "
     "dni.update_prob=0.05 (2 seeds): the steps all its seeds have are 100, "
     "200, 300. Give --at_steps among those"),
    (["--x_field=dni.update_prob", "--at_steps=300", "{short}"],
     "error: no test error record at step 300 for method=cdni, "
     "dni.update_prob=1.0 (3 seeds, 1 without it): the steps all its seeds "
     "have are 100, 200. Give --at_steps among those"),
    (["--x_field=dni.update_prob", "--at_steps=100", "--curves"],
     "error: --at_steps draws one panel per step against --x_field; drop "
     "--curves "),
    (["--x_field=dni.update_prob", "--at_steps=100", "--panel_field=seed"],
     "error: --at_steps draws one panel per step against --x_field; drop "
     "--panel_field "),
])
def test_plot_seeds_at_steps_errors_are_one_paragraph(tmp_path, args,
                                                      expected):
  """A step some point lacks names the step, the point and the steps it has
  (not a gap in the figure); --at_steps with --curves or --panel_field says
  which to drop."""
  _p_sweep(tmp_path / "sweep")
  if "{short}" in args:  # a third seed still training
    args = [a for a in args if a != "{short}"]
    _run(tmp_path / "sweep" / "method=cdni,p=1.0,seed=2", "mnist",
         [{"step": s, "split": "test", "accuracy": 0.9} for s in (100, 200)],
         method="cdni", seed=2, num_steps=300, dni={"update_prob": 1.0})
  done = subprocess.run(
      [sys.executable, "-m", "experiments.plot_seeds", str(tmp_path / "sweep"),
       *args, f"--out={tmp_path / 'x.png'}"], cwd=ROOT, capture_output=True,
      text=True, timeout=120)
  assert done.returncode != 0
  assert done.stderr.startswith(expected), done.stderr
  assert done.stderr.count("\n") == 1 and not done.stdout
  assert "Traceback" not in done.stderr
  assert not (tmp_path / "x.png").exists()


def _char_run(folder, method, unroll, chars, batch=4):
  """A PTB run of ``method`` at ``unroll``: train and valid bpc records at
  ``chars`` characters."""
  records = []
  for i, c in enumerate(chars):
    step = c // (batch * unroll)
    records += [{"step": step, "split": split, "loss": 1.0, "chars": c,
                 "bpc": bpc - i / 10}
                for split, bpc in (("train", 2.0), ("valid", 2.1))]
  _run(folder, "ptb_char", records, method=method, unroll=unroll,
       batch_size=batch, num_steps=chars[-1] // (batch * unroll))


_CHARS = {"bptt_T8": [8_000_000, 16_000_000, 24_000_000],
          "dni_T5": [5_000_000, 10_000_000, 20_000_000]}


def _speed_runs(root):
  _char_run(root / "bptt_T8", "bptt", 8, _CHARS["bptt_T8"])
  _char_run(root / "dni_T5", "dni", 5, _CHARS["dni_T5"])


def _curves(ax):
  """``{legend label: (xs, ys)}`` of the panel's lines."""
  return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
          for line in ax.get_lines()}


def test_wall_time_is_chars_times_each_cells_seconds_per_char(tmp_path):
  """--x=wall: each record at its characters × the s/char of its cell
  (<method>_T<unroll>), here 2 µs for bptt_T8 and 5 µs for dni_T5, in a unit
  (s, min or h) that the longest run spans twice."""
  _speed_runs(tmp_path)
  spc = {"bptt_T8": 2e-6, "dni_T5": 5e-6}
  assert plot.ptb_speed.cell_name("dni", 5) == "dni_T5"
  fig, axes, _ = plot.draw([str(tmp_path)], x="wall",
                           seconds_per_char="bptt_T8=2e-6, dni_T5=5e-6")
  del fig
  # The longest: 24 M × 2 µs = 48 s and 20 M × 5 µs = 100 s: seconds.
  for ax in axes:
    assert ax.get_xlabel() == "wall time (s), from the measured s/char"
    curves = _curves(ax)
    assert set(curves) == {"bptt", "dni"}
    for cell, method in (("bptt_T8", "bptt"), ("dni_T5", "dni")):
      np.testing.assert_allclose(curves[method][0],
                                 [c * spc[cell] for c in _CHARS[cell]])
  np.testing.assert_allclose(_curves(axes[1])["dni"][1], [2.1, 2.0, 1.9])
  # Longer runs in longer units; records without chars keep no wall time.
  assert plot.wall_unit(100.0) == ("s", 1.0)
  assert plot.wall_unit(300.0) == ("min", 60.0)
  assert plot.wall_unit(3 * 3600.0) == ("h", 3600.0)
  records = [{"split": "train", "chars": 3_000_000, "bpc": 1.0},
             {"split": "train", "bpc": 1.0}]
  assert plot.with_wall(records, 2e-6, 60.0) == [
      {**records[0], "wall": 0.1}, records[1]]
  _, axes, _ = plot.draw([str(tmp_path)], x="wall",
                         seconds_per_char="bptt_T8=2e-5,dni_T5=5e-5")
  assert axes[0].get_xlabel() == "wall time (min), from the measured s/char"
  np.testing.assert_allclose(_curves(axes[0])["dni"][0],
                             [c * 5e-5 / 60 for c in _CHARS["dni_T5"]])


def test_wall_time_reads_the_seconds_per_char_ptb_speed_writes(tmp_path):
  """Without --seconds_per_char, the nearest seconds_per_char.json at or
  above each run: the one ptb_speed writes beside its cells."""
  root = tmp_path / "ptb_speed"
  _speed_runs(root)
  spc = plot.ptb_speed.seconds_per_char(
      {"bptt_T8": 8 * 4 * 2e-6, "dni_T5": 5 * 4 * 5e-6},
      {"bptt_T8": 8, "dni_T5": 5}, 4, root=str(root))
  with open(root / "seconds_per_char.json") as f:
    assert json.load(f) == spc
  np.testing.assert_allclose([spc["bptt_T8"], spc["dni_T5"]], [2e-6, 5e-6])
  # A cell's folder alone finds the file one folder up.
  for paths in ([str(root)], [str(root / "dni_T5")]):
    _, (ax, _), _ = plot.draw(paths, x="wall")
    np.testing.assert_allclose(_curves(ax)["dni"][0],
                               [c * 5e-6 for c in _CHARS["dni_T5"]])
  out = tmp_path / "wall.png"
  done = subprocess.run(
      [sys.executable, "-m", "experiments.plot", str(root), "--x=wall",
       f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "(2 runs, 2 curves)" in done.stdout and os.path.getsize(out) > 0


@pytest.mark.parametrize("args,expected", [
    (["--seconds_per_char=bptt_T8=2e-6"],
     "error: no seconds per character for cell dni_T5 (the run in "
     "{root}/dni_T5): --seconds_per_char has no dni_T5 (it has bptt_T8). "
     "Give it as --seconds_per_char=dni_T5=<seconds>"),
    ([], "error: no seconds per character for cell bptt_T8 (the run in "
     "{root}/bptt_T8): --seconds_per_char is empty and no "
     "seconds_per_char.json is in {root}/bptt_T8 or a folder above it. Give "
     "it as --seconds_per_char=bptt_T8=<seconds>"),
    (["{json}"], "error: no seconds per character for cell dni_T5 (the run "
     "in {root}/dni_T5): {root}/seconds_per_char.json has no dni_T5 (it has "
     "bptt_T8). Give it as --seconds_per_char=dni_T5=<seconds>"),
    (["--seconds_per_char=bptt_T8"], "error: --seconds_per_char=bptt_T8: "
     "'bptt_T8' is not cell=<seconds per character>"),
    (["{mnist}"], "error: --x=wall plots against characters × the seconds "
     "per character of a run's cell, which only sequence runs have"),
])
def test_wall_time_errors_are_one_paragraph(tmp_path, args, expected):
  """A cell with no seconds per character is named, with both ways to give
  it; a run that is not a sequence run says so."""
  root = tmp_path / "runs"
  _speed_runs(root)
  if "{json}" in args:
    args = [a for a in args if a != "{json}"]
    with open(root / "seconds_per_char.json", "w") as f:
      json.dump({"bptt_T8": 2e-6}, f)
  if "{mnist}" in args:
    args = [a for a in args if a != "{mnist}"]
    root = tmp_path / "mnist"
    _run(root, "mnist", _losses([2, 1]), method="dni")
  done = subprocess.run(
      [sys.executable, "-m", "experiments.plot", str(root), "--x=wall", *args,
       f"--out={tmp_path / 'x.png'}"], cwd=ROOT, capture_output=True,
      text=True, timeout=120)
  assert done.returncode != 0
  assert done.stderr.startswith(expected.format(root=root)), done.stderr
  assert done.stderr.count("\n") == 1 and not done.stdout
  assert "Traceback" not in done.stderr
  assert not (tmp_path / "x.png").exists()
  if "Give it as --seconds_per_char" in expected:  # and the other way
    assert ("or in seconds_per_char.json" in done.stderr and
            "reproduce --table=ptb_speed writes" in done.stderr)
