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

Then each member's final numbers and parameters are compared between the
two ways (they agree to float rounding; tests/test_sweep.py checks it over
a few steps), and, to say where the time goes, one run's jitted step and
the vmapped group's step are timed alone, and with them the floor under
each: a program of only the step's matmuls (``experiments.matmul_floor``:
every dot product of the step, read from its jaxpr, on random operands
placed as the group's members are). The four are timed side by side, the
median of 10 interleaved rounds that share ``--step_rounds`` calls each,
after a warm-up. With the steps' times, each whole time is split into its
steps and the rest (compilation, evaluation, checkpoints, host loop).
Unless XLA merges some of their products, the group's steps cannot take
less than the steps times the group's matmul program, which bounds the
speedup; the first line gives this device's rate on one big matmul to
compare with. Last line:
``sweep8 speedup binary_addition=<x> copy=<y>``.
``--keep_freed_memory=false`` leaves glibc's allocator as it is (see
``dni_jax.training.host_memory``).

With several local devices the group's members are split over them
(``batching.Placement``); on a CPU, ask for one device per core (with
jaxlib 0.10 each device's ops still use every core's threads; the first
line's big-matmul rate shows how many are at work):

  JAX_NUM_CPU_DEVICES=2 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \
      python -m experiments.benchmark_sweep
"""

import contextlib
import importlib
import io
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import matmul_floor
from experiments import timing

_MEMBERS = flags.DEFINE_integer("members", 8, "Runs (seeds 0…N−1).")
_TASKS = flags.DEFINE_list("tasks", ["binary_addition", "copy"],
                           "Tasks to time: binary_addition, copy.")
_COPY_WINDOWS = flags.DEFINE_integer("copy_windows", 5000,
                                     "Windows per copy run.")
_STEP_ROUNDS = flags.DEFINE_integer(
    "step_rounds", 300, "Calls timed of each step and matmul program, "
    "spread over 10 interleaved rounds.")
_KEEP = flags.DEFINE_bool(
    "keep_freed_memory", True, "glibc keeps freed memory (dni_jax.training."
    "host_memory); false: its defaults, to see what that buys.")
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


def _final_state(member, run_dir):
  from dni_jax.training import families  # pylint: disable=g-import-not-at-top
  from dni_jax.training.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  template = families.family_of(member.config).loop.make_loop(member.config).init()
  ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"))
  state, _ = ckpt.restore_or(template)
  ckpt.close()
  return jax.tree_util.tree_leaves(state)


def _parameter_agreement(members, tmp) -> tuple[float, int, int]:
  """Largest |separate − vmapped| over every leaf; identical / all leaves."""
  worst, same, total = 0.0, 0, 0
  for m in members:
    a = _final_state(m, f"{tmp}/separate/{m.name}")
    b = _final_state(m, f"{tmp}/sweep/{m.name}")
    for x, y in zip(a, b):
      x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
      worst = max(worst, float(np.max(np.abs(x - y), initial=0.0)))
      same += int(np.array_equal(x, y))
      total += 1
  return worst, same, total


def _median_seconds(runs: dict) -> dict:
  """Median seconds per call of every ``{name: (step, state)}``
  (``timing.time_round``'s form), after one warm-up call each, in 10
  interleaved rounds sharing ``--step_rounds`` calls."""
  for name, (step, state) in runs.items():
    runs[name] = (step, timing.time_round(step, state, None, 1)[0])
  samples = timing.interleaved_samples(runs, None, 10,
                                       max(1, _STEP_ROUNDS.value // 10))
  return {name: statistics.median(s) for name, s in samples.items()}


def _loop_steps(loop):
  """A loop's step in ``timing.time_round``'s form, counting its steps."""
  def step(carry, _):
    state, i = carry
    state, metrics = loop.step(state, i)
    return (state, i + 1), metrics
  return step, (loop.init(), 0)


def _steps_and_matmuls(config, members):
  """One run's step and the group's, then a program of only each one's
  matmuls (``matmul_floor``), all timed side by side: ``((single, group)
  seconds per step, (single, group) seconds per matmul program, matmul
  FLOPs per member, dot products per member)``."""
  from dni_jax.training import batching  # pylint: disable=g-import-not-at-top
  from dni_jax.training import families  # pylint: disable=g-import-not-at-top
  module = families.family_of(config).loop
  runs, dots = {}, {}
  for name, loop, place in (
      ("single", module.make_loop(members[0].config), jax.device_put),
      ("group", module.make_batched_loop([m.config for m in members]),
       batching.Placement(len(members)).members)):
    runs[name] = _loop_steps(loop)
    dots[name] = matmul_floor.step_dots(lambda s, loop=loop: loop.step(s, 0),
                                        runs[name][1][0])
    program, operands = matmul_floor.dots_program(dots[name], place)
    runs[f"{name} matmuls"] = (
        lambda carry, _, program=program, operands=operands: (
            carry, program(operands)), None)
  assert matmul_floor.flops(dots["group"]) == len(
      members) * matmul_floor.flops(dots["single"]), (
          "the group's matmuls should be each member's")
  median = _median_seconds(runs)
  return ((median["single"], median["group"]),
          (median["single matmuls"], median["group matmuls"]),
          matmul_floor.flops(dots["single"]), sum(dots["single"].values()))


def _peak_gflops() -> float:
  """GFLOP/s of one jitted 2048³ float32 matmul: this device at its best."""
  n = 2048
  a = jax.device_put(np.ones((n, n), np.float32))
  matmul = jax.jit(jnp.matmul)
  step = lambda carry, _: (carry, matmul(a, a))
  timing.time_round(step, None, None, 1)  # compiles
  return 2 * n**3 / timing.time_round(step, None, None, 10)[1] / 1e9


def _time_task(task: str):
  from dni_jax.training import sweep  # pylint: disable=g-import-not-at-top
  from dni_jax.training import train  # pylint: disable=g-import-not-at-top
  config = _config(task)
  seeds = [{"seed": s} for s in range(_MEMBERS.value)]
  members = sweep.members(config, seeds)
  quiet = io.StringIO()
  with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(quiet):
    start = time.perf_counter()
    separate = []
    for member in members:
      separate.append(train.train_and_evaluate(
          member.config, f"{tmp}/separate/{member.name}")[config.method])
    t_separate = time.perf_counter() - start
    start = time.perf_counter()
    summaries = sweep.run_sweep(config, seeds, f"{tmp}/sweep")
    t_sweep = time.perf_counter() - start
    agreement = _parameter_agreement(members, tmp)
    timed = _steps_and_matmuls(config, members)
  together = [summaries[f"seed={s}"] for s in range(_MEMBERS.value)]
  return (t_separate, t_sweep, [_final(s, task) for s in separate],
          [_final(s, task) for s in together], agreement, timed)


def main(argv):
  del argv
  timing.quiet_logs()
  if _KEEP.value:
    from dni_jax.training import host_memory  # pylint: disable=g-import-not-at-top
    host_memory.keep_freed_memory()
  n = _MEMBERS.value
  from dni_jax.training import batching  # pylint: disable=g-import-not-at-top
  devices = jax.local_devices()
  print(f"{len(devices)} local {devices[0].platform} device(s); one run uses "
        f"one, the group of {n} is split over {batching.member_devices(n)}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; a 2048x2048 "
        f"matmul runs at {_peak_gflops():.0f} GFLOP/s")
  print(f"{'task':<16}{'runs':>6}{'one after another s':>22}"
        f"{'vmapped s':>12}{'speedup':>10}")
  speedups, details = {}, {}
  for task in _TASKS.value:
    t_sep, t_sweep, *rest = _time_task(task)
    speedups[task] = t_sep / t_sweep
    details[task] = (t_sep, t_sweep, *rest)
    print(f"{task:<16}{n:>6}{t_sep:>22.1f}{t_sweep:>12.1f}"
          f"{speedups[task]:>10.2f}", flush=True)
  for task, (t_sep, t_sweep, f_sep, f_sweep, agreement,
             timed) in details.items():
    what = "max length solved" if task == "copy" else "test bit accuracy"
    print(f"{task} {what} per seed: separate "
          f"{[round(x, 4) for x in f_sep]} vmapped "
          f"{[round(x, 4) for x in f_sweep]}")
    worst, same, total = agreement
    print(f"{task} final parameters, separate vs vmapped: max |diff| "
          f"{worst:.3g}, {same}/{total} leaves identical")
    (single, group), (mm_single, mm_group), mflop, num_dots = timed
    mflop /= 1e6
    print(f"{task} step alone: one run {1e3 * single:.3f} ms, the group of "
          f"{n} {1e3 * group:.3f} ms ({1e3 * group / n:.3f} ms per member, "
          f"ceiling of the step's speedup {n * single / group:.2f}x)")
    # The steps' share of each whole time; the rest is compilation,
    # evaluation, checkpoints and the host loop's bookkeeping.
    num_steps = _config(task).num_steps
    for name, whole, stepping in (("one after another", t_sep,
                                   n * num_steps * single),
                                  ("vmapped", t_sweep, num_steps * group)):
      print(f"{task} {name}: {whole:.1f} s = {stepping:.1f} s of steps "
            f"({num_steps} x the step alone) + {whole - stepping:.1f} s of "
            "compilation, evaluation, checkpoints and host loop" +
            ("" if whole >= stepping else
             " (negative: the steps timed alone ran slower than in the run)"))
    # The floor: the group's steps cannot beat a program of only their
    # matmuls, so neither can the sweep's whole time.
    floor = num_steps * mm_group
    print(f"{task} matmuls alone ({num_dots} dot products, {mflop:.1f} MFLOP "
          f"a member's step): one run {1e3 * mm_single:.3f} ms "
          f"({mflop / 1e3 / mm_single:.0f} GFLOP/s), the group of {n} "
          f"{1e3 * mm_group:.3f} ms ({n * mflop / 1e3 / mm_group:.0f} "
          "GFLOP/s)")
    rest = max(0.0, t_sweep - num_steps * group)  # noise can make it < 0
    print(f"{task} floor: the group's {num_steps} steps need at least "
          f"{floor:.1f} s of matmuls, so the speedup is at most "
          f"{t_sep / floor:.2f}x ({t_sep / (floor + rest):.2f}x with the "
          f"vmapped run's other {rest:.1f} s)")
  print(f"sweep{n} speedup " + " ".join(f"{t}={s:.2f}"
                                         for t, s in speedups.items()))


if __name__ == "__main__":
  app.run(main)
