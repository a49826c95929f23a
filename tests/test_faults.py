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


def test_train_averages_after_a_resume_equal_the_uninterrupted_run(
    tmp_path, monkeypatch):
  # log_every 3, checkpoint_every 2: the resume lands inside an interval,
  # whose sums come back with the checkpoint.
  config = test_train.tiny("binary_addition", method="cdni", num_steps=9,
                           checkpoint_every=2, log_every=3, eval_every=9)
  train.train_and_evaluate(config, tmp_path / "straight")
  undo = tiny_lib.crash_batches_at(monkeypatch, 5)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path / "resumed")
  undo()
  train.train_and_evaluate(config, tmp_path / "resumed")
  straight = read_metrics(str(tmp_path / "straight" / "metrics.jsonl"))
  assert [r["step"] for r in straight if r["split"] == "train"] == [3, 6, 9]
  assert straight == read_metrics(str(tmp_path / "resumed" / "metrics.jsonl"))
  summaries = [json.loads((tmp_path / n / "summary.json").read_text())
               for n in ("straight", "resumed")]
  for key in ("train_loss", "train_accuracy"):
    if key in summaries[0]:
      assert summaries[0][key] == summaries[1][key]


def test_sweep_killed_between_member_saves_resumes_from_a_common_step(
    tmp_path, monkeypatch):
  from dni_jax.training import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  config = test_train.tiny("binary_addition", method="cdni", num_steps=8,
                           checkpoint_every=2, log_every=3, eval_every=4)
  sweep_list = [{"seed": 0}, {"seed": 1}]
  sweep_lib.run_sweep(config, sweep_list, str(tmp_path / "straight"))
  real_save = Checkpointer.save

  def save(self, step, state, extra=None):
    if step == 6 and "seed=1" in self.directory:  # seed=0 saved step 6
      raise KeyboardInterrupt("killed between the members' saves")
    return real_save(self, step, state, extra)
  monkeypatch.setattr(Checkpointer, "save", save)
  with pytest.raises(KeyboardInterrupt):
    sweep_lib.run_sweep(config, sweep_list, str(tmp_path / "resumed"))
  monkeypatch.setattr(Checkpointer, "save", real_save)
  assert Checkpointer(tmp_path / "resumed" / "seed=0" / "checkpoints"
                      ).all_steps() == [4, 6]
  sweep_lib.run_sweep(config, sweep_list, str(tmp_path / "resumed"))
  for member in ("seed=0", "seed=1"):
    a, b = tmp_path / "straight" / member, tmp_path / "resumed" / member
    assert read_metrics(str(a / "metrics.jsonl")) == read_metrics(
        str(b / "metrics.jsonl"))
    sa, sb = test_train._final_state(a), test_train._final_state(b)  # pylint: disable=protected-access
    assert sa[0] == sb[0] == 8
    jax.tree_util.tree_map(np.testing.assert_array_equal, sa[1], sb[1])
    assert (b / "summary.json").exists()
  assert (tmp_path / "resumed" / "seed=0" / "checkpoints" / "6.ahead").is_dir()


def _kill_final_save_before_its_digest(run_dir, step):
  """The state a SIGKILL leaves between Orbax's commit of the final step
  and its digest: the marker stays, no digest, no summary."""
  ck = pathlib.Path(run_dir) / "checkpoints"
  (ck / f".{step}.saving").write_text("")
  (ck / str(step) / checkpoint_lib.DIGEST_FILE).unlink()
  (pathlib.Path(run_dir) / "summary.json").unlink()


def _assert_same_run(a, b, steps):
  assert read_metrics(str(a / "metrics.jsonl")) == read_metrics(
      str(b / "metrics.jsonl"))
  sa, sb = test_train._final_state(a), test_train._final_state(b)  # pylint: disable=protected-access
  assert sa[0] == sb[0] == steps
  jax.tree_util.tree_map(np.testing.assert_array_equal, sa[1], sb[1])
  assert (b / "checkpoints" / str(steps) / checkpoint_lib.DIGEST_FILE).exists()
  assert (b / "summary.json").exists()


def test_a_final_save_killed_before_its_digest_is_saved_again(tmp_path,
                                                              capsys):
  config = test_train.tiny("binary_addition", method="cdni", num_steps=8,
                           checkpoint_every=2, log_every=3, eval_every=4)
  for name in ("straight", "resumed"):
    train.train_and_evaluate(config, tmp_path / name)
  _kill_final_save_before_its_digest(tmp_path / "resumed", 8)
  capsys.readouterr()
  train.train_and_evaluate(config, tmp_path / "resumed")
  out = capsys.readouterr()
  assert "interrupted before its digest" in out.err
  assert "resuming from step 6" in out.out
  _assert_same_run(tmp_path / "straight", tmp_path / "resumed", 8)
  ck = tmp_path / "resumed" / "checkpoints"
  assert (ck / "8.incomplete").is_dir() and not (ck / ".8.saving").exists()


def test_a_save_killed_after_its_digest_is_kept_and_a_lost_summary_rewritten(
    tmp_path, capsys):
  config = test_train.tiny("binary_addition", method="cdni", num_steps=8,
                           checkpoint_every=2, log_every=3, eval_every=4)
  run_dir = tmp_path / "run"
  train.train_and_evaluate(config, run_dir)
  ck = run_dir / "checkpoints"
  digest_before = (ck / "8" / checkpoint_lib.DIGEST_FILE).read_text()
  # Killed after the digest, before the marker went, and before the summary.
  (ck / ".8.saving").write_text("")
  (run_dir / "summary.json").unlink()
  capsys.readouterr()
  train.train_and_evaluate(config, run_dir)
  out = capsys.readouterr()
  assert "already finished at step 8" in out.out
  assert "interrupted" not in out.err
  assert not (ck / ".8.saving").exists() and not (ck / "8.incomplete").exists()
  assert (ck / "8" / checkpoint_lib.DIGEST_FILE).read_text() == digest_before
  summary = json.loads((run_dir / "summary.json").read_text())
  assert summary["step"] == 8


def test_a_sweep_member_whose_final_save_was_killed_trains_it_again(
    tmp_path, capsys):
  from dni_jax.training import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  config = test_train.tiny("binary_addition", method="cdni", num_steps=8,
                           checkpoint_every=2, log_every=3, eval_every=4)
  sweep_list = [{"seed": 0}, {"seed": 1}]
  for name in ("straight", "resumed"):
    sweep_lib.run_sweep(config, sweep_list, str(tmp_path / name))
  _kill_final_save_before_its_digest(tmp_path / "resumed" / "seed=1", 8)
  capsys.readouterr()
  sweep_lib.run_sweep(config, sweep_list, str(tmp_path / "resumed"))
  out = capsys.readouterr()
  assert "interrupted before its digest" in out.err
  assert "resuming from step 6" in out.out  # seed=1 alone; seed=0 finished
  # The finished member is not trained again: its run stays as it was.
  _assert_same_run(tmp_path / "straight" / "seed=0",
                   tmp_path / "resumed" / "seed=0", 8)
  assert not list((tmp_path / "resumed").glob("*/checkpoints/*.ahead"))
  # seed=1 retrains its last interval as a run of its own (not vmapped):
  # the same records and state up to float rounding.
  a, b = tmp_path / "straight" / "seed=1", tmp_path / "resumed" / "seed=1"
  ra, rb = (read_metrics(str(d / "metrics.jsonl")) for d in (a, b))
  assert [(r["step"], r["split"]) for r in ra] == [
      (r["step"], r["split"]) for r in rb]
  for x, y in zip(ra, rb):
    for k in x:
      if k not in ("step", "split"):
        np.testing.assert_allclose(x[k], y[k], rtol=1e-4, atol=1e-5)
  sa, sb = test_train._final_state(a), test_train._final_state(b)  # pylint: disable=protected-access
  assert sa[0] == sb[0] == 8
  jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5),
      sa[1], sb[1])
  assert (b / "checkpoints" / "8.incomplete").is_dir()
  assert (b / "summary.json").exists()


def test_a_second_process_on_a_workdir_is_refused(tmp_path):
  from dni_jax.training import files  # pylint: disable=g-import-not-at-top
  config = test_train.tiny("binary_addition", method="dni")
  with files.WorkdirLock(str(tmp_path), "a run in another process"):
    with pytest.raises(WorkdirError, match=r"is in use by another process "
                       r"\(pid \d+ .*a run in another process"):
      train.train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == [".lock"]  # nothing written
  train.train_and_evaluate(config, str(tmp_path))  # free again


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path,
                                                              monkeypatch):
  from dni_jax.training import files  # pylint: disable=g-import-not-at-top
  path = tmp_path / "config.json"
  path.write_text("old")

  def fail(*args):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(os, "replace", fail)
  with pytest.raises(OSError):
    files.write_atomic(str(path), "new")
  assert path.read_text() == "old"
  assert os.listdir(tmp_path) == ["config.json"]  # no temporary left


def _main(workdir, *extra, preexec_fn=None, wait=True):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parent.parent
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  if preexec_fn is not None:
    # A process under a resource limit (a full disk) keeps out of the test
    # session's compilation cache: a cache write cut by the limit would add a
    # warning to the stderr the test reads, and leave a truncated entry.
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
  args = [sys.executable, "-m", "experiments.main", f"--workdir={workdir}",
          "--config.method=cdni", "--config.model.hidden=(16,16)",
          *extra]
  if not wait:
    return subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  return subprocess.run(args, cwd=root, env=env, capture_output=True,
                        text=True, timeout=300, preexec_fn=preexec_fn)


def test_full_disk_is_one_paragraph_and_the_rerun_resumes_exactly(tmp_path):
  import resource  # pylint: disable=g-import-not-at-top
  common = ["--config.num_steps=60", "--config.checkpoint_every=20",
            "--config.log_every=7", "--config.eval_every=30"]
  done = _main(tmp_path / "straight", *common)
  assert done.returncode == 0, done.stderr[-2000:]
  size = sum(p.stat().st_size for p in
             (tmp_path / "straight" / "checkpoints" / "20").rglob("*")
             if p.is_file())
  limit = size // 3  # a file-size limit the first save already exceeds...

  def small_disk():
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
  full = _main(tmp_path / "full", *common, preexec_fn=small_disk)
  assert full.returncode != 0
  lines = [l for l in full.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, full.stderr[-3000:]
  assert lines[0].startswith("error: the system refused a write")
  assert "rerun the same command" in lines[0]
  again = _main(tmp_path / "full", *common)
  assert again.returncode == 0, again.stderr[-2000:]
  assert read_metrics(str(tmp_path / "full" / "metrics.jsonl")) == (
      read_metrics(str(tmp_path / "straight" / "metrics.jsonl")))
  digests = [json.loads((tmp_path / n / "checkpoints" / "60" /
                         checkpoint_lib.DIGEST_FILE).read_text())["leaves"]
             for n in ("straight", "full")]
  assert digests[0] == digests[1]


def test_sigterm_stops_like_ctrl_c_and_keeps_tensorboard(tmp_path):
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from dni_jax.training import tensorboard  # pylint: disable=g-import-not-at-top
  proc = _main(tmp_path, "--config.num_steps=1000000",
               "--config.checkpoint_every=20", "--config.log_every=10",
               "--config.eval_every=1000000", wait=False)
  deadline = time.time() + 120
  while time.time() < deadline and not list(
      (tmp_path / "checkpoints").glob("[0-9]*")):
    time.sleep(0.2)
  time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 130, err[-2000:]
  assert "interrupted at step" in err and "resumes from the checkpoint" in err
  assert "Traceback" not in err
  events = list(tmp_path.glob("events.out.tfevents.*"))
  assert events
  steps = [s for s, _ in tensorboard.read_scalars(str(events[0]))[
      "train/loss"]]
  assert steps and max(steps) >= 20  # flushed at the checkpoint, not lost


def test_a_signal_to_another_thread_waits_for_the_deferred_block():
  """A signal the system hands to a thread other than the main one (Orbax's
  and XLA's threads run during a save) still waits for the block's end."""
  import signal  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from dni_jax.training import files  # pylint: disable=g-import-not-at-top
  seen = []
  old = signal.signal(signal.SIGTERM, lambda s, _: seen.append(s))
  go, sent = threading.Event(), threading.Event()

  def other_thread():  # started before the block, so it masks nothing
    go.wait()
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    sent.set()
  thread = threading.Thread(target=other_thread)
  thread.start()
  try:
    with files.signals_deferred():
      go.set()
      assert sent.wait(10)
      for _ in range(50):  # bytecodes on which Python runs pending handlers
        time.sleep(0.01)
      during = list(seen)
    after = list(seen)
  finally:
    thread.join()
    signal.signal(signal.SIGTERM, old)
  assert during == [] and after == [signal.SIGTERM]


def test_summarize_reads_a_cut_metrics_file_and_names_a_damaged_one(
    tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parent.parent
  config = test_train.tiny("binary_addition", method="dni", num_steps=4)
  train.train_and_evaluate(config, str(tmp_path / "run"))
  path = tmp_path / "run" / "metrics.jsonl"
  with open(path, "a") as f:
    f.write('{"step": 5, "spl')

  def summarize():
    return subprocess.run([sys.executable, "-m", "experiments.summarize",
                           str(tmp_path)], cwd=root, capture_output=True,
                          text=True, timeout=120)
  done = summarize()
  assert done.returncode == 0, done.stderr
  assert "last line is cut short" in done.stderr
  path.write_text('{"st\n' + path.read_text())
  done = summarize()
  assert done.returncode == 1 and "Traceback" not in done.stderr
  assert done.stderr.startswith("error: ") and "line 1" in done.stderr


def test_random_kills_and_damage_end_exact_or_refused(tmp_path):
  """A few trials of experiments.faults (many more: run the script)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parent.parent
  done = subprocess.run(
      [sys.executable, "-m", "experiments.faults", "--trials=3", "--seed=3",
       "--steps=240", "--checkpoint_every=40", "--log_every=15",
       "--kinds=kill,kill+flip,two_writers", f"--workdir={tmp_path}"],
      cwd=root, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
  assert "lost: 0" in done.stdout


def test_a_save_killed_before_its_digest_is_not_trusted(tmp_path, capsys):
  ckpt = Checkpointer(tmp_path / "ck")
  ckpt.save(2, _state(2.0), extra={"count": 1})
  ckpt.save(4, _state(4.0), extra={"count": 3})
  ckpt.close()
  # A kill between Orbax's commit and the digest: the marker stays, the
  # digest (and the train sums saved in it) never comes.
  (tmp_path / "ck" / ".4.saving").write_text("")
  (tmp_path / "ck" / "4" / checkpoint_lib.DIGEST_FILE).unlink()
  ckpt = Checkpointer(tmp_path / "ck")
  state, step = ckpt.restore_or(_state(0.0))
  assert step == 2 and ckpt.extra(2) == {"count": 1}
  assert "interrupted before its digest" in capsys.readouterr().err
  assert not (tmp_path / "ck" / ".4.saving").exists()
  ckpt.save(4, _state(4.0))
  assert ckpt.all_steps() == [2, 4]
  ckpt.close()


def test_a_reading_tool_takes_the_newest_complete_save_and_changes_nothing(
    tmp_path):
  # evaluate, synth_fit and two_networks_fit read a run that may be
  # training now: a save still being written is passed over, not moved.
  with pytest.raises(CheckpointError, match="nothing here"):
    checkpoint_lib.restore_newest_complete(
        str(tmp_path / "ck"), _state(0.0), "nothing here")
  assert not (tmp_path / "ck").exists()  # not even an empty folder made
  ckpt = Checkpointer(tmp_path / "ck")
  ckpt.save(2, _state(2.0))
  ckpt.save(4, _state(4.0))
  ckpt.close()
  (tmp_path / "ck" / ".4.saving").write_text("")  # step 4 mid-save
  before = sorted(p.name for p in (tmp_path / "ck").iterdir())
  state, step = checkpoint_lib.restore_newest_complete(
      str(tmp_path / "ck"), _state(0.0), "nothing here")
  assert step == 2
  np.testing.assert_array_equal(state["w"], _state(2.0)["w"])
  assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == before
  (tmp_path / "ck" / ".2.saving").write_text("")
  with pytest.raises(CheckpointError, match="nothing here"):
    checkpoint_lib.restore_newest_complete(
        str(tmp_path / "ck"), _state(0.0), "nothing here")
