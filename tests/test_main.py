"""``experiments.main`` as a user meets it: one-paragraph errors, help, Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY = ("--config.num_steps=4", "--config.log_every=2",
         "--config.eval_every=2", "--config.model.hidden=(8,8)")


def _main(*args, timeout=300, module="experiments.main"):
  return subprocess.run(
      [sys.executable, "-m", module, *args], cwd=ROOT,
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
    (("--config=configs/mnist_fcn.py:dni",),
     ("--config=configs/mnist_fcn.py:dni: configs/mnist_fcn.py takes no "
      "argument after ':'; drop it",)),
    (("--config.num_steps=abc",),
     ("--config.num_steps=abc", "num_steps takes a whole number (int)")),
    (("--config.opt.decay_steps=abc",),
     ("--config.opt.decay_steps=('abc',)", "takes a tuple of whole numbers "
      "(int)", "'abc' is not one")),
    (("--config.model.use_batch_norm=abc",),
     ("model.use_batch_norm takes true or false (bool)", "'abc'")),
    (("--config=configs/mnist_fcn.py", "--config.model.depth=1",
      "--config.method=dni"),
     ("method dni needs at least two stages", "model.depth=1 has 1 stage",
      "raise --config.model.depth to 2 or more",
      "--config.method=backprop")),
    (("--workdir=/proc/dni_jax_x",), ("cannot write to --workdir",)),
    (("--config.num_steps=0",),
     ("num_steps must be a whole number of at least 1, got 0",)),
    (("--config.method=bprop",), ("unknown method 'bprop'",)),
])
def test_mistakes_end_in_one_line(args, fragments, tmp_path):
  _one_line_error(_main(f"--workdir={tmp_path / 'w'}", *args), *fragments)


@pytest.mark.parametrize("module", ["experiments.main", "experiments.sweep"])
@pytest.mark.parametrize("order", [1, -1])
def test_did_you_mean_names_the_unknown_override_in_any_order(module, order,
                                                              tmp_path):
  overrides = ("--config.num_steps=100", "--config.method=dni",
               "--config.opt.learnig_rate=1e-3")[::order]
  line = _one_line_error(_main(f"--workdir={tmp_path}", *overrides,
                               module=module),
                         "--config.opt.learnig_rate:",
                         "no field 'opt.learnig_rate'",
                         "Did you mean opt.learning_rate")
  assert "'num_steps'" not in line and "'method'" not in line


def test_sweep_first_seed_starts_the_seeds_where_it_says(tmp_path):
  """``--seeds=2 --first_seed=3``: members seed=3 and seed=4, each trained
  with its own seed; --first_seed without --seeds is one line."""
  done = _main(f"--workdir={tmp_path}", "--seeds=2", "--first_seed=3",
               "--config.method=dni", *_TINY, module="experiments.sweep")
  assert done.returncode == 0, done.stderr[-2000:]
  assert sorted(n for n in os.listdir(tmp_path)
                if n.startswith("seed=")) == ["seed=3", "seed=4"]
  for seed in (3, 4):
    with open(tmp_path / f"seed={seed}" / "config.json") as f:
      assert json.load(f)["seed"] == seed
  _one_line_error(_main(f"--workdir={tmp_path / 'w'}", "--first_seed=3",
                        *_TINY, module="experiments.sweep"),
                  "--first_seed=3 needs --seeds=N")


def test_sweep_passes_the_config_argument_to_get_config_and_get_sweep(
    tmp_path):
  """``--config=path:arg`` (ml_collections' config argument) reaches both;
  here it names the method of a population over the update probability,
  whose members train as one vmapped group."""
  path = tmp_path / "population.py"
  path.write_text(
      "from configs import binary_addition\n"
      "def get_config(arg=None):\n"
      "  config = binary_addition.get_config()\n"
      "  config.method = arg or 'dni'\n"
      "  return config\n"
      "def get_sweep(arg=None):\n"
      "  return [{'method': arg, 'dni.update_prob': p, 'name': f'p{p}'}\n"
      "          for p in (0.5, 1.0)]\n")
  done = _main(f"--workdir={tmp_path / 'w'}", f"--config={path}:cdni",
               *_TINY, module="experiments.sweep")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "vmapped group of 2" in done.stdout, done.stdout
  for p in (0.5, 1.0):
    with open(tmp_path / "w" / f"p{p}" / "config.json") as f:
      saved = json.load(f)
    assert (saved["method"], saved["dni"]["update_prob"]) == ("cdni", p)
  # A get_sweep that takes no argument: one line, nothing written.
  path.write_text(path.read_text().replace("get_sweep(arg=None)",
                                           "get_sweep()").replace(
                                               "'method': arg,", ""))
  _one_line_error(_main(f"--workdir={tmp_path / 'w2'}", f"--config={path}:cdni",
                        *_TINY, module="experiments.sweep"),
                  "get_sweep() does not; give get_sweep an argument")
  assert not os.path.exists(tmp_path / "w2")


def test_sweep_print_config_prints_the_members_and_trains_nothing(tmp_path):
  done = _main(f"--workdir={tmp_path / 'w'}", "--print_config",
               "--config=configs/update_population.py:cdni_unlocked",
               module="experiments.sweep")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "\nmethod: cdni_unlocked" in done.stdout, done.stdout
  assert ("[sweep]   1. vmapped group of 16, 40000 steps of batch 256: "
          "cdni_unlocked_p0.637_seed0; ") in done.stdout, done.stdout
  assert not os.path.exists(tmp_path / "w")
  _one_line_error(_main(f"--workdir={tmp_path / 'w'}", "--print_config",
                        "--config.opt.learning_rate=-1",
                        module="experiments.sweep"),
                  "opt.learning_rate must be a positive")
  assert not os.path.exists(tmp_path / "w")


def test_workdir_of_another_config_and_file_as_workdir(tmp_path):
  done = _main(f"--workdir={tmp_path}", "--config.method=cdni", *_TINY)
  assert done.returncode == 0, done.stderr[-2000:]
  # The first line names the backend and devices (4 fake CPU devices:
  # conftest.py).
  assert done.stdout.splitlines()[0] == (
      "backend: cpu, devices: 4 (cpu:0, cpu:1, cpu:2, cpu:3)"), done.stdout
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
  done = _main("--help")
  assert done.returncode == 0, done.stderr[-2000:]
  help_text = done.stdout
  assert "configs/mnist_fcn.py" in help_text and "configs/copy.py" in help_text
  assert "--overwrite" in help_text and "--print_config" in help_text
  printed = _main("--config=configs/copy.py", "--print_config",
                  "--config.unroll=5")
  assert printed.returncode == 0
  assert "unroll: 5" in printed.stdout and "sg_scale: 0.1" in printed.stdout


@pytest.mark.parametrize("module", [
    "experiments.sweep", "experiments.reproduce", "experiments.evaluate",
    "experiments.plot", "experiments.summarize", "experiments.plot_seeds",
    "experiments.launch", "experiments.faults"])
def test_help_of_every_entry_point_exits_zero(module):
  done = _main("--help", module=module)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "Try --helpfull" in done.stdout


def test_print_config_shows_each_fields_comment(tmp_path):
  printed = _main("--config=configs/mnist_fcn.py", "--print_config",
                  "--config.opt.learning_rate=0.001")
  assert printed.returncode == 0, printed.stderr[-2000:]
  lines = printed.stdout.splitlines()

  def line(field):
    (found,) = [l for l in lines if l.startswith(field + ":")]
    return re.sub(r"  +", " ", found)

  # From configs/base.py: a comment at the end of the line, and the comment
  # lines above a field.
  assert line("opt.learning_rate") == (
      "opt.learning_rate: 0.001 # the stages' learning rate (3e-5: the "
      "paper's FF setting)")
  assert line("method").startswith("method: dni # backprop | dni | cdni")
  # The experiment config's own comment wins over base.py's.
  assert line("opt.decay_steps") == ("opt.decay_steps: (24000, 32000) # the "
                                     "paper's 300k/400k of 500k, scaled")
  # Keywords of config.update(...), and a field without any comment.
  config = tmp_path / "my_config.py"
  config.write_text(
      "from configs import base\n\n\ndef get_config():\n"
      "  config = base.get_config()\n"
      "  config.update(batch_size=8,  # tiny batches\n"
      "                num_steps=3)\n"
      "  # two lines of comment\n  # above a field\n"
      "  config.seed = 5\n"
      "  config.opt.update(name='sgd')\n"
      "  return config\n")
  printed = _main(f"--config={config}", "--print_config")
  assert printed.returncode == 0, printed.stderr[-2000:]
  lines = printed.stdout.splitlines()
  assert line("batch_size") == "batch_size: 8 # tiny batches"
  assert line("seed") == "seed: 5 # two lines of comment above a field"
  assert line("num_steps").startswith("num_steps: 3 # training steps")
  assert line("opt.name") == "opt.name: sgd # adam | sgd | momentum"
  assert line("eval_batch_size").startswith("eval_batch_size: 1000 #")
  assert line("opt.momentum") == "opt.momentum: 0.9 # momentum optimiser only"


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
  # The advice is a command that works: a lower learning rate and
  # --overwrite (or a new --workdir); the lower rate alone is refused.
  assert "--config.opt.learning_rate=1e+37" in line
  assert "--overwrite" in line and "a new --workdir" in line
  _one_line_error(_main(f"--workdir={tmp_path}", "--config.method=backprop",
                        "--config.opt.learning_rate=0.01", *_TINY),
                  "another config", "--overwrite")
  again = _main(f"--workdir={tmp_path}", "--config.method=backprop",
                "--config.opt.learning_rate=0.01", "--overwrite", *_TINY)
  assert again.returncode == 0, again.stderr[-2000:]
  assert (f"--overwrite: deleting the run in {tmp_path} (made by another "
          "config: opt.learning_rate: 1e+38 -> 0.01; no checkpoint yet) and "
          "starting over there.") in again.stdout.splitlines()
  assert "result after 4 steps" in again.stdout


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


def test_benchmark_times_a_stale_interface_beside_current_synthesizers():
  run = lambda *flags: subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--rounds=1",
       "--steps=1", "--batch_size=8", "--width=16", *flags], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  done = run("--synth_delays=1,3", "--members=2")
  assert done.returncode == 0, done.stderr[-2000:]
  lines = done.stdout.splitlines()
  for d in (1, 3):
    (line,) = [l for l in lines if l.startswith(
        f"cdni with synthesizers {d} steps old: ")]
    assert lines[lines.index(line) + 1].startswith("  2 members vmapped: ")
  assert lines[-1].startswith("ratio dni/backprop=")
  assert "cdni d=3/backprop=" in lines[-1]
  bad = run("--synth_delays=0")
  assert bad.returncode != 0
  assert "each delay must be a whole number >= 1" in bad.stderr


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
                            ("copy", 27, "168.3")):
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
