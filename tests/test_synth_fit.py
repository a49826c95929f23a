"""experiments.synth_fit: the synthesizer's fit to its target, measured."""

import os
import subprocess
import sys

import numpy as np

from dni_jax.core import tbptt
from dni_jax.training import experiment
from dni_jax.training import recurrent
from dni_jax.training import train
from test_train import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_its_loss_is_the_one_the_train_step_logs():
  config = tiny("copy", method="dni", unroll=3)
  task, data, _ = experiment.build_task(config)
  rdni = experiment.build_recurrent(config, task)
  optimizers = experiment.build_optimizers(config)
  state = recurrent.make_loop(config).init()
  for _ in range(3):  # a synthesizer that is no longer zero
    state, _ = tbptt.task_step(state, data, rdni=rdni, optimizers=optimizers,
                               task=task)
  batch = task.window(state.task, data, state.step)
  fit = tbptt.synthesizer_fit(state, batch, rdni=rdni, optimizers=optimizers)
  _, metrics = tbptt.task_step(state, data, rdni=rdni, optimizers=optimizers,
                               task=task)
  np.testing.assert_allclose(fit["mse"], metrics["synth_loss"], rtol=1e-5)
  # ‖t‖² is the loss of predicting zero, and the target's mean norm is its
  # root's lower bound.
  assert fit["target_sq"] >= metrics["target_norm"] ** 2 * (1 - 1e-5)
  assert -1.0 <= float(fit["cosine"]) <= 1.0


def test_the_command_reads_a_run_and_writes_nothing(tmp_path):
  train.train_and_evaluate(tiny("copy", method="dni", unroll=3), tmp_path)
  before = sorted(os.listdir(tmp_path))
  done = subprocess.run(
      [sys.executable, "-m", "experiments.synth_fit", str(tmp_path),
       "--windows=3"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "ratio" in done.stdout and "mean cosine" in done.stdout
  assert sorted(os.listdir(tmp_path)) == before


def test_a_run_without_a_synthesizer_is_one_error_line(tmp_path):
  train.train_and_evaluate(tiny("copy", method="bptt", unroll=3), tmp_path)
  done = subprocess.run(
      [sys.executable, "-m", "experiments.synth_fit", str(tmp_path)],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 1
  assert done.stderr.startswith("error: ") and "no recurrent synthesizer" in done.stderr
  assert "Traceback" not in done.stderr


def test_a_feedforward_dni_run_or_a_sweep_root_is_one_error_line(tmp_path):
  from dni_jax.training import sweep  # pylint: disable=g-import-not-at-top
  ff = tmp_path / "ff"
  train.train_and_evaluate(tiny("binary_addition", method="dni"), ff)
  root = tmp_path / "sweep"
  sweep.run_sweep(tiny("copy", method="dni", unroll=3),
                  [{"seed": 0}, {"seed": 1}], str(root))
  for folder, says in ((ff, "no recurrent synthesizer"),
                       (root, "holds several runs"), (root / "seed=0", None)):
    done = subprocess.run(
        [sys.executable, "-m", "experiments.synth_fit", str(folder),
         "--windows=2"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    if says is None:
      assert done.returncode == 0, done.stderr[-2000:]
      continue
    assert done.returncode == 1 and says in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
