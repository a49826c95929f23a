"""Where a recurrent window's time goes: the step, the host loop, the dispatch.

  taskset -c 1 python -m experiments.benchmark_window_loop \\
      [--config=configs/ptb_char.py --data_dir=../shared/data/ptb] \\
      [--method=dni --windows=8 --rounds=5 --steps=400]

Builds the run's ``Loop`` (``dni_jax.training.recurrent.make_loop``) of a
sequence config (default configs/copy.py: generated data) and times, in
interleaved rounds after compiling everything:

- ``step, device-bound``: the jitted window step called back to back, the
  host waiting only at the end (what the device needs per window);
- ``host loop, 1 window/call``: ``run.train_steps``, the training loop
  itself (each window's metrics read on the host one window late, the
  interval sums), with one window per call;
- ``host loop, K windows/call``: the same loop with ``windows_per_call=K``
  (a ``lax.scan`` over K windows in one call);
- ``K windows/call, device-bound``.

Prints the median milliseconds per window of each and, as the last line,
``loop speedup K/1=<x>``: the training loop's time per window with one
window per call over that with K.
"""

import contextlib
import dataclasses
import io
import os
import statistics
import time

from absl import app
from absl import flags
import jax

from dni_jax.training import host_memory
from dni_jax.training import recurrent
from dni_jax.training import run as run_lib
from experiments import timing

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG = flags.DEFINE_string("config", "configs/copy.py",
                              "A sequence-task config.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "data.dir (ptb_char).")
_METHOD = flags.DEFINE_string("method", "dni", "bptt, dni or dni_aux.")
_UNROLL = flags.DEFINE_integer("unroll", 0, "T; 0: the config's.")
_WINDOWS = flags.DEFINE_integer("windows", 8, "K, windows per call.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds.")
_STEPS = flags.DEFINE_integer("steps", 400, "Windows per round (a multiple "
                              "of --windows).")


class _Recorder:
  """What ``run.train_steps`` calls, reading the metrics as ``Recorder``
  does and writing nothing."""

  def __init__(self):
    self.last_step, self.sums, self.count = 0, {}, 0
    self.start_time = time.time()

    class _NoCheckpoints:
      def save(self, *args, **kwargs):
        del args, kwargs

    self.checkpointer = _NoCheckpoints()

  def record(self, step, metrics):
    del step
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    run_lib.accumulate(self.sums, {}, values, ())
    self.count += 1

  def flush_train(self, step):
    del step
    self.sums, self.count = {}, 0

  def interval_state(self):
    return {}

  def flush_events(self):
    pass


def _config(windows):
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = os.path.join(_ROOT, _CONFIG.value)
  spec = importlib.util.spec_from_file_location("_bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.method = _METHOD.value
  config.windows_per_call = windows
  config.num_steps = _STEPS.value
  config.log_every = config.checkpoint_every = config.eval_every = (
      _STEPS.value)
  if _UNROLL.value:
    config.unroll = _UNROLL.value
  if _DATA_DIR.value:
    config.data.dir = _DATA_DIR.value
  return config


def main(argv):
  del argv
  timing.quiet_logs()
  host_memory.keep_freed_memory()
  k = _WINDOWS.value
  if _STEPS.value % k:
    raise app.UsageError("--steps must be a multiple of --windows")
  loops, states = {}, {}
  for windows in (1, k):
    config = _config(windows)
    loop = recurrent.make_loop(config)
    loop = dataclasses.replace(loop, evaluate=None, should_stop=None)
    state = loop.init()
    state, m = loop.step(state, 0)  # compile
    if loop.multi_step is not None:
      state, m = loop.multi_step(state, 0)
    jax.block_until_ready(m)
    loops[windows], states[windows] = (config, loop), state

  def device_bound(windows):
    _, loop = loops[windows]
    fn = loop.step if windows == 1 else loop.multi_step
    state = states[windows]
    start = time.perf_counter()
    for i in range(0, _STEPS.value, windows):
      state, metrics = fn(state, i)
    jax.block_until_ready((state, metrics))
    states[windows] = state
    return time.perf_counter() - start

  def host_loop(windows):
    config, loop = loops[windows]
    state = states[windows]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
      state, _ = run_lib.train_steps(loop, config, state, 0, _Recorder())
      jax.block_until_ready(state)
    states[windows] = state
    return time.perf_counter() - start

  cases = {"step, device-bound": lambda: device_bound(1),
           "host loop, 1 window/call": lambda: host_loop(1),
           f"host loop, {k} windows/call": lambda: host_loop(k),
           f"{k} windows/call, device-bound": lambda: device_bound(k)}
  samples = {name: [] for name in cases}
  for _ in range(_ROUNDS.value):
    for name, fn in cases.items():  # interleaved: drift hits every case
      samples[name].append(1e3 * fn() / _STEPS.value)
  config = loops[1][0]
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, "
        f"{os.path.basename(_CONFIG.value)} {config.method}, LSTM "
        f"{config.model.width}, batch {config.batch_size}, T={config.unroll}, "
        f"{_ROUNDS.value} rounds x {_STEPS.value} windows")
  print(f"{'':34} median ms/window      min      max")
  for name, values in samples.items():
    print(f"{name:34} {statistics.median(values):14.3f} "
          f"{min(values):8.3f} {max(values):8.3f}")
  one = statistics.median(samples["host loop, 1 window/call"])
  many = statistics.median(samples[f"host loop, {k} windows/call"])
  print(f"loop speedup {k}/1={one / many:.3f}")


if __name__ == "__main__":
  app.run(main)
