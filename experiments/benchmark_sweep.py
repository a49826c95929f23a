"""Eight seeds in one vmapped program against the same eight runs one after another.

  python -m experiments.benchmark_sweep [--members=8] [--tasks=binary_addition,copy]

For each task, side by side in one process: ``--members`` runs of the
config, one after another (``train_and_evaluate``, each compiling its own
step), then the same runs as one sweep (``experiments.sweep``'s vmapped
group). Whole wall time each, compilation, evaluation and checkpoints
included, into fresh temporary folders; the runs' own progress lines are
silenced.

- ``binary_addition``: cDNI, the config's 12k steps.
- ``copy``: DNI, T = 3, ``--copy_windows`` windows (5k).

Then each member's final numbers are compared between the two ways (they
agree to float rounding; tests/test_sweep.py checks it). Last line:
``sweep8 speedup binary_addition=<x> copy=<y>``.
"""

import contextlib
import importlib
import io
import tempfile
import time

from absl import app
from absl import flags

from experiments import timing

_MEMBERS = flags.DEFINE_integer("members", 8, "Runs (seeds 0…N−1).")
_TASKS = flags.DEFINE_list("tasks", ["binary_addition", "copy"],
                           "Tasks to time: binary_addition, copy.")
_COPY_WINDOWS = flags.DEFINE_integer("copy_windows", 5000,
                                     "Windows per copy run.")
_BINARY_STEPS = flags.DEFINE_integer(
    "binary_steps", 0, "Steps per binary addition run; 0 = the config's.")


def _config(task: str):
  config = importlib.import_module(f"configs.{task}").get_config()
  if task == "binary_addition":
    config.method = "cdni"
    config.num_steps = _BINARY_STEPS.value or config.num_steps
  else:
    config.method = "dni"
    config.unroll = 3
    config.num_steps = _COPY_WINDOWS.value
  return config


def _final(summary: dict, task: str) -> float:
  if task == "copy":
    return summary.get("max_length_solved") or 0
  return summary["test"].get("accuracy")


def _time_task(task: str) -> tuple[float, float, list, list]:
  from dni_jax.training import sweep  # pylint: disable=g-import-not-at-top
  from dni_jax.training import train  # pylint: disable=g-import-not-at-top
  config = _config(task)
  seeds = [{"seed": s} for s in range(_MEMBERS.value)]
  quiet = io.StringIO()
  with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(quiet):
    start = time.perf_counter()
    separate = []
    for member in sweep.members(config, seeds):
      separate.append(train.train_and_evaluate(
          member.config, f"{tmp}/separate/{member.name}")[config.method])
    t_separate = time.perf_counter() - start
    start = time.perf_counter()
    summaries = sweep.run_sweep(config, seeds, f"{tmp}/sweep")
    t_sweep = time.perf_counter() - start
  together = [summaries[f"seed={s}"] for s in range(_MEMBERS.value)]
  return (t_separate, t_sweep, [_final(s, task) for s in separate],
          [_final(s, task) for s in together])


def main(argv):
  del argv
  timing.quiet_logs()
  n = _MEMBERS.value
  print(f"{'task':<16}{'runs':>6}{'one after another s':>22}"
        f"{'vmapped s':>12}{'speedup':>10}")
  speedups = {}
  finals = {}
  for task in _TASKS.value:
    t_sep, t_sweep, f_sep, f_sweep = _time_task(task)
    speedups[task] = t_sep / t_sweep
    finals[task] = (f_sep, f_sweep)
    print(f"{task:<16}{n:>6}{t_sep:>22.1f}{t_sweep:>12.1f}"
          f"{speedups[task]:>10.2f}", flush=True)
  for task, (f_sep, f_sweep) in finals.items():
    what = "max length solved" if task == "copy" else "test bit accuracy"
    print(f"{task} {what} per seed: separate "
          f"{[round(x, 4) for x in f_sep]} vmapped "
          f"{[round(x, 4) for x in f_sweep]}")
  print(f"sweep{n} speedup " + " ".join(f"{t}={s:.2f}"
                                         for t, s in speedups.items()))


if __name__ == "__main__":
  app.run(main)
