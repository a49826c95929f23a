"""``experiments.main`` as a user meets it: one-paragraph errors, help, Ctrl-C."""

import os
import re
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY = ("--config.num_steps=4", "--config.log_every=2",
         "--config.eval_every=2", "--config.model.hidden=(8,8)")


def _main(*args, timeout=300):
  return subprocess.run(
      [sys.executable, "-m", "experiments.main", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=timeout,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))


def _one_line_error(done, *fragments):
  assert done.returncode != 0
  assert "Traceback" not in done.stderr, done.stderr[-3000:]
  errors = [line for line in done.stderr.splitlines()
            if line.startswith("error: ")]
  assert len(errors) == 1, done.stderr[-3000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  return errors[0]


@pytest.mark.parametrize("args,fragments", [
    (("--config.foo=1",), ("no field 'foo'", "--print_config")),
    (("--config.opt.learnin_rate=1",),
     ("no field 'opt.learnin_rate'", "Did you mean opt.learning_rate")),
    (("--config=configs/copy.py", "--config.unrol=3"),
     ("no field 'unrol'", "Did you mean unroll")),
    (("--config=configs/no_such.py",), ("no such config file",
                                        "--list_configs")),
    (("--config.num_steps=abc",), ("--config.num_steps=abc",)),
    (("--workdir=/proc/dni_jax_x",), ("cannot write to --workdir",)),
    (("--config.num_steps=0",), ("num_steps must be positive",)),
    (("--config.method=bprop",), ("unknown method 'bprop'",)),
])
def test_mistakes_end_in_one_line(args, fragments, tmp_path):
  _one_line_error(_main(f"--workdir={tmp_path / 'w'}", *args), *fragments)


def test_workdir_of_another_config_and_file_as_workdir(tmp_path):
  done = _main(f"--workdir={tmp_path}", "--config.method=cdni", *_TINY)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "[cdni] step 4 | test loss" in done.stdout
  assert "result after 4 steps" in done.stdout
  _one_line_error(_main(f"--workdir={tmp_path}", "--config.method=cdni",
                        "--config.opt.learning_rate=0.03", *_TINY),
                  "opt.learning_rate: 0.01 -> 0.03", "--overwrite")
  again = _main(f"--workdir={tmp_path}", "--config.method=cdni", *_TINY)
  assert "already finished at step 4" in again.stdout
  assert "\ncdni " in again.stdout
  (tmp_path / "afile").write_text("")
  _one_line_error(_main(f"--workdir={tmp_path / 'afile'}"), "is a file")


def test_help_lists_the_configs_and_print_config_every_field():
  help_text = _main("--help").stdout
  assert "configs/mnist_fcn.py" in help_text and "configs/copy.py" in help_text
  assert "--overwrite" in help_text and "--print_config" in help_text
  printed = _main("--config=configs/copy.py", "--print_config",
                  "--config.unroll=5")
  assert printed.returncode == 0
  assert "unroll: 5" in printed.stdout and "sg_scale: 0.1" in printed.stdout


@pytest.mark.filterwarnings("ignore:os.fork")  # preexec_fn; the child execs
def test_ctrl_c_says_where_and_keeps_the_checkpoint(tmp_path):
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.main", f"--workdir={tmp_path}",
       "--config.method=cdni", "--config.num_steps=10000000",
       "--config.checkpoint_every=20", "--config.log_every=20"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, JAX_PLATFORMS="cpu"),
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  for line in proc.stdout:  # a checkpoint is saved with every progress line
    if "[cdni] step 40/" in line:
      break
  proc.send_signal(signal.SIGINT)
  try:
    _, stderr = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 130, stderr[-2000:]
  assert "Traceback" not in stderr
  assert "[cdni] interrupted at step" in stderr
  assert "resumes from the checkpoint of step" in stderr
  assert os.listdir(tmp_path / "checkpoints")


def test_nan_message_does_not_contradict_itself(tmp_path):
  done = _main(f"--workdir={tmp_path}", "--config.method=backprop",
               "--config.opt.learning_rate=1e38", *_TINY)
  line = _one_line_error(done, "training diverged")
  assert "no checkpoint had been saved yet" in line
  assert "resumes from" not in line


def test_benchmark_prints_its_table_first_with_no_absl_noise():
  done = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--rounds=1",
       "--steps=1", "--batch_size=8", "--width=16"], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.splitlines()[0].startswith("device: cpu")
  assert "Unable to initialize backend" not in done.stdout + done.stderr
  assert done.stdout.splitlines()[-1].startswith("ratio dni/backprop=")


def test_benchmark_sweep_prints_its_speedup_line():
  done = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark_sweep", "--members=2",
       "--binary_steps=20", "--copy_windows=10",
       "--step_rounds=2"], cwd=ROOT,
      capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert done.returncode == 0, done.stderr[-2000:]
  lines = done.stdout.splitlines()
  # The suite's 4 fake CPU devices (conftest.py) reach the subprocess.
  assert lines[0].startswith("4 local cpu device(s); one run uses one, the "
                             "group of 2 is split over 2;"), lines[0]
  assert lines[1].split()[:2] == ["task", "runs"]
  # Where the time goes: each task's matmuls alone, and the floor they set.
  for task, dots, mflop in (("binary_addition", 12, "19.0"),
                            ("copy", 27, "206.0")):
    assert any(re.fullmatch(
        rf"{task} matmuls alone \({dots} dot products, {mflop} MFLOP a "
        r"member's step\): one run [\d.]+ ms \(\d+ GFLOP/s\), the group of 2 "
        r"[\d.]+ ms \(\d+ GFLOP/s\)", line) for line in lines), done.stdout
    assert any(re.fullmatch(
        rf"{task} floor: the group's \d+ steps need at least [\d.]+ s of "
        r"matmuls, so the speedup is at most [\d.]+x \([\d.]+x with the "
        r"vmapped run's other [\d.]+ s\)", line) for line in lines), done.stdout
  assert re.fullmatch(r"sweep2 speedup binary_addition=[\d.]+ copy=[\d.]+",
                      lines[-1])
