"""Faults an operator meets: damaged checkpoints, cut metrics files.

Whatever the fault, a run ends resumable to the uninterrupted result, or
refused in one paragraph that names the file, with nothing intact deleted.
"""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dni_jax.errors import CheckpointError
from dni_jax.errors import WorkdirError
from dni_jax.training import checkpoint as checkpoint_lib
from dni_jax.training import train
from dni_jax.training.checkpoint import Checkpointer
from dni_jax.training.checkpoint import ProcessLocalCheckpointer
from dni_jax.training.metrics_log import read_metrics
import test_train
import tiny as tiny_lib


def _state(value):
  return {"w": jnp.full((64,), value, jnp.float32),
          "opt": (jnp.arange(16, dtype=jnp.float32) * value,)}


def _largest_file(folder) -> pathlib.Path:
  files = [p for p in pathlib.Path(folder).rglob("*") if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def _flip(path: pathlib.Path, offset=None, bit=0):
  data = bytearray(path.read_bytes())
  offset = len(data) // 2 if offset is None else offset
  data[offset] ^= 1 << bit
  path.write_bytes(bytes(data))


def _damage_digest_leaf(directory, step):
  """Makes the stored digest disagree with the arrays, as a flipped bit
  in an array would."""
  path = pathlib.Path(directory) / str(step) / checkpoint_lib.DIGEST_FILE
  record = json.loads(path.read_text())
  record["leaves"][1] = "0" * 64
  path.write_text(json.dumps(record))


@pytest.mark.parametrize("damage", ["digest", "array_bytes"])
def test_damaged_newest_checkpoint_falls_back_to_the_older_one(
    tmp_path, capsys, damage):
  ckpt = Checkpointer(tmp_path / "ck")
  ckpt.save(2, _state(2.0))
  ckpt.save(4, _state(4.0))
  ckpt.close()
  if damage == "digest":
    _damage_digest_leaf(tmp_path / "ck", 4)
  else:  # the bytes of the stored arrays themselves
    for path in (tmp_path / "ck" / "4").rglob("*"):
      if path.is_file() and "/d/" in str(path):
        _flip(path, bit=3)
  ckpt = Checkpointer(tmp_path / "ck")
  state, step = ckpt.restore_or(_state(0.0))
  assert step == 2
  np.testing.assert_array_equal(state["w"], _state(2.0)["w"])
  err = capsys.readouterr().err
  assert "damaged checkpoint" in err and "resuming from step 2" in err
  assert len(err.strip().splitlines()) == 1
  # Nothing deleted: the damaged step is kept beside, out of Orbax's way.
  assert (tmp_path / "ck" / "4.damaged").is_dir()
  assert ckpt.all_steps() == [2]
  ckpt.save(4, _state(5.0))  # the step can be saved again
  ckpt.close()


def test_no_intact_checkpoint_is_refused_and_nothing_moves(tmp_path):
  ckpt = Checkpointer(tmp_path / "ck")
  ckpt.save(2, _state(2.0))
  ckpt.close()
  _damage_digest_leaf(tmp_path / "ck", 2)
  ckpt = Checkpointer(tmp_path / "ck")
  with pytest.raises(CheckpointError, match=r"step 2 .* is damaged: 1 of 2 "
                     r"arrays differ .*\['w'\]"):
    ckpt.restore_or(_state(0.0))
  assert ckpt.all_steps() == [2]
  assert not list((tmp_path / "ck").glob("*.damaged*"))
  ckpt.close()


def test_process_local_checkpoint_is_verified_and_falls_back(tmp_path,
                                                             capsys):
  ckpt = ProcessLocalCheckpointer(tmp_path / "ck")
  ckpt.save(2, _state(2.0))
  ckpt.save(4, _state(4.0))
  path = tmp_path / "ck" / "4.npz"
  with np.load(path) as data:
    arrays = {k: data[k] for k in data.files}
  arrays["00000"] = arrays["00000"].copy()
  arrays["00000"][3] += 1.0  # one element changed, the digest kept
  np.savez(path, **arrays)
  state, step = ckpt.restore_or(_state(0.0))
  assert step == 2
  np.testing.assert_array_equal(state["opt"][0], _state(2.0)["opt"][0])
  assert "resuming from step 2" in capsys.readouterr().err
  assert (tmp_path / "ck" / "4.npz.damaged").exists()


def test_run_resumes_exactly_past_a_damaged_checkpoint(tmp_path,
                                                       monkeypatch):
  config = test_train.tiny("binary_addition", method="cdni", num_steps=8,
                           checkpoint_every=2, log_every=1, eval_every=4)
  train.train_and_evaluate(config, tmp_path / "straight")
  undo = tiny_lib.crash_batches_at(monkeypatch, 5)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path / "resumed")
  undo()
  ck = tmp_path / "resumed" / "checkpoints"
  assert Checkpointer(ck).all_steps() == [2, 4]
  _flip(_largest_file(ck / "4" / "default"), bit=5)
  _damage_digest_leaf(ck, 4)  # whatever the flip hit, the check fails
  train.train_and_evaluate(config, tmp_path / "resumed")
  for name in ("straight", "resumed"):
    assert (tmp_path / name / "metrics.jsonl").exists()
  assert read_metrics(tmp_path / "straight" / "metrics.jsonl") == (
      read_metrics(tmp_path / "resumed" / "metrics.jsonl"))
  a = test_train._final_state(tmp_path / "straight")  # pylint: disable=protected-access
  b = test_train._final_state(tmp_path / "resumed")  # pylint: disable=protected-access
  assert a[0] == b[0] == 8
  jax.tree_util.tree_map(np.testing.assert_array_equal, a[1], b[1])
  assert (ck / "4.damaged").is_dir()


def test_cut_last_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "split": "train", "loss": 1.0}\n'
                  '{"step": 2, "split": "tr')
  assert read_metrics(str(path)) == [{"step": 1, "split": "train",
                                      "loss": 1.0}]
  err = capsys.readouterr().err
  assert "last line is cut short" in err and str(path) in err


def test_damaged_metrics_line_inside_the_file_names_file_and_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "split": "train"}\n{"st\n'
                  '{"step": 2, "split": "train"}\n')
  with pytest.raises(WorkdirError, match=r"metrics.jsonl line 2 is not a "
                     r"metrics record"):
    read_metrics(str(path))


def test_run_with_a_cut_metrics_line_resumes_exactly(tmp_path, monkeypatch):
  config = test_train.tiny("binary_addition", method="dni", num_steps=6,
                           checkpoint_every=2, log_every=1, eval_every=3)
  train.train_and_evaluate(config, tmp_path / "straight")
  undo = tiny_lib.crash_batches_at(monkeypatch, 4)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path / "resumed")
  undo()
  path = tmp_path / "resumed" / "metrics.jsonl"
  with open(path, "a") as f:  # a write cut by a full disk
    f.write('{"step": 5, "split": "train", "lo')
  train.train_and_evaluate(config, tmp_path / "resumed")
  assert read_metrics(tmp_path / "straight" / "metrics.jsonl") == (
      read_metrics(str(path)))
  assert not os.path.exists(str(path) + ".tmp")


@pytest.mark.parametrize("dying,code", [
    ("import sys; sys.exit(3)", 3),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137)])
def test_launcher_stops_the_others_when_one_process_dies(capsys, dying, code):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from experiments import launch  # pylint: disable=g-import-not-at-top
  survivor = subprocess.Popen([sys.executable, "-c",
                               "import time; time.sleep(60)"])
  dies = subprocess.Popen([sys.executable, "-c", f"import time; "
                           f"time.sleep(0.5); {dying}"])
  start = time.time()
  assert launch.supervise([survivor, dies], grace=2.0, poll=0.05) == code
  assert time.time() - start < 10
  assert survivor.poll() is not None  # stopped, not left at a barrier
  err = capsys.readouterr().err.strip()
  assert err.startswith("launch: process 1 ") and "stopped process(es) 0" in err
  assert len(err.splitlines()) == 1


def test_common_step_is_the_newest_every_process_holds():
  assert checkpoint_lib.common_step([[200, 300], [100, 200]]) == 200
  assert checkpoint_lib.common_step([[300, 400], [200, 300]]) == 300
  assert checkpoint_lib.common_step([[], []]) is None
  assert checkpoint_lib.common_step([[2], [4]]) is None


def test_pipeline_processes_agree_on_the_resume_step(tmp_path):
  """Process 1 killed during the save of step 6 (its 6.npz never renamed
  into place): the rerun resumes both processes from step 4 and ends with
  the uninterrupted run's parameters, bit for bit."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parent.parent
  workdir = tmp_path / "run"
  args = [sys.executable, "-m", "experiments.launch", "--num_processes=2",
          "--", f"--workdir={workdir}", "--config=configs/binary_addition.py",
          "--config.method=cdni", "--config.parallel.num_devices=2",
          "--config.num_steps=6", "--config.log_every=2",
          "--config.eval_every=3", "--config.checkpoint_every=2",
          "--config.model.hidden=(8,8)"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)

  def launch():
    done = subprocess.run(args, cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done

  launch()
  p0, p1 = workdir / "checkpoints", workdir / "process_1" / "checkpoints"
  records = read_metrics(str(workdir / "metrics.jsonl"))
  (p1 / "6.npz").rename(p1 / ".6.tmp.npz")  # the kill, mid-save
  launch()
  assert (p0 / "6.npz.ahead").exists()  # process 0's own, kept aside
  with np.load(p0 / "6.npz") as again, np.load(p0 / "6.npz.ahead") as first:
    assert sorted(again.files) == sorted(first.files)
    for key in first.files:
      np.testing.assert_array_equal(again[key], first[key])
  assert read_metrics(str(workdir / "metrics.jsonl")) == records
