"""Timing jitted steps side by side (shared by the benchmarks)."""

import json
import os
import statistics
import time

from absl import flags
from absl import logging
import jax


def quiet_logs() -> None:
  """absl's INFO lines (e.g. jax probing for a TPU) off, unless --verbosity."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def time_round(step, state, data, steps: int):
  """Runs ``steps`` steps; returns ``(state, seconds per step)``."""
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, data)
  jax.block_until_ready((state, metrics))
  return state, (time.perf_counter() - start) / steps


def interleaved_samples(runs: dict, data, rounds: int, steps: int) -> dict:
  """Seconds per step of every ``{name: (step, state)}``, rounds interleaved."""
  samples = {m: [] for m in runs}
  for _ in range(rounds):
    for m, (step, state) in runs.items():
      state, seconds = time_round(step, state, data, steps)
      runs[m] = (step, state)
      samples[m].append(seconds)
  return samples


def report(samples: dict, flops: dict, baseline: str,
           flop_label: str = "MFLOP/step") -> dict:
  """Prints the table of medians, ratios and FLOPs; returns the medians.

  The last line is ``ratio <m>/<baseline>=<x> ...`` for every other method.
  """
  median = {m: statistics.median(s) for m, s in samples.items()}
  print(f"{'method':<10}{'median ms/step':>16}{'min':>9}{'max':>9}"
        f"{'time ratio':>12}{flop_label:>14}{'flop ratio':>12}")
  for m in samples:
    print(f"{m:<10}{1e3 * median[m]:>16.3f}{1e3 * min(samples[m]):>9.3f}"
          f"{1e3 * max(samples[m]):>9.3f}"
          f"{median[m] / median[baseline]:>12.3f}{flops[m] / 1e6:>14.1f}"
          f"{flops[m] / max(flops[baseline], 1.0):>12.3f}")
  print("ratio " + " ".join(f"{m}/{baseline}={median[m] / median[baseline]:.3f}"
                            for m in samples if m != baseline))
  return median


def worker_result(output: str) -> dict:
  """The JSON after the last ``RESULT `` line of a benchmark worker's
  output (a worker process prints one when it is done)."""
  lines = [l for l in output.splitlines() if l.startswith("RESULT ")]
  if not lines:
    raise RuntimeError("a benchmark worker printed no result:\n" +
                       output[-3000:])
  return json.loads(lines[-1][len("RESULT "):])


SINGLE_THREAD = ("--xla_cpu_multi_thread_eigen=false "
                 "intra_op_parallelism_threads=1")


def worker_env(**extra) -> dict:
  """The environment of a pinned benchmark worker: CPU, XLA single-threaded."""
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=SINGLE_THREAD,
              **extra)
