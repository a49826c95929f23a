"""Step time of backprop, DNI and cDNI on the paper's MNIST FCN (or CNN).

  python -m experiments.benchmark [--depth=3 --width=256 --batch_size=256]
  python -m experiments.benchmark --model=cnn   # the mnist_cnn config's shapes

Random MNIST-shaped inputs (timing only). Each method's jitted step is compiled
first; then the methods are timed in interleaved rounds (so that drift in the
machine's speed hits all of them alike), each round running ``--steps`` steps
and blocking once at the end. Prints the median per-step time of every method,
the floating-point operations per step that XLA's cost analysis counts for
each compiled step (where the extra time of DNI comes from: a linear
synthesizer costs a forward and a weight-gradient matmul per boundary), and,
as the last line, ``ratio dni/backprop=<x> cdni/backprop=<y>``.

With ``--members=N`` each method's step is also timed vmapped over N
members, each with its own parameters and batch (what a sweep's vmapped
group of N seeds runs), in the same interleaved rounds; a line per method
prints the group's time against N times one member's:

  python -m experiments.benchmark --model=cnn --width=32 --batch_size=64 --members=3

With ``--synth_delays=4,64`` cDNI's step is also timed with a stale
interface of each delay ``d`` (``dni.synth_delay``: the stages driven by the
synthesizers of ``d`` steps before), in the same interleaved rounds, and a
line per delay prints its time against cDNI's with current synthesizers
(and, with ``--members=N``, the same for N members vmapped):

  python -m experiments.benchmark --depth=4 --synth_delays=4,16,64

On XLA:CPU a vmapped convolution over members' kernels is a grouped
convolution, which runs far slower than the members' convolutions one after
another (docs/performance.md), so sweeps do not vmap CNN members on a CPU
(``dni_jax.training.families``).
"""

import statistics

from absl import app
from absl import flags
import jax
import optax

import dni_jax as dni
from dni_jax.training import host_memory
from experiments import timing

_MODEL = flags.DEFINE_enum("model", "fcn", ["fcn", "cnn"], "The paper's FCN "
                           "(linear synthesizers) or CNN (conv synthesizers, "
                           "two hidden 5x5 layers of --width filters).")
_DEPTH = flags.DEFINE_integer("depth", 3, "Stages.")
_WIDTH = flags.DEFINE_integer("width", None, "Units (FCN, default 256) or "
                              "filters (CNN, default 128) per stage.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Batch size.")
_ROUNDS = flags.DEFINE_integer("rounds", 30, "Timed rounds per method.")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed round.")
_MEMBERS = flags.DEFINE_integer(
    "members", 0, "Also time each method vmapped over this many members "
    "(own parameters and batch each), as a sweep's vmapped group; 0: not.",
    lower_bound=0)
_DELAYS = flags.DEFINE_list(
    "synth_delays", [], "Also time cDNI with a stale interface of each of "
    "these delays (dni.synth_delay, whole numbers >= 1); empty: not.")
_METHODS = ("backprop", "dni", "cdni")


def _batch(seed):
  return _batch_of(jax.random.PRNGKey(seed))


def _batch_of(key):
  kx, ky = jax.random.split(key)
  return {"inputs": jax.random.normal(kx, (_BATCH.value, 28, 28, 1)),
          "labels": jax.random.randint(ky, (_BATCH.value,), 0, 10)}


def _width() -> int:
  return _WIDTH.value or (256 if _MODEL.value == "fcn" else 128)


def _network():
  if _MODEL.value == "cnn":
    return dni.decouple(dni.cnn_stages(_DEPTH.value, _width()),
                        dni.ConvSynthesizer((_width(), _width())))
  return dni.decouple(dni.fcn_stages(_DEPTH.value, _width()),
                      dni.LinearSynthesizer())


def _parts(method):
  return (_network(), dni.Optimizers(optax.adam(3e-5), optax.adam(3e-5)),
          dni.get_source(method))


def _compiled(method, batch, synth_delay=0):
  net, opt, source = _parts(method)
  state = dni.init_train_state(net, opt, source, jax.random.PRNGKey(0), batch,
                               synth_delay=synth_delay)
  step = dni.make_train_step(net, opt, source)
  cost = step.lower(state, batch).compile().cost_analysis()
  flops = (cost[0] if isinstance(cost, list) else cost or {}).get("flops", 0.0)
  state, metrics = step(state, batch)  # compile
  jax.block_until_ready((state, metrics))
  return step, state, flops


def _compiled_group(method, n, synth_delay=0):
  """``method``'s step vmapped over ``n`` members, in ``timing``'s form (the
  members' own batches stand in for the shared one)."""
  net, opt, source = _parts(method)
  keys = jax.random.split(jax.random.PRNGKey(1), n)
  batches = jax.vmap(_batch_of)(keys)
  states = jax.vmap(lambda k, b: dni.init_train_state(
      net, opt, source, k, b, synth_delay=synth_delay))(keys, batches)
  group_step = jax.jit(jax.vmap(dni.make_train_step(net, opt, source)),
                       donate_argnums=0)  # as the single step donates
  step = lambda state, _: group_step(state, batches)
  states, metrics = step(states, None)  # compile
  jax.block_until_ready((states, metrics))
  return step, states


def _delays() -> list[int]:
  try:
    delays = [int(d) for d in _DELAYS.value]
  except ValueError:
    delays = None
  if delays is None or any(d < 1 for d in delays):
    raise app.UsageError(
        f"--synth_delays={','.join(_DELAYS.value)}: each delay must be a "
        "whole number >= 1 (cDNI with current synthesizers, d = 0, is timed "
        "anyway); e.g. --synth_delays=4,64.")
  return delays


def main(argv):
  del argv
  delays = _delays()
  timing.quiet_logs()
  host_memory.keep_freed_memory()
  batch = _batch(0)
  runs, flops = {}, {}
  for m in _METHODS:
    step, state, flops[m] = _compiled(m, batch)
    runs[m] = (step, state)
  for d in delays:
    name = f"cdni d={d}"
    step, state, flops[name] = _compiled("cdni", batch, synth_delay=d)
    runs[name] = (step, state)
  n = _MEMBERS.value
  if n:
    for m in _METHODS:
      runs[f"{m} x{n}"] = _compiled_group(m, n)
    for d in delays:
      runs[f"cdni d={d} x{n}"] = _compiled_group("cdni", n, synth_delay=d)
  samples = timing.interleaved_samples(runs, batch, _ROUNDS.value,
                                       _STEPS.value)
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, "
        f"{_MODEL.value.upper()} {_DEPTH.value}x{_width()}, batch "
        f"{_BATCH.value}, "
        f"{_ROUNDS.value} rounds x {_STEPS.value} steps")
  current_group = statistics.median(samples[f"cdni x{n}"]) if n else None
  if n:
    for m in _METHODS:
      single = statistics.median(samples[m])
      group = statistics.median(samples.pop(f"{m} x{n}"))
      print(f"{m}: {n} members vmapped {1e3 * group:.1f} ms per step, one "
            f"member {1e3 * single:.1f} ms; vmapped / ({n} x one) = "
            f"{group / (n * single):.2f}")
  for d in delays:
    stale = statistics.median(samples[f"cdni d={d}"])
    print(f"cdni with synthesizers {d} steps old: {1e3 * stale:.2f} ms per "
          f"step; / cdni's with current ones = "
          f"{stale / statistics.median(samples['cdni']):.3f}")
    if n:
      group = statistics.median(samples.pop(f"cdni d={d} x{n}"))
      print(f"  {n} members vmapped: {1e3 * group:.2f} ms per step; / cdni "
            f"x{n}'s with current ones = {group / current_group:.3f}")
  timing.report(samples, flops, "backprop")


if __name__ == "__main__":
  app.run(main)
