"""Runs never mix: a workdir remembers its config; finished runs say so."""

import glob
import os

import pytest

from dni_jax.errors import CheckpointError
from dni_jax.errors import WorkdirError
from dni_jax.training import tensorboard
from dni_jax.training import train
from dni_jax.training import workdir as workdir_lib
from dni_jax.training.metrics_log import read_metrics
from test_train import _final_state
from test_train import tiny


def _binary(**overrides):
  overrides.setdefault("method", "cdni")
  overrides.setdefault("model.hidden", (8, 8))
  return tiny("binary_addition", **overrides)


def _snapshot(folder):
  """Every file under ``folder`` with its bytes."""
  files = {}
  for path in glob.glob(os.path.join(folder, "**"), recursive=True):
    if os.path.isfile(path):
      with open(path, "rb") as f:
        files[os.path.relpath(path, folder)] = f.read()
  return files


@pytest.mark.parametrize("field,value", [("opt.learning_rate", 3e-2),
                                         ("model.hidden", (16, 8)),
                                         ("method", "dni"),
                                         ("seed", 1)])
def test_another_config_is_refused_and_nothing_changes(tmp_path, field,
                                                       value):
  train.train_and_evaluate(_binary(), tmp_path)
  before = _snapshot(tmp_path)
  with pytest.raises(WorkdirError, match=rf"another config \({field}: .* ->"
                     r".*a new --workdir.*--overwrite"):
    train.train_and_evaluate(_binary(**{field: value}), tmp_path)
  assert _snapshot(tmp_path) == before


def test_overwrite_starts_over(tmp_path, capsys):
  train.train_and_evaluate(_binary(), tmp_path)
  capsys.readouterr()
  summary = train.train_and_evaluate(_binary(seed=1), tmp_path,
                                     overwrite=True)["cdni"]
  assert summary["step"] == 4
  out = capsys.readouterr().out
  assert "resuming" not in out
  # What is deleted is said first.
  assert out.splitlines()[0] == (
      f"--overwrite: deleting the run in {tmp_path} (made by another config: "
      "seed: 0 -> 1; its checkpoint of step 4) and starting over there.")
  assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")
          if r["split"] == "train"] == [2, 4]


def test_extending_num_steps_resumes_and_equals_one_run(tmp_path, capsys):
  train.train_and_evaluate(_binary(num_steps=6), tmp_path / "straight")
  train.train_and_evaluate(_binary(num_steps=4), tmp_path / "extended")
  train.train_and_evaluate(_binary(num_steps=6), tmp_path / "extended")
  assert "resuming from step 4" in capsys.readouterr().out
  assert read_metrics(tmp_path / "straight" / "metrics.jsonl") == read_metrics(
      tmp_path / "extended" / "metrics.jsonl")
  step_a, a = _final_state(tmp_path / "straight")
  step_b, b = _final_state(tmp_path / "extended")
  assert step_a == step_b == 6
  assert all((x == y).all() for x, y in zip(
      __import__("jax").tree_util.tree_leaves(a),
      __import__("jax").tree_util.tree_leaves(b)))


def test_finished_run_says_so_and_reprints_its_summary(tmp_path, capsys):
  first = train.train_and_evaluate(_binary(), tmp_path)["cdni"]
  capsys.readouterr()
  again = train.train_and_evaluate(_binary(), tmp_path)["cdni"]
  out = capsys.readouterr().out
  assert "already finished at step 4" in out and "compiling" not in out
  assert again == first
  assert "binary_addition: result after 4 steps" in out
  assert "\ncdni " in out  # the one-row table


def test_single_run_prints_compiling_test_lines_and_a_summary_row(tmp_path,
                                                                  capsys):
  train.train_and_evaluate(_binary(), tmp_path)
  out = capsys.readouterr().out
  assert out.index("[cdni] compiling") < out.index("[cdni] step 2/4")
  assert "[cdni] step 2 | test loss" in out and "[cdni] step 4 | test loss" in out
  assert "result after 4 steps" in out and "test err %" in out


def test_files_without_a_config_are_refused(tmp_path, capsys):
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "train"}\n')
  with pytest.raises(WorkdirError, match="no config.json"):
    train.train_and_evaluate(_binary(), tmp_path)
  assert (tmp_path / "metrics.jsonl").read_text().startswith('{"step": 1')
  capsys.readouterr()
  train.train_and_evaluate(_binary(), tmp_path, overwrite=True)
  assert capsys.readouterr().out.splitlines()[0] == (
      f"--overwrite: deleting the run in {tmp_path} (no config.json, config "
      "unknown; no checkpoint yet) and starting over there.")


def test_a_comparison_into_a_single_run_workdir_is_refused(tmp_path):
  train.train_and_evaluate(_binary(), tmp_path)
  with pytest.raises(WorkdirError, match="holds a single-method run"):
    train.train_and_evaluate(_binary(method="dni,cdni"), tmp_path)


def test_a_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path):
  train.train_and_evaluate(_binary(), tmp_path)
  # Same recorded config, but the checkpoint is of another network.
  config_json = (tmp_path / "config.json").read_text()
  other = _binary(num_steps=6, **{"model.hidden": (16, 8)})
  (tmp_path / "config.json").write_text(
      other.to_json_best_effort(indent=2).replace('"num_steps": 6',
                                                  '"num_steps": 4'))
  with pytest.raises(CheckpointError, match="cannot be restored.*--overwrite"):
    train.train_and_evaluate(other, tmp_path)
  assert config_json  # the original run's files are still there
  assert workdir_lib.has_run(tmp_path)


def test_file_as_workdir_and_unwritable_workdir(tmp_path):
  (tmp_path / "afile").write_text("")
  with pytest.raises(WorkdirError, match="is a file, not a folder"):
    train.train_and_evaluate(_binary(), tmp_path / "afile")
  with pytest.raises(WorkdirError, match="cannot write"):
    train.train_and_evaluate(_binary(), "/proc/dni_jax_no_such_dir")


def test_tensorboard_events_hold_every_metric(tmp_path):
  train.train_and_evaluate(_binary(method="backprop,cdni"), tmp_path)
  for method in ("backprop", "cdni"):
    (events,) = glob.glob(str(tmp_path / method / "events.out.tfevents.*"))
    scalars = tensorboard.read_scalars(events)
    assert {"train/loss", "train/accuracy", "test/loss", "test/accuracy",
            "test/exact_match"} <= set(scalars)
    assert ("train/synth_loss/0" in scalars) == (method == "cdni")
    assert [s for s, _ in scalars["test/accuracy"]] == [2, 4]
    jsonl = [r["loss"] for r in read_metrics(tmp_path / method /
                                             "metrics.jsonl")
             if r["split"] == "train"]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx(jsonl)


def test_a_run_made_before_a_field_existed_still_matches_its_config(tmp_path,
                                                                     capsys):
  """config.json without dni.synth_delay etc.: the neutral value matches."""
  import json  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(_binary(), tmp_path)
  path = tmp_path / "config.json"
  config = json.loads(path.read_text())
  for key in ("synth_delay", "input_model", "input_hidden", "update_prob",
              "schedule_clock"):
    del config["dni"][key]
  path.write_text(json.dumps(config))
  capsys.readouterr()
  train.train_and_evaluate(_binary(), tmp_path)
  assert "already finished at step 4" in capsys.readouterr().out
  # A value that behaves differently from the old code is another config.
  with pytest.raises(WorkdirError, match=r"dni.synth_delay: 0 -> 2"):
    train.train_and_evaluate(_binary(**{"dni.synth_delay": 2}), tmp_path)


def test_a_stochastic_run_made_before_the_schedule_clock_resumes_as_it_ran(
    tmp_path, capsys):
  """Its units' schedules counted their own updates: under today's default
  (global steps) it is another config; with the old clock it resumes."""
  import json  # pylint: disable=g-import-not-at-top
  stochastic = {"dni.update_prob": 0.5}
  train.train_and_evaluate(_binary(**stochastic), tmp_path)
  path = tmp_path / "config.json"
  config = json.loads(path.read_text())
  del config["dni"]["schedule_clock"]
  path.write_text(json.dumps(config))
  with pytest.raises(WorkdirError,
                     match=r"dni.schedule_clock: 'updates' -> 'steps'"):
    train.train_and_evaluate(_binary(**stochastic), tmp_path)
  capsys.readouterr()
  train.train_and_evaluate(
      _binary(**stochastic, **{"dni.schedule_clock": "updates"}), tmp_path)
  assert "already finished at step 4" in capsys.readouterr().out


def _tiny(method, **overrides):
  import test_train  # pylint: disable=g-import-not-at-top
  return test_train.tiny("binary_addition", method=method,
                         **{"model.hidden": (8, 8), **overrides})


def test_a_single_run_is_refused_where_a_comparison_lives(tmp_path):
  train.train_and_evaluate(_tiny("backprop,dni"), tmp_path)
  for overwrite in (False, True):
    with pytest.raises(WorkdirError, match=r"holds the runs of a comparison "
                       r"or a sweep in its folders \(backprop, dni\)"):
      train.train_and_evaluate(_tiny("cdni"), tmp_path, overwrite)
  assert not os.path.exists(tmp_path / "config.json")
  # The comparison itself still resumes there.
  train.train_and_evaluate(_tiny("backprop,dni"), tmp_path)


def test_overwrite_lets_a_comparison_replace_a_single_run(tmp_path, capsys):
  train.train_and_evaluate(_tiny("cdni"), tmp_path)
  with pytest.raises(WorkdirError, match="or rerun with --overwrite"):
    train.train_and_evaluate(_tiny("backprop,dni"), tmp_path)
  train.train_and_evaluate(_tiny("backprop,dni"), tmp_path, True)
  assert "--overwrite: deleting the run in" in capsys.readouterr().out
  assert not os.path.exists(tmp_path / "config.json")
  assert os.path.exists(tmp_path / "dni" / "config.json")


def test_a_sweep_checks_every_members_folder_before_training(tmp_path):
  from dni_jax.training import sweep  # pylint: disable=g-import-not-at-top
  sweep_list = [{"method": "backprop"}, {"method": "dni"}]
  train.train_and_evaluate(_tiny("dni", seed=7), tmp_path / "method=dni")
  with pytest.raises(WorkdirError, match=r"method=dni holds a run made by "
                     r"another config \(seed: 7 -> 0\)"):
    sweep.run_sweep(_tiny("dni"), sweep_list, str(tmp_path))
  assert not os.path.exists(tmp_path / "method=backprop")  # nothing trained


def test_a_linear_synthesizer_run_resumes_under_other_hidden_layer_defaults(
    tmp_path, capsys):
  """dni.hidden and dni.use_batch_norm build only mlp/conv synthesizers: a
  linear run resumes when their defaults change; an mlp run is refused."""
  train.train_and_evaluate(_binary(), tmp_path / "linear")
  capsys.readouterr()
  train.train_and_evaluate(
      _binary(**{"dni.hidden": (6,), "dni.use_batch_norm": False}),
      tmp_path / "linear")
  assert "already finished at step 4" in capsys.readouterr().out
  train.train_and_evaluate(_binary(**{"dni.synthesizer": "mlp"}),
                           tmp_path / "mlp")
  with pytest.raises(WorkdirError, match=r"dni.use_batch_norm: True -> False"):
    train.train_and_evaluate(_binary(**{"dni.synthesizer": "mlp",
                                        "dni.use_batch_norm": False}),
                             tmp_path / "mlp")
  with pytest.raises(WorkdirError, match=r"dni.hidden: \[4\] -> \[6\]"):
    train.train_and_evaluate(_binary(**{"dni.synthesizer": "mlp",
                                        "dni.hidden": (6,)}),
                             tmp_path / "mlp")
  # Nor is a change of synthesizer hidden behind the linear exemption.
  with pytest.raises(WorkdirError, match=r"dni.synthesizer: 'linear' -> 'mlp'"):
    train.train_and_evaluate(_binary(**{"dni.synthesizer": "mlp"}),
                             tmp_path / "linear")
