"""Time per episode of the two-network system, and what two devices would make of it.

  taskset -c 1 python -m experiments.benchmark_two_networks [--T=4 --rounds=5]

Builds network A, network B and each method of ``configs/two_networks.py``
on generated digits (no download) and times, in interleaved rounds after
compiling everything, the median milliseconds per episode (``T²`` digits
per stream) of:

- ``locked``, ``dni`` and ``no_dni``: the jitted training step on one
  device (``dni_jax.core.two_networks.train_step``);
- dni's two halves, jitted apart: ``a_phase`` (A's ``T`` window updates)
  and ``b_phase`` (B's update and the synthesizers' regression).

The last lines are a **projection**, not a measurement: with A and B on two
devices, a decoupled episode costs ``max(a_phase, b_phase)`` (A's next
episode runs while B learns from the last; the messages are ``T × B ×
message_width`` floats), while the locked system cannot overlap them (A
waits for B's gradient), so it costs its one-device step. Sending the
messages and the gradients between devices is not counted.
"""

import statistics
import time

from absl import app
from absl import flags
import jax

from configs import two_networks as two_networks_config
from dni_jax.core import two_networks as tn_lib
from dni_jax.data import digit_stream
from dni_jax.training import experiment
from dni_jax.training import host_memory
from experiments import timing

_T = flags.DEFINE_integer("T", 4, "A answers every T digits.")
_BATCH = flags.DEFINE_integer("batch", 32, "Episodes per step.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds.")
_STEPS = flags.DEFINE_integer("steps", 50, "Episodes per round.")


def _config(method):
  config = two_networks_config.get_config()
  config.method = method
  config.batch_size = _BATCH.value
  config.two_networks.T = _T.value
  return config


def main(argv):
  del argv
  timing.quiet_logs()
  host_memory.keep_freed_memory()
  stream = digit_stream.DigitStream.from_dataset(
      digit_stream.synthetic_digits("train"))
  batch = digit_stream.episodes(stream, jax.random.PRNGKey(0), _BATCH.value,
                                _T.value)
  fns, states = {}, {}
  for method in ("locked", "dni", "no_dni"):
    config = _config(method)
    tn = experiment.build_two_networks(config)
    opt = experiment.build_optimizers(config)
    states[method] = tn_lib.init_train_state(
        tn, opt, jax.random.PRNGKey(0), _BATCH.value, stream.input_size)
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


if __name__ == "__main__":
  app.run(main)
