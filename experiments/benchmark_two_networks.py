"""Time per episode of the two-network system, and what two devices would make of it.

  python -m experiments.benchmark_two_networks [--T=4 --rounds=5]

Builds network A, network B and each method of ``configs/two_networks.py``
on generated digits (no download) and times, in interleaved rounds after
compiling everything, the median milliseconds per episode (``T²`` digits
per stream) of:

- ``locked``, ``dni`` and ``no_dni``: the jitted training step on one
  device (``dni_jax.core.two_networks.train_step``);
- dni's two halves, jitted apart: ``a_phase`` (A's ``T`` window updates)
  and ``b_phase`` (B's update and the synthesizers' regression).

Then a **projection**: with A and B on two devices, a decoupled episode
costs ``max(a_phase, b_phase)`` (A's next episode runs while B learns from
the last; the messages are ``T × B × message_width`` floats), while the
locked system cannot overlap them (A waits for B's gradient), so it costs
its one-device step; transfers not counted.

Then the **measurement** (``--two_processes``, the methods to measure; on a
machine with 2 cores or more): each method in its own processes, pinned
with ``taskset``, XLA single-threaded: once as one process on one core
(``train_step``), once as two processes on two cores, A's and B's
(``dni_jax.parallel.two_networks``: ``jax.distributed``, gloo over
127.0.0.1): locked's A waits for B's gradients every episode (two transfers
in series), dni's and no_dni's A runs its next episode while B learns from
the last (one swap a tick). Each prints its median milliseconds per episode
over ``--rounds`` rounds, and the pair the cost of a swap alone. The last
line is ``two processes measured: dni/locked speedup=<x>``: the locked
system's episode on two processes over dni's.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax

from configs import two_networks as two_networks_config
from dni_jax.core import two_networks as tn_lib
from dni_jax.data import digit_stream
from dni_jax.training import experiment
from dni_jax.parallel import distributed
from dni_jax.parallel import two_networks as parallel_tn
from dni_jax.training import host_memory
from experiments import timing

_T = flags.DEFINE_integer("T", 4, "A answers every T digits.")
_BATCH = flags.DEFINE_integer("batch", 32, "Episodes per step.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds.")
_STEPS = flags.DEFINE_integer("steps", 50, "Episodes per round.")
_TWO = flags.DEFINE_list("two_processes", ["locked", "dni", "no_dni"],
                         "Methods to measure on one and on two pinned "
                         "processes; empty: none.")
_WORKER = flags.DEFINE_enum("worker", None, ["single", "pair"],
                            "Internal: one measurement.")
_METHOD = flags.DEFINE_string("method", "dni", "Internal: a worker's method.")


def _config(method):
  config = two_networks_config.get_config()
  config.method = method
  config.batch_size = _BATCH.value
  config.two_networks.T = _T.value
  return config


def _median_ms(run, state, rounds, steps):
  """Median over rounds of the milliseconds per call of ``run``."""
  samples = []
  for _ in range(rounds):
    start = time.perf_counter()
    for t in range(steps):
      state = run(state, t)
    jax.block_until_ready(state)
    samples.append(1e3 * (time.perf_counter() - start) / steps)
  return statistics.median(samples), state


def _built(method):
  """``(tn, optimizers, initial state, batch)`` of ``method``."""
  stream = digit_stream.DigitStream.from_dataset(
      digit_stream.synthetic_digits("train"))
  batch = digit_stream.episodes(stream, jax.random.PRNGKey(0), _BATCH.value,
                                _T.value)
  config = _config(method)
  tn, opt = (experiment.build_two_networks(config),
             experiment.build_optimizers(config))
  state = tn_lib.init_train_state(tn, opt, jax.random.PRNGKey(0),
                                  _BATCH.value, stream.input_size)
  return tn, opt, state, batch


def _worker_single():
  """One process, one core: ``train_step`` of ``--method``."""
  tn, opt, state, batch = _built(_METHOD.value)
  fn = jax.jit(lambda s, b: tn_lib.train_step(s, b, tn=tn, optimizers=opt))
  run = lambda s, t: fn(s, batch)[0]  # noqa: E731
  state = jax.block_until_ready(run(state, 0))
  ms, _ = _median_ms(run, state, _ROUNDS.value, _STEPS.value)
  print("RESULT " + json.dumps({"ms": ms}), flush=True)


def _alone(system, k, inbox, row, batch):
  """Device ``k``'s programs of one episode, without the transfers."""
  # pylint: disable=protected-access
  locked = system.tn.method == "locked"
  if locked and k == 0:
    def run(s, t):
      del t
      vjp, _, sent = system._a_forward(s, batch)
      return system._a_backward(s, vjp, sent)
    return run
  program = (system._b_locked if locked else
             system._a_tick if k == 0 else system._b_tick)
  return lambda s, t: program(s, row if locked else inbox, batch)[0]


def _worker_pair():
  """One of two processes: A's (process 0) or B's (process 1)."""
  tn, opt, state, batch = _built(_METHOD.value)
  system = parallel_tn.TwoDeviceSystem(
      tn, opt, distributed.pipeline_devices(2), batch)
  advance = system.step if tn.method == "locked" else system.tick
  clock = [0]

  def run(s, t):
    del t
    clock[0] += 1
    return advance(s, clock[0], lambda _: batch)[0]
  state = jax.block_until_ready(run(run(system.init(state), 0), 0))
  ms, _ = _median_ms(run, state, _ROUNDS.value, _STEPS.value)
  rows = {k: system._empty(k) for k in system.local}  # pylint: disable=protected-access
  swap = lambda s, t: system.exchange(rows, rows)[0]  # noqa: E731
  jax.block_until_ready(swap(None, 0))
  swap_ms, _ = _median_ms(swap, None, _ROUNDS.value, _STEPS.value)
  # This process's network alone: its programs of an episode, no transfer.
  nets, inbox = state["nets"], state["inbox"]
  k = system.local[0]
  alone = _alone(system, k, inbox[k], rows[k], batch)
  jax.block_until_ready(alone(nets[k], 0))
  alone_ms, _ = _median_ms(alone, nets[k], _ROUNDS.value, _STEPS.value)
  if jax.process_index() == 0:
    other = json.loads(input())  # process 1's, relayed by the parent
    print("RESULT " + json.dumps({"ms": ms, "swap_ms": swap_ms,
                                  "a_ms": alone_ms, "b_ms": other["alone"],
                                  "floats": system.width}), flush=True)
  else:
    print("RESULT " + json.dumps({"alone": alone_ms}), flush=True)


def _worker_args(worker, method):
  return [sys.executable, "-m", "experiments.benchmark_two_networks",
          f"--worker={worker}", f"--method={method}", f"--T={_T.value}",
          f"--batch={_BATCH.value}", f"--rounds={_ROUNDS.value}",
          f"--steps={_STEPS.value}"]


def measure(method: str) -> tuple[dict, dict]:
  """``(one process, two processes)`` results of ``method``."""
  from experiments import launch  # pylint: disable=g-import-not-at-top
  done = subprocess.run(["taskset", "-c", "0",
                         *_worker_args("single", method)],
                        capture_output=True, text=True,
                        env=timing.worker_env(), timeout=1200)
  single = timing.worker_result(done.stdout + done.stderr)
  coordinator = f"127.0.0.1:{launch.free_port()}"
  with tempfile.TemporaryFile("w+") as log0:  # process 0's output: a file,
    procs = [subprocess.Popen(  # so that it never blocks on a full pipe
        ["taskset", "-c", str(i), *_worker_args("pair", method)],
        stdin=subprocess.PIPE, stdout=log0 if i == 0 else subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env=timing.worker_env(**{k: v for k, v in launch.process_env(
            i, 2, coordinator, False).items() if k.startswith("DNI_")}))
             for i in range(2)]
    try:
      lines = []  # process 1's output until its result (it may then wait
      for line in procs[1].stdout:  # for process 0 at the shutdown barrier)
        lines.append(line)
        if line.startswith("RESULT "):
          break
      second = timing.worker_result("".join(lines))
      procs[0].communicate(json.dumps(second) + "\n", timeout=1200)
      procs[1].communicate(timeout=1200)
    finally:  # a failure or a timeout leaves no worker behind
      for p in procs:
        if p.poll() is None:
          p.kill()
    log0.seek(0)
    first = log0.read()
  return single, timing.worker_result(first)


def _measured() -> None:
  if len(os.sched_getaffinity(0)) < 2:
    print("two processes: not measured (this process may use one core)")
    return
  got = {m: measure(m) for m in _TWO.value}
  print("measured, each process pinned to its own core, XLA single-threaded"
        " (ms/episode):")
  print(f"{'method':>8}{'1 process':>12}{'2 processes':>14}"
        f"{'A alone':>10}{'B alone':>10}{'swap alone':>12}")
  for m, (one, two) in got.items():
    print(f"{m:>8}{one['ms']:>12.2f}{two['ms']:>14.2f}{two['a_ms']:>10.2f}"
          f"{two['b_ms']:>10.2f}{two['swap_ms']:>12.2f}")
  print("(A alone, B alone: each process's programs of an episode without "
        "the transfers; locked runs them in series, dni and no_dni side by "
        "side)")
  if "locked" in got and "dni" in got:
    print("two processes measured: dni/locked speedup="
          f"{got['locked'][1]['ms'] / got['dni'][1]['ms']:.2f}")


def main(argv):
  del argv
  timing.quiet_logs()
  if _WORKER.value == "single":
    return _worker_single()
  if _WORKER.value == "pair":
    distributed.initialize(*distributed.from_env())
    return _worker_pair()
  host_memory.keep_freed_memory()
  fns, states = {}, {}
  for method in ("locked", "dni", "no_dni"):
    tn, opt, states[method], batch = _built(method)
    fns[method] = jax.jit(lambda s, b, tn=tn, opt=opt: tn_lib.train_step(
        s, b, tn=tn, optimizers=opt))
    if method == "dni":
      a_fn = jax.jit(lambda s, b, tn=tn, opt=opt: tn_lib.a_phase(
          s, b, tn=tn, optimizers=opt))
      b_fn = jax.jit(lambda s, b, sent, tn=tn, opt=opt: tn_lib.b_phase(
          s, b, sent, tn=tn, optimizers=opt))
      _, sent = a_fn(states[method], batch)
      fns["dni a_phase"] = lambda s, b, a_fn=a_fn: a_fn(s, b)[0]
      fns["dni b_phase"] = lambda s, b, b_fn=b_fn, sent=sent: b_fn(
          s, b, sent)[0]
      states["dni a_phase"] = states["dni b_phase"] = states[method]
  for name, fn in fns.items():  # compile
    jax.block_until_ready(fn(states[name], batch))

  def timed(name):
    state = states[name]
    start = time.perf_counter()
    for _ in range(_STEPS.value):
      out = fns[name](state, batch)
      state = out[0] if isinstance(out, tuple) else out
    jax.block_until_ready(state)
    return 1e3 * (time.perf_counter() - start) / _STEPS.value

  samples = {name: [] for name in fns}
  for _ in range(_ROUNDS.value):
    for name in fns:  # interleaved: drift hits every case
      samples[name].append(timed(name))
  ms = {name: statistics.median(v) for name, v in samples.items()}
  print(f"backend: {jax.default_backend()}, T={_T.value}, batch "
        f"{_BATCH.value}, median of {_ROUNDS.value} rounds of "
        f"{_STEPS.value} episodes")
  for name, value in ms.items():
    print(f"{name:>14}: {value:8.2f} ms/episode  ({value / ms['locked']:.2f}x "
          "locked)")
  two = max(ms["dni a_phase"], ms["dni b_phase"])
  print(f"projected, A and B on two devices: dni {two:.2f} ms/episode "
        f"(max of its phases), locked {ms['locked']:.2f} (cannot overlap)")
  print(f"projected speedup dni(2 devices)/locked={ms['locked'] / two:.2f}")
  _measured()


if __name__ == "__main__":
  app.run(main)
