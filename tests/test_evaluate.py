"""experiments.evaluate: a run's latest checkpoint, evaluated with its config."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from dni_jax.data import char_corpus
from dni_jax.errors import CheckpointError
from dni_jax.errors import ConfigError
from dni_jax.errors import WorkdirError
from dni_jax.training import evaluate
from dni_jax.training import train
from dni_jax.training.metrics_log import read_metrics
from test_train import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _binary(**overrides):
  overrides.setdefault("model.hidden", (8, 8))
  return tiny("binary_addition", **overrides)


def _files(folder):
  return {p: os.path.getmtime(p) for p in glob.glob(
      os.path.join(folder, "**"), recursive=True)}


def _last(run_dir, split):
  return [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl"))
          if r["split"] == split][-1]


def test_a_comparison_gives_each_methods_test_metrics(tmp_path):
  train.train_and_evaluate(_binary(method="backprop,cdni", num_steps=6,
                                   checkpoint_every=4), tmp_path)
  before = _files(tmp_path)
  results = evaluate.evaluate_workdir(tmp_path)
  assert _files(tmp_path) == before  # nothing written
  assert sorted(results) == ["backprop", "cdni"]
  for method, result in results.items():
    assert result["method"] == method and result["step"] == 6
    assert result["checkpoints"] == str(tmp_path / method / "checkpoints")
    # The restored state gives the run's own final evaluation.
    logged = _last(tmp_path / method, "test")
    assert result["splits"]["test"] == pytest.approx(
        {k: v for k, v in logged.items() if k not in ("step", "split")},
        rel=1e-6)
  # One run's folder: that run alone, named by its method.
  assert evaluate.evaluate_workdir(tmp_path / "cdni") == {
      "cdni": results["cdni"]}


def test_a_copy_run_gives_its_last_train_metrics(tmp_path):
  train.train_and_evaluate(tiny("copy", method="dni", unroll=3), tmp_path)
  (result,) = evaluate.evaluate_workdir(tmp_path).values()
  logged = _last(tmp_path, "train")
  assert result["step"] == 4
  assert result["splits"] == {"train": {k: v for k, v in logged.items()
                                        if k not in ("step", "split")}}


def test_data_dir_scores_the_same_checkpoint_on_other_text(tmp_path):
  """``data_dir``: the run's checkpoint on another folder's text; a copy of
  the run's own data gives its own evaluation again."""
  from test_data_errors import _write_ptb  # pylint: disable=g-import-not-at-top
  text = "".join(" ".join("abc_defg_hij") + "\n" for _ in range(100))
  other = "".join(" ".join("jih_gfed_cba") + "\n" for _ in range(20))
  for name, held_out in (("own", text[:300]), ("copy", text[:300]),
                         ("other", other)):
    (tmp_path / name).mkdir()
    _write_ptb(tmp_path / name, train=text, valid=held_out, test=held_out)
  run = tmp_path / "run"
  train.train_and_evaluate(tiny("ptb_char", method="dni", unroll=3,
                                **{"data.dir": str(tmp_path / "own")}), run)
  (own,) = evaluate.evaluate_workdir(run).values()
  (copy,) = evaluate.evaluate_workdir(run, str(tmp_path / "copy")).values()
  (other,) = evaluate.evaluate_workdir(run, str(tmp_path / "other")).values()
  assert copy == own and other["step"] == own["step"]
  assert other["splits"]["valid"]["bpc"] != own["splits"]["valid"]["bpc"]


def _file_digests(folder):
  return {os.path.join(root, name): open(os.path.join(root, name), "rb").read()
          for root, _, names in os.walk(folder) for name in names}


@pytest.mark.parametrize("method", ["bptt", "dni"])
def test_online_scores_held_out_text_while_training_on_it(tmp_path, method):
  """``evaluate_online``: a run whose learning rate has decayed to zero
  scores each split online exactly as static (the same characters of the
  same streams, so only the updates tell them apart); the run's own rate,
  on text that repeats one line, lowers the score; nothing is written."""
  from test_data_errors import _write_ptb  # pylint: disable=g-import-not-at-top
  line = " ".join("abc_defg_hij") + "\n"
  _write_ptb(tmp_path, train=line * 100, valid=line * 60, test=line * 40)
  frozen, learning = tmp_path / "frozen", tmp_path / "learning"
  common = dict(method=method, unroll=3, num_steps=4,
                **{"data.dir": str(tmp_path), "opt.learning_rate": 0.03})
  train.train_and_evaluate(tiny("ptb_char", **common, **{
      "opt.decay_steps": (2,), "opt.decay_factor": 0.0}), frozen)
  train.train_and_evaluate(tiny("ptb_char", **common), learning)
  before = _file_digests(tmp_path)
  fixed = evaluate.evaluate_online(str(frozen))
  moving = evaluate.evaluate_online(str(learning))
  assert _file_digests(tmp_path) == before
  assert fixed["step"] == moving["step"] == 4
  corpus = char_corpus.load_ptb_char(str(tmp_path))
  for split in ("valid", "test"):
    f, m = fixed["splits"][split], moving["splits"][split]
    chars = len(corpus.splits[split])  # 8 streams, windows of 3
    assert f["streams"] == 8 and f["windows"] == (chars // 8 - 1) // 3
    assert f["online_bpc"] == pytest.approx(f["static_bpc"], rel=1e-6)
    # Dozens of updates at 0.03 on one repeated line: far below static.
    assert m["online_bpc"] < m["static_bpc"] - 0.3, m
  # Text of one window per stream: scored before its update, so as static.
  (tmp_path / "short").mkdir()
  _write_ptb(tmp_path / "short", train=line * 100, valid=line * 3,
             test=line * 40)
  short = evaluate.evaluate_online(str(learning), ("valid",),
                                   str(tmp_path / "short"))["splits"]["valid"]
  assert short["windows"] == 1
  assert short["online_bpc"] == pytest.approx(short["static_bpc"], rel=1e-6)


def test_online_keeps_the_lambda_a_warmed_up_run_reached(tmp_path):
  """A run past its λ warm-up (``dni.sg_warmup``) is scored online with its
  whole λ from each split's first window, as the same checkpoint under a
  config without a warm-up is (the split's window count starts at 0, and a
  warm-up must not start again there)."""
  from test_data_errors import _write_ptb  # pylint: disable=g-import-not-at-top
  line = " ".join("abc_defg_hij") + "\n"
  _write_ptb(tmp_path, train=line * 100, valid=line * 60, test=line * 40)
  warm = tmp_path / "warm"
  train.train_and_evaluate(tiny("ptb_char", method="dni", unroll=3,
                                num_steps=4, **{
                                    "data.dir": str(tmp_path),
                                    "opt.learning_rate": 0.03,
                                    "dni.sg_scale": 1.0,
                                    "dni.sg_warmup": 2}), warm)
  plain = tmp_path / "plain"
  shutil.copytree(warm, plain)
  config = json.loads((plain / "config.json").read_text())
  config["dni"]["sg_warmup"] = 0
  (plain / "config.json").write_text(json.dumps(config))
  got = evaluate.evaluate_online(str(warm), ("valid",))["splits"]["valid"]
  want = evaluate.evaluate_online(str(plain), ("valid",))["splits"]["valid"]
  assert got["windows"] > 2
  assert got["online_bpc"] == pytest.approx(want["online_bpc"], rel=1e-6)


def test_online_refuses_runs_without_held_out_text(tmp_path):
  train.train_and_evaluate(tiny("copy", method="bptt"), tmp_path / "copy")
  train.train_and_evaluate(_binary(method="backprop"), tmp_path / "binary")
  for run in ("copy", "binary"):
    with pytest.raises(ConfigError, match="no held-out text to score online"):
      evaluate.evaluate_online(str(tmp_path / run))


def test_missing_folder_no_run_and_no_checkpoint_are_clear_errors(tmp_path):
  with pytest.raises(WorkdirError, match="does not exist; give the --workdir"):
    evaluate.evaluate_workdir(tmp_path / "nowhere")
  (tmp_path / "empty" / "sub").mkdir(parents=True)
  with pytest.raises(WorkdirError, match=r"is not a run: it has no "
                     r"config.json, and none of its folders has one"):
    evaluate.evaluate_workdir(tmp_path / "empty")
  (tmp_path / "afile").write_text("")
  with pytest.raises(WorkdirError, match="is a file"):
    evaluate.evaluate_workdir(tmp_path / "afile")
  started = tmp_path / "started"
  started.mkdir()
  (started / "config.json").write_text(_binary().to_json_best_effort())
  with pytest.raises(CheckpointError, match=r"holds a run \(config.json\) "
                     r"but no checkpoint yet: the first is saved at step 2"):
    evaluate.evaluate_workdir(started)
  assert os.listdir(started) == ["config.json"]


def _evaluate(*args):
  return subprocess.run(
      [sys.executable, "-m", "experiments.evaluate", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_command_prints_each_methods_test_metrics(tmp_path):
  train.train_and_evaluate(_binary(method="backprop,cdni"), tmp_path)
  done = _evaluate(str(tmp_path))
  assert done.returncode == 0, done.stderr[-2000:]
  lines = done.stdout.splitlines()
  assert lines[0].startswith("backend: cpu, devices: ")
  for method in ("backprop", "cdni"):
    assert (f"[{method}] checkpoint of step 4 in {tmp_path}/{method}/"
            "checkpoints") in lines
    logged = _last(tmp_path / method, "test")
    assert (f"[{method}] test accuracy {logged['accuracy']:.4f} exact_match "
            f"{logged['exact_match']:.4f} loss {logged['loss']:.4f}") in lines


@pytest.mark.parametrize("make,fragment", [
    (lambda p: p / "nowhere", "does not exist"),
    (lambda p: p, "is not a run"),
])
def test_command_errors_are_one_paragraph(tmp_path, make, fragment):
  done = _evaluate(str(make(tmp_path)))
  assert done.returncode == 1
  assert "Traceback" not in done.stderr
  errors = [l for l in done.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and fragment in errors[0], done.stderr


def test_a_step_still_being_saved_is_passed_over_for_the_one_before(tmp_path):
  train.train_and_evaluate(_binary(method="cdni", num_steps=6,
                                   checkpoint_every=2), tmp_path)
  # The marker a save in progress (or killed before its digest) leaves.
  (tmp_path / "checkpoints" / ".6.saving").write_text("")
  before = _files(tmp_path)
  (result,) = evaluate.evaluate_workdir(tmp_path).values()
  assert result["step"] == 4
  assert _files(tmp_path) == before  # a reader moves nothing
