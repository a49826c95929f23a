"""Sequence tasks end to end: configs, metrics, resume, early stop, bad input."""

import math
import os

import jax
import numpy as np
import pytest

from dni_jax.core import tbptt
from dni_jax.errors import ConfigError
from dni_jax.errors import DataError
from dni_jax.training import train
from dni_jax.training.metrics_log import read_metrics
from test_sequence_data import _write_ptb
from test_train import _final_state
from test_train import assert_same_run
from test_train import tiny

_PTB_TEXT = "".join(" ".join("abc_defg_hij") + "\n" for _ in range(30))


def _ptb_dir(tmp_path):
  folder = tmp_path / "ptb"
  folder.mkdir()
  _write_ptb(folder, train=_PTB_TEXT, valid=_PTB_TEXT[:200],
             test=_PTB_TEXT[:300])
  return str(folder)


@pytest.mark.parametrize("name", ["copy", "repeat_copy"])
def test_copy_configs_compare_three_methods(name, tmp_path, capsys):
  config = tiny(name, **{"data.check_every": 2})
  summaries = train.train_and_evaluate(config, tmp_path)
  assert list(summaries) == list(tbptt.METHODS)
  for method in tbptt.METHODS:
    records = read_metrics(tmp_path / method / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4]
    assert "bits_per_seq" in records[-1]  # episodes have ended by step 4
    for r in records:
      assert {"loss", "length", "max_length_solved", "chars"} <= set(r)
      assert ("synth_loss" in r) == (method != "bptt")
      assert ("aux_loss" in r) == (method == "dni_aux")
  assert "max len solved" in capsys.readouterr().out


def test_ptb_char_logs_bpc_on_valid_and_test(tmp_path):
  config = tiny("ptb_char", method="dni", **{"data.dir": _ptb_dir(tmp_path)})
  summary = train.train_and_evaluate(config, tmp_path / "run")["dni"]
  records = read_metrics(tmp_path / "run" / "metrics.jsonl")
  for split in ("train", "valid", "test"):
    steps = [r["step"] for r in records if r["split"] == split]
    assert steps == [2, 4], split
  for r in records:
    assert 0 < r["bpc"] < 10 and r["chars"] == r["step"] * 8 * config.unroll
  assert summary["best_valid_bpc"] == min(
      r["bpc"] for r in records if r["split"] == "valid")
  assert summary["test_bpc_at_best_valid"] is not None


def test_tiny_shakespeare_runs_on_tfds_mock_data(tmp_path, mock_tfds):
  config = tiny("ptb_char", method="bptt", batch_size=1, unroll=2,
                **{"data.name": "tiny_shakespeare"})
  with mock_tfds(num_examples=2):
    summary = train.train_and_evaluate(config, tmp_path)["bptt"]
  assert summary["best_valid_bpc"] > 0


def test_early_stopping_on_valid(tmp_path):
  # lr 0 → valid bpc never improves after the first evaluation.
  config = tiny("ptb_char", method="bptt", num_steps=40, patience=2, **{
      "data.dir": _ptb_dir(tmp_path), "opt.learning_rate": 1e-30})
  summary = train.train_and_evaluate(config, tmp_path / "run")["bptt"]
  assert summary["stopped_early"] and summary["step"] == 6
  assert _final_state(tmp_path / "run")[0] == 6  # saved where it stopped


def test_graves_lstm_and_unscaled_bootstrap_train_from_the_config(tmp_path):
  """The options reach the step: the cell has peepholes, and only the
  synthesizer's loss (its target) differs from the scaled bootstrap."""
  options = {"model.forget_bias": 1.0, "model.peepholes": True}
  logs = {}
  for bootstrap in ("scaled", "unscaled"):
    config = tiny("copy", method="dni_aux", num_steps=4, log_every=1,
                  **options, **{"dni.bootstrap": bootstrap})
    train.train_and_evaluate(config, tmp_path / bootstrap)
    logs[bootstrap] = read_metrics(tmp_path / bootstrap / "metrics.jsonl")
    _, restored = _final_state(tmp_path / bootstrap)
    assert set(restored["params"]["params"]["rnn_cell"]) == {
        "input", "recurrent", "peepholes"}
  for a, b in zip(logs["scaled"], logs["unscaled"]):
    assert all(math.isfinite(v) for v in b.values() if isinstance(v, float))
  # The first window's core update is the same; the targets differ once the
  # synthesizer predicts something (from the second window on).
  assert logs["scaled"][0]["loss"] == logs["unscaled"][0]["loss"]
  assert any(a["synth_loss"] != b["synth_loss"]
             for a, b in zip(logs["scaled"][1:], logs["unscaled"][1:]))


def test_shuffled_control_trains_from_the_config(tmp_path):
  """``dni.sg_shuffle`` (and ``dni.sg_shuffle_target``) reach the step: the
  same first window, then other updates once the synthesizer predicts
  something; with M's own target, other synthesizer losses than the whole
  control's. λ = 1 and a fast synthesizer make the effects some hundred
  times float rounding (at the defaults they are a few ulps, which one
  instruction set rounds away)."""
  logs = {}
  for name, fields in (("plain", {"dni.sg_shuffle": False}),
                       ("shuffled", {"dni.sg_shuffle": True}),
                       ("core_only", {"dni.sg_shuffle": True,
                                      "dni.sg_shuffle_target": False})):
    config = tiny("copy", method="dni", num_steps=8, log_every=1,
                  batch_size=4, **fields, **{"dni.sg_scale": 1.0,
                                             "opt.synth_learning_rate": 0.1})
    train.train_and_evaluate(config, tmp_path / name)
    logs[name] = read_metrics(tmp_path / name / "metrics.jsonl")
  gap = lambda a, b, k: max(abs(x[k] - y[k])
                            for x, y in zip(logs[a][1:], logs[b][1:]))
  assert logs["plain"][0]["loss"] == logs["shuffled"][0]["loss"]
  assert gap("plain", "shuffled", "loss") > 1e-5  # 3e-5 measured
  assert gap("shuffled", "core_only", "synth_loss") > 1e-4  # 1.4e-3


@pytest.mark.parametrize("target_decay,synth_steps", [(0.0, 1), (0.9, 1),
                                                     (0.0, 3)])
def test_resume_of_a_curriculum_run_is_exact(tmp_path, monkeypatch,
                                             target_decay, synth_steps):
  config = tiny("copy", method="dni_aux", num_steps=8, checkpoint_every=3,
                log_every=1, **{"data.check_every": 2,
                                "data.threshold": 1e9,  # lengthen every check
                                "dni.target_decay": target_decay,
                                "dni.synth_steps": synth_steps})
  train.train_and_evaluate(config, tmp_path / "straight")

  real = tbptt.make_train_step

  def crashing(*args):
    step_fn = real(*args)

    def wrapped(state, data):
      if int(state.step) == 5:
        raise KeyboardInterrupt("simulated interruption")
      return step_fn(state, data)
    return wrapped

  monkeypatch.setattr(tbptt, "make_train_step", crashing)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path / "resumed")
  monkeypatch.setattr(tbptt, "make_train_step", real)
  train.train_and_evaluate(config, tmp_path / "resumed")

  a = assert_same_run(tmp_path / "straight", tmp_path / "resumed", 8)
  assert int(a["task"]["length"]) >= 3  # the curriculum moved on the way
  # The target network is saved and restored with the rest.
  assert (a.get("synth_target_params") is not None) == bool(target_decay)


@pytest.mark.parametrize("name,overrides,error,message", [
    ("copy", {"method": "cdni"}, ConfigError,
     r"unknown method 'cdni'.*\['bptt', 'dni', 'dni_aux'\]"),
    ("copy", {"model.kind": "fcn"}, ConfigError, "choose one of \\('lstm'"),
    ("copy", {"unroll": 0}, ConfigError, "config.unroll must be a whole number of at least 1"),
    ("copy", {"data.start_length": 0}, ConfigError, "data.start_length"),
    ("copy", {"windows_per_call": 0}, ConfigError,
     "config.windows_per_call must be a whole number of at "
     "least 1"),
    ("copy", {"dni.target_decay": 1.0}, ConfigError,
     r"dni.target_decay must be in \[0, 1\), got 1.0"),
    ("copy", {"dni.synth_steps": 0}, ConfigError,
     "dni.synth_steps must be a whole number of at least 1, got 0"),
    ("copy", {"dni.synth_steps": True}, ConfigError,
     "dni.synth_steps must be a whole number of at least 1, got True"),
    ("copy", {"dni.sg_warmup": -1}, ConfigError,
     "dni.sg_warmup must be a whole number of at least 0, got -1: the "
     "windows over which λ grows"),
    ("copy", {"dni.sg_warmup": True}, ConfigError,
     "dni.sg_warmup must be a whole number of at least 0, got True"),
    ("copy", {"opt.decay_factor": float("nan")}, ConfigError,
     "opt.decay_factor must be a finite number, 0 or more, got nan"),
    ("copy", {"dni.sg_shuffle": True, "batch_size": 1}, ConfigError,
     "dni.sg_shuffle gives each stream .* batch_size is 1"),
    ("copy", {"dni.sg_shuffle_target": False}, ConfigError,
     "dni.sg_shuffle_target=False .* dni.sg_shuffle is off"),
    ("copy", {"dni.bootstrap": "half"}, ConfigError,
     r"unknown dni.bootstrap 'half'.*\('scaled', 'unscaled'\)"),
    ("copy", {"model.kind": "rnn", "model.peepholes": True}, ConfigError,
     "model.forget_bias and model.peepholes are the LSTM's"),
    ("ptb_char", {}, ConfigError, "ptb_char reads .* from --config.data.dir"),
    ("ptb_char", {"data.dir": "/no/such"}, ConfigError, "does not exist"),
    ("mnist_fcn", {"method": "bptt"}, ConfigError, "unknown method 'bptt'"),
])
def test_bad_recurrent_config_values(name, overrides, error, message,
                                     tmp_path):
  with pytest.raises(error, match=message):
    train.train_and_evaluate(tiny(name, **overrides), tmp_path)
  assert not os.listdir(tmp_path)


def test_ptb_dir_without_the_files(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="ptb.char.train.txt not found"):
    train.train_and_evaluate(
        tiny("ptb_char", **{"data.dir": str(tmp_path / "empty")}),
        tmp_path / "run")


def _records_close(a, b):
  assert [(r["step"], r["split"]) for r in a] == [
      (r["step"], r["split"]) for r in b]
  for ra, rb in zip(a, b):
    assert set(ra) == set(rb)
    for k in ra:
      if k not in ("step", "split", "time"):
        np.testing.assert_allclose(ra[k], rb[k], rtol=1e-5, atol=1e-6,
                                   err_msg=k)


@pytest.mark.parametrize("name,method,sweep", [
    ("copy", "dni_aux", False), ("ptb_char", "dni", False),
    ("copy", "dni", True)])
def test_several_windows_per_call_equal_one_per_call(name, method, sweep,
                                                     tmp_path):
  """A ``lax.scan`` over windows makes the updates of one window per call.

  Logs every 4 and checkpoints every 6 windows: a chunk of 4 that would
  cross a checkpoint falls back to single windows, so the checkpoints and
  the records land where they do with one window per call.
  """
  extra = {"data.dir": _ptb_dir(tmp_path)} if name == "ptb_char" else {
      "data.check_every": 2, "data.threshold": 1e9}
  runs = {}
  for windows in (1, 4):
    config = tiny(name, method=method, num_steps=12, log_every=4,
                  eval_every=4, checkpoint_every=6, windows_per_call=windows,
                  **extra)
    workdir = tmp_path / f"w{windows}"
    if sweep:
      from dni_jax.training import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
      sweep_lib.run_sweep(config, [{"seed": 0}, {"seed": 1}], str(workdir))
      workdir = workdir / "seed=1"
    else:
      train.train_and_evaluate(config, workdir)
    runs[windows] = (read_metrics(workdir / "metrics.jsonl"),
                     _final_state(workdir))
  (records_1, (step_1, state_1)), (records_4, (step_4, state_4)) = (
      runs[1], runs[4])
  assert step_1 == step_4 == 12
  _records_close(records_1, records_4)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      state_1, state_4)


def test_several_windows_per_call_resume_exactly(tmp_path):
  config = tiny("copy", method="dni", num_steps=16, log_every=4,
                checkpoint_every=8, windows_per_call=4,
                **{"data.check_every": 2, "data.threshold": 1e9})
  train.train_and_evaluate(config, tmp_path / "straight")
  config.num_steps = 8
  train.train_and_evaluate(config, tmp_path / "resumed")
  config.num_steps = 16  # a rerun with a larger budget resumes from step 8
  train.train_and_evaluate(config, tmp_path / "resumed")
  assert_same_run(tmp_path / "straight", tmp_path / "resumed", 16)
