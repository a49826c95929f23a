"""End to end: every config at tiny size, resume, determinism, bad input, NaN."""

import importlib
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from dni_jax.errors import ConfigError
from dni_jax.errors import TrainingDivergedError
from dni_jax.training import train
from dni_jax.training.checkpoint import Checkpointer
from dni_jax.training.metrics_log import read_metrics
import test_data
import tiny as tiny_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST = test_data.SHARED_MNIST


def tiny(name, **overrides):
  """Config ``name`` shrunk to seconds: narrow stages, few steps."""
  config = importlib.import_module(f"configs.{name}").get_config()
  config.model.update(depth=2, width=16, features=4, hidden=(8, 8))
  config.dni.hidden = (4,)
  config.update(batch_size=8, eval_batch_size=16, num_steps=4, log_every=2,
                eval_every=2, checkpoint_every=2)
  return tiny_lib.override(config, **overrides)


def _check_metrics(workdir, synth=True):
  records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  train_r = [r for r in records if r["split"] == "train"]
  test_r = [r for r in records if r["split"] == "test"]
  assert [r["step"] for r in train_r] == [2, 4]
  assert [r["step"] for r in test_r] == [2, 4]
  for r in records:
    assert {"step", "split", "loss", "accuracy"} <= set(r)
    assert ("synth_loss/0" in r) == (synth and r["split"] == "train")


@pytest.mark.parametrize("name", ["mnist_fcn", "mnist_cnn", "cifar10_fcn",
                                  "cifar10_cnn"])
def test_image_configs_run_on_tfds_mock_data(name, tmp_path, mock_tfds):
  with mock_tfds(num_examples=24):
    summaries = train.train_and_evaluate(tiny(name, method="cdni"), tmp_path)
  _check_metrics(tmp_path)
  assert summaries["cdni"]["step"] == 4


@pytest.mark.parametrize("name,input_model", [("mnist_fcn", "mlp"),
                                              ("mnist_cnn", "conv")])
def test_complete_unlock_runs_end_to_end(name, input_model, tmp_path,
                                         mock_tfds):
  config = tiny(name, method="dni_unlocked,cdni_unlocked",
                **{"dni.input_model": input_model, "dni.input_hidden": (4,)})
  with mock_tfds(num_examples=24):
    summaries = train.train_and_evaluate(config, tmp_path)
  for method in ("dni_unlocked", "cdni_unlocked"):
    assert summaries[method]["step"] == 4
    records = read_metrics(tmp_path / method / "metrics.jsonl")
    train_r = [r for r in records if r["split"] == "train"]
    assert {"input_loss/0", "synth_loss/0"} <= set(train_r[-1])


def test_binary_addition_default_compares_three_methods(tmp_path, capsys):
  config = tiny("binary_addition")
  config.model.hidden = (8, 8)
  summaries = train.train_and_evaluate(config, tmp_path)
  assert list(summaries) == ["backprop", "dni", "cdni"]
  for method in summaries:
    _check_metrics(tmp_path / method, synth=method != "backprop")
    assert "exact_match" in read_metrics(tmp_path / method / "metrics.jsonl")[-1]
  table = capsys.readouterr().out
  assert "comparison after 4 steps" in table
  assert all(f"\n{m} " in table for m in summaries)


def test_local_mnist_files(tmp_path):
  test_data.write_mnist(tmp_path)
  train.train_and_evaluate(
      tiny("mnist_fcn", **{"data.dir": str(tmp_path)}), tmp_path / "run")
  _check_metrics(tmp_path / "run")


def test_local_cifar10_files(tmp_path):
  test_data.write_cifar(tmp_path, binary=True)
  train.train_and_evaluate(
      tiny("cifar10_cnn", **{"data.dir": str(tmp_path)}), tmp_path / "run")
  _check_metrics(tmp_path / "run")


@pytest.mark.skipif(not os.path.isdir(SHARED_MNIST),
                    reason="../shared/data/mnist not present")
def test_real_mnist_few_steps(tmp_path):
  config = tiny("mnist_fcn", **{"data.dir": SHARED_MNIST}, eval_batch_size=5000)
  summary = train.train_and_evaluate(config, tmp_path)["dni"]
  assert 0.0 < summary["test"]["accuracy"] <= 1.0


def assert_same_run(straight, resumed, step: int):
  """Two workdirs end at ``step`` with the same state, bit for bit, and the
  same ``metrics.jsonl``; returns that state."""
  step_a, a = _final_state(straight)
  step_b, b = _final_state(resumed)
  assert step_a == step_b == step
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
  assert read_metrics(os.path.join(straight, "metrics.jsonl")) == read_metrics(
      os.path.join(resumed, "metrics.jsonl"))
  return a


def _final_state(workdir):
  # Restore into the structure of a fresh state of the same run.
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
  step = ckpt.latest_step()
  manager = ckpt._manager  # pylint: disable=protected-access
  restored = manager.restore(step)
  ckpt.close()
  return step, restored


@pytest.mark.parametrize("update_prob,delay,method", [
    (1.0, 0, "cdni"), (0.5, 0, "cdni"), (1.0, 2, "cdni_unlocked")])
def test_resume_after_interruption_equals_uninterrupted(
    tmp_path, monkeypatch, update_prob, delay, method):
  # update_prob 0.5: the stochastic updates' coins survive a resume too;
  # delay 2: the stale synthesizers are part of the checkpoint, and so are
  # the input models of complete unlock.
  config = tiny("binary_addition", method=method, num_steps=8,
                checkpoint_every=3, log_every=1,
                **{"dni.update_prob": update_prob, "dni.synth_delay": delay})
  train.train_and_evaluate(config, tmp_path / "straight")

  undo = tiny_lib.crash_batches_at(monkeypatch, 5)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path / "resumed")
  assert max(r["step"] for r in read_metrics(
      tmp_path / "resumed" / "metrics.jsonl")) == 5  # logged past the checkpoint
  undo()
  train.train_and_evaluate(config, tmp_path / "resumed")

  assert_same_run(tmp_path / "straight", tmp_path / "resumed", 8)


def test_the_schedule_clock_reaches_the_step_alone_and_in_a_sweep(tmp_path):
  """With the rate falling to 0 at step 2, the clocks agree until then
  and differ after: a unit held back before step 2 still learns under
  "updates" (one run, and a vmapped sweep's member)."""
  from dni_jax.training import sweep  # pylint: disable=g-import-not-at-top
  losses = {}
  for clock in ("steps", "updates"):
    config = tiny("binary_addition", method="cdni", num_steps=6, log_every=1,
                  **{"dni.update_prob": 0.5, "dni.schedule_clock": clock,
                     "opt.decay_steps": (2,), "opt.decay_factor": 0.0})
    train.train_and_evaluate(config, tmp_path / clock)
    sweep.run_sweep(config, [{"seed": 0}, {"seed": 1}],
                    str(tmp_path / f"sweep_{clock}"))
    losses[clock] = [
        [r["loss"] for r in read_metrics(folder / "metrics.jsonl")
         if r["split"] == "train"]
        for folder in (tmp_path / clock, tmp_path / f"sweep_{clock}" / "seed=0")]
  for one, other in zip(losses["steps"], losses["updates"]):
    assert one[:2] == other[:2]
    assert one[2:] != other[2:]


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
  runs = {}
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    train.train_and_evaluate(tiny("binary_addition", method="dni", seed=seed),
                             tmp_path / name)
    runs[name] = read_metrics(tmp_path / name / "metrics.jsonl")
  assert runs["a"] == runs["b"]
  assert runs["a"] != runs["c"]


@pytest.mark.parametrize("overrides,message", [
    ({"method": "dnii"}, "unknown method 'dnii'"),
    ({"method": "dni,dni"}, "names a method twice"),
    ({"data.name": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"opt.learning_rate": -1e-3}, "opt.learning_rate must be a positive"),
    ({"data.dir": "/no/such/dir"}, "data.dir='/no/such/dir' does not exist"),
    ({"dni.synthesizer": "conv"}, "needs feature maps"),
    ({"dni.synthesizer": "convv"}, "unknown synthesizer .convv."),
    ({"batch_size": 0},
     "config.batch_size must be a whole number of at least 1, got 0"),
    ({"num_steps": True},
     "config.num_steps must be a whole number of at least 1, got True"),
    ({"opt.clip_norm": -1.0}, "opt.clip_norm must be a finite number, 0 or "
     "more, got -1.0"),
    ({"opt.name": "momentum", "opt.momentum": 1.0},
     r"opt.momentum must lie in \[0, 1\), got 1.0"),
    ({"dni.update_prob": 1.5}, r"must lie in \[0, 1\]"),
    ({"dni.stage_update_probs": (1.0, -0.1)}, r"must lie in \[0, 1\]"),
    ({"dni.update_prob": 0.5, "dni.schedule_clock": "epochs"},
     r"unknown dni.schedule_clock 'epochs'; choose one of \('steps', "
     r"'updates'\)"),
    ({"method": "backprop", "dni.stage_update_probs": (1.0, 0.5)},
     "one coin per step"),
    ({"dni.stage_update_probs": (1.0, 0.5, 0.5)},
     "has 3 values for the network's 2 stages; give one per stage"),
    ({"dni.update_prob": 0.5, "parallel.num_devices": 2},
     "not to sequence tasks or pipelines"),
    ({"dni.synth_delay": -1}, "synth_delay must be a whole number"),
    ({"dni.synth_delay": True}, "dni.synth_delay must be a whole number of "
     "at least 0, got True"),
    ({"opt.decay_factor": -0.5}, "opt.decay_factor must be a finite number, "
     "0 or more, got -0.5"),
    ({"method": "dni_unlocked", "parallel.num_devices": 2},
     "run on one device"),
    ({"method": "cdni_unlocked", "model.depth": 1}, "needs at least two stages"),
    ({"method": "dni", "model.depth": 1},
     r"method dni needs at least two stages.*model.depth=1 has 1 stage "
     r"\(no boundary, nothing decoupled\).*--config.method=backprop"),
    ({"method": "backprop,cdni", "model.depth": 1},
     "method cdni needs at least two stages"),
    ({"method": "dni,cdni", "model.kind": "cnn", "model.depth": 1},
     "methods dni and cdni need at least two stages"),
    ({"method": "dni", "model.kind": "mlp", "model.hidden": ()},
     r"model.hidden=\(\) has 1 stage.*give model.hidden at least one width"),
    ({"method": "backprop", "model.depth": 0}, "model.depth must be a whole number of at least 1, got 0: the stages"),
    ({"opt.decay_steps": ("abc",)},
     r"opt.decay_steps=\('abc',\): the field opt.decay_steps takes a tuple "
     r"of whole numbers \(int\).*'abc' is not one"),
    ({"opt.decay_steps": (1.5,)}, "whole numbers"),
    ({"dni.stage_update_probs": (1.0, "x")},
     r"takes a tuple of numbers \(float\)"),
    ({"model.hidden": (8, True)}, "whole numbers"),
    ({"method": "dni_unlocked", "dni.input_model": "rbf"},
     "unknown input model 'rbf'"),
    ({"method": "dni_unlocked", "dni.input_model": "conv"},
     "predicts feature maps"),
])
def test_bad_config_values_name_the_field(overrides, message, tmp_path):
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(tiny("mnist_fcn", **overrides), tmp_path)
  assert not os.listdir(tmp_path)  # rejected before anything was written


@pytest.mark.parametrize("overrides", [
    {"method": "backprop", "model.depth": 1},
    {"method": "backprop", "model.kind": "mlp", "model.hidden": ()},
    {"method": "dni", "model.depth": 2},
])
def test_one_stage_is_fine_where_nothing_is_decoupled(overrides):
  from dni_jax.training import families  # pylint: disable=g-import-not-at-top
  families.validate(tiny("mnist_fcn", **overrides))


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path,
                                                              mock_tfds):
  # Ordinary learning rate for 4 steps, then an absurd one.
  config = tiny("mnist_fcn", num_steps=10, log_every=1, **{
      "opt.learning_rate": 1e-3, "opt.decay_steps": (4,),
      "opt.decay_factor": 1e38})
  with mock_tfds(num_examples=24):
    with pytest.raises(TrainingDivergedError,
                       match=r"at step \d+ .*checkpoint \(step 4\) is kept"):
      train.train_and_evaluate(config, tmp_path)
  step, state = _final_state(tmp_path)
  assert step == 4
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state))
  assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")
          if r["split"] == "train"][:4] == [1, 2, 3, 4]


def _main(*args):
  return subprocess.run(
      [sys.executable, "-m", "experiments.main", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_main_entry_point_default_and_bad_flag(tmp_path):
  done = _main(f"--workdir={tmp_path}", "--config.num_steps=20",
               "--config.eval_every=10", "--config.log_every=10")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "binary_addition: comparison after 20 steps" in done.stdout
  bad = _main(f"--workdir={tmp_path}/bad", "--config.method=bprop")
  assert bad.returncode != 0
  assert "error: unknown method 'bprop'" in bad.stderr
  assert "Traceback" not in bad.stderr
