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
the vmapped group's step are timed alone (``--step_rounds`` steps after a
warm-up); with those, each whole time is split into its steps and the
rest (compilation, evaluation, checkpoints, host loop). Last, to say why
the group's step costs about as much per member as one run's, the task's
largest matmul is timed alone the same two ways, once and as ``--members``
batched (vmapped, placed as the group's members are): on a CPU the batched
matmul does little more work per second than the single one, and the
step's ceiling follows. Last line:
``sweep8 speedup binary_addition=<x> copy=<y>``.
``--keep_freed_memory=false`` leaves glibc's allocator as it is (see
``dni_jax.training.host_memory``).

With several local devices the group's members are split over them
(``batching.Placement``); on a CPU, ask for one device per core, each
running its ops on one thread:

  JAX_NUM_CPU_DEVICES=2 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \
      python -m experiments.benchmark_sweep
"""

import contextlib
import importlib
import io
import os
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import timing

_MEMBERS = flags.DEFINE_integer("members", 8, "Runs (seeds 0…N−1).")
_TASKS = flags.DEFINE_list("tasks", ["binary_addition", "copy"],
                           "Tasks to time: binary_addition, copy.")
_COPY_WINDOWS = flags.DEFINE_integer("copy_windows", 5000,
                                     "Windows per copy run.")
_STEP_ROUNDS = flags.DEFINE_integer(
    "step_rounds", 300, "Steps timed alone, for one run and for the group.")
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
  from dni_jax.training import loops  # pylint: disable=g-import-not-at-top
  from dni_jax.training.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  template = loops.loop_module(member.config).make_loop(member.config).init()
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


def _step_times(config, members) -> tuple[float, float]:
  """Seconds per step of one run's jitted step and of the group's."""
  from dni_jax.training import loops  # pylint: disable=g-import-not-at-top
  module = loops.loop_module(config)
  out = []
  for loop in (module.make_loop(members[0].config),
               module.make_batched_loop([m.config for m in members])):
    state = loop.init()
    state, metrics = loop.step(state, 0)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for i in range(1, _STEP_ROUNDS.value + 1):
      state, metrics = loop.step(state, i)
    jax.block_until_ready(metrics)
    out.append((time.perf_counter() - start) / _STEP_ROUNDS.value)
  return tuple(out)


def _matmul_shape(config) -> tuple[int, int, int]:
  """``(m, k, n)``: the largest matmul of the task's step, ``[m×k]·[k×n]``.

  Binary addition (cDNI): the first hidden layer's synthesizer, which also
  reads the 8 target bits. Copy: the LSTM's recurrent gates, ``h·W_h``.
  """
  if config.data.name == "binary_addition":
    width = config.model.hidden[0]
    return config.batch_size, width + 8, width
  return config.batch_size, config.model.width, 4 * config.model.width


def _matmul_times(shape, members: int) -> tuple[float, float]:
  """Seconds of one ``[m×k]·[k×n]`` and of ``members`` of them vmapped."""
  from dni_jax.training import batching  # pylint: disable=g-import-not-at-top
  m, k, n = shape
  rng = np.random.default_rng(0)
  one = (rng.standard_normal((m, k), np.float32),
         rng.standard_normal((k, n), np.float32))
  many = batching.Placement(members).members(
      tuple(np.stack([x] * members) for x in one))
  out = []
  for fn, args in ((jax.jit(jnp.matmul), jax.device_put(one)),
                   (jax.jit(jax.vmap(jnp.matmul)), many)):
    jax.block_until_ready(fn(*args))
    rounds = 20 * _STEP_ROUNDS.value
    start = time.perf_counter()
    for _ in range(rounds):
      y = fn(*args)
    jax.block_until_ready(y)
    out.append((time.perf_counter() - start) / rounds)
  return tuple(out)


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
    steps = _step_times(config, members)
    shape = _matmul_shape(config)
    matmul = (shape, _matmul_times(shape, len(members)))
  together = [summaries[f"seed={s}"] for s in range(_MEMBERS.value)]
  return (t_separate, t_sweep, [_final(s, task) for s in separate],
          [_final(s, task) for s in together], agreement, steps, matmul)


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
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"{'task':<16}{'runs':>6}{'one after another s':>22}"
        f"{'vmapped s':>12}{'speedup':>10}")
  speedups, details = {}, {}
  for task in _TASKS.value:
    t_sep, t_sweep, *rest = _time_task(task)
    speedups[task] = t_sep / t_sweep
    details[task] = (t_sep, t_sweep, *rest)
    print(f"{task:<16}{n:>6}{t_sep:>22.1f}{t_sweep:>12.1f}"
          f"{speedups[task]:>10.2f}", flush=True)
  for task, (t_sep, t_sweep, f_sep, f_sweep, agreement, steps,
             matmul) in details.items():
    what = "max length solved" if task == "copy" else "test bit accuracy"
    print(f"{task} {what} per seed: separate "
          f"{[round(x, 4) for x in f_sep]} vmapped "
          f"{[round(x, 4) for x in f_sweep]}")
    worst, same, total = agreement
    print(f"{task} final parameters, separate vs vmapped: max |diff| "
          f"{worst:.3g}, {same}/{total} leaves identical")
    single, group = steps
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
            "compilation, evaluation, checkpoints and host loop")
    (m, k, w), (one, batched) = matmul
    print(f"{task} largest matmul [{m}x{k}]·[{k}x{w}] alone: one "
          f"{1e6 * one:.1f} us, {n} batched {1e6 * batched:.1f} us "
          f"({n * one / batched:.2f}x the work per second)")
  print(f"sweep{n} speedup " + " ".join(f"{t}={s:.2f}"
                                         for t, s in speedups.items()))


if __name__ == "__main__":
  app.run(main)
