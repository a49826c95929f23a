"""experiments.plot: the right metric per task family, stable colours, ticks."""

import json
import os
import subprocess
import sys

import numpy as np

from experiments import plot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(folder, data_name, records):
  os.makedirs(folder)
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump({"data": {"name": data_name}}, f)
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)


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
