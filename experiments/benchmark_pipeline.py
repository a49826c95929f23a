"""Examples/s of the DNI pipeline and the backprop pipeline against one device.

  python -m experiments.benchmark_pipeline [--steps=40 --batch_size=256]

Every measurement runs in its own processes, pinned with ``taskset``, XLA
single-threaded: one process on one core for the network on one device
(backprop, DNI); two processes on two cores (``jax.distributed``, gloo
collectives over 127.0.0.1), each owning one device and half the stages,
for the DNI pipeline and for the backprop pipeline (GPipe fill–drain) at
M = 1, 4 and 8 micro-batches. Networks (``--nets``): ``equal``, 4 stages of
1024 units (784 → 1024 → 1024 → 1024 → 10), ``fcn``, the paper's MNIST FCN
(3 × 256), and on request ``deep``, 8 stages of 1024.
Random MNIST-shaped data (timing only). Prints examples/s, the ratio to
the one-process run of the same method, and each process's peak resident
memory; then, from the measured per-stage step time and the measured cost
of a tick's transfer, the *projected* speed-up at K = 4, 8, 16 devices; the
last line is ``pipeline processes=2 dni_speedup=<x> bp_pipeline_speedup=<y>``
(the first of ``--nets``, M = 1, each against one process on one core).
"""

import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags

from experiments import timing

_WORKER = flags.DEFINE_enum("worker", None, ["single", "pipeline"],
                            "Internal: run one measurement.")
_NET = flags.DEFINE_enum("net", "equal", ["equal", "deep", "fcn"],
                         "Network (a worker's).")
_NETS_RUN = flags.DEFINE_list("nets", ["equal", "fcn"], "Networks to measure.")
_METHOD = flags.DEFINE_string("method", "dni", "backprop | dni | cdni.")
_MICRO = flags.DEFINE_integer("microbatches", 1, "Backprop pipeline's M.")
_STEPS = flags.DEFINE_integer("steps", 40, "Timed steps (ticks).")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed steps first.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Examples per step (DNI: "
                              "per tick; backprop pipeline: per global batch).")

_NETS = {"equal": (4, 1024), "deep": (8, 1024), "fcn": (3, 256)}


def _network():
  import dni_jax as dni  # pylint: disable=g-import-not-at-top
  depth, width = _NETS[_NET.value]
  return dni.decouple(dni.fcn_stages(depth, width), dni.LinearSynthesizer())


def _batch(batch_size, seed=0):
  import jax  # pylint: disable=g-import-not-at-top
  kx, ky = jax.random.split(jax.random.PRNGKey(seed))
  return {"inputs": jax.random.normal(kx, (batch_size, 28, 28, 1)),
          "labels": jax.random.randint(ky, (batch_size,), 0, 10)}


def _optimizers():
  import optax  # pylint: disable=g-import-not-at-top
  import dni_jax as dni  # pylint: disable=g-import-not-at-top
  return dni.Optimizers(optax.adam(1e-4), optax.adam(1e-4))


def _report(seconds: float, examples: int, **extra) -> None:
  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print("RESULT " + json.dumps(dict(examples_per_s=examples / seconds,
                                    seconds=seconds, peak_mb=peak_mb,
                                    **extra)), flush=True)


def _single() -> None:
  """The network on one device: the jitted step, and each stage's share."""
  import jax  # pylint: disable=g-import-not-at-top
  import dni_jax as dni  # pylint: disable=g-import-not-at-top
  net, opt = _network(), _optimizers()
  source = dni.get_source(_METHOD.value)
  batch = _batch(_BATCH.value)
  state = dni.init_train_state(net, opt, source, jax.random.PRNGKey(0), batch)
  step = dni.make_train_step(net, opt, source)
  for _ in range(_WARMUP.value):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  _report(time.perf_counter() - start, _STEPS.value * _BATCH.value)


def _pipeline() -> None:
  """One process of a 2-process pipeline (its own core and device)."""
  from dni_jax.parallel import distributed  # pylint: disable=g-import-not-at-top
  env = distributed.from_env()
  distributed.initialize(*env)
  import jax  # pylint: disable=g-import-not-at-top
  import dni_jax as dni  # pylint: disable=g-import-not-at-top
  from dni_jax.parallel import pipeline  # pylint: disable=g-import-not-at-top
  net, opt = _network(), _optimizers()
  source = dni.get_source(_METHOD.value)
  devices = distributed.pipeline_devices(2)
  backprop = _METHOD.value == "backprop"
  micro = _BATCH.value // (_MICRO.value if backprop else 1)
  batch = _batch(_BATCH.value)
  parts = [{k: v[i * micro:(i + 1) * micro] for k, v in batch.items()}
           for i in range(_MICRO.value)]
  if backprop:
    pipe = pipeline.BackpropPipeline(net, opt, source, devices, parts[0],
                                     jax.random.PRNGKey(0),
                                     num_microbatches=_MICRO.value)
    run = lambda s, t: pipe.step(s, parts)
  else:
    pipe = pipeline.DNIPipeline(net, opt, source, devices, batch,
                                jax.random.PRNGKey(0))
    run = lambda s, t: pipe.tick(s, t, lambda m: batch)
  state = pipe.init()
  for t in range(_WARMUP.value):
    state, metrics = run(state, t)
  jax.block_until_ready((state, metrics))
  start = time.perf_counter()
  for t in range(_WARMUP.value, _WARMUP.value + _STEPS.value):
    state, metrics = run(state, t)
  jax.block_until_ready((state, metrics))
  seconds = time.perf_counter() - start
  # The transfer alone: the tick's exchange with nothing computed.
  rows = pipe.batch + (0 if backprop else 1)  # DNI: + the metrics row
  zeros = {k: pipe.zeros(k, rows) for k in pipe.local}
  jax.block_until_ready(pipe.exchange(zeros, zeros))
  t0 = time.perf_counter()
  for _ in range(_STEPS.value):
    out = pipe.exchange(zeros, zeros)
  jax.block_until_ready(out)
  exchange_s = (time.perf_counter() - t0) / _STEPS.value
  compute_s = None
  if not backprop:  # this process's device alone: its tick, no transfer
    k = pipe.local[0]
    data = {n: jax.device_put(v, pipe.devices[k]) for n, v in batch.items()}
    tick = pipe.ticks[k]
    args = (state["inbox_fwd"][k], state["inbox_bwd"][k],
            data["inputs"] if k == 0 else None, data["labels"],
            data[pipe.cond_key])
    group = state["groups"][k]
    group, *_ = tick(group, *args, fwd_valid=True, target_valid=True)
    jax.block_until_ready(group)
    t0 = time.perf_counter()
    for _ in range(_STEPS.value):
      group, *_ = tick(group, *args, fwd_valid=True, target_valid=True)
    jax.block_until_ready(group)
    compute_s = (time.perf_counter() - t0) / _STEPS.value
  if jax.process_index() == 0:
    _report(seconds, _STEPS.value * _BATCH.value, exchange_s=exchange_s,
            transfer_mb=2 * 4 * rows * pipe.width / 2**20,
            compute_s=compute_s)
  else:
    print("RESULT " + json.dumps(dict(peak_mb=resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, compute_s=compute_s)),
          flush=True)


def _args(**kw) -> list[str]:
  base = {"net": _NET.value, "steps": _STEPS.value, "warmup": _WARMUP.value,
          "batch_size": _BATCH.value}
  base.update(kw)
  return [f"--{k}={v}" for k, v in base.items()]


def measure_single(method: str, net: str) -> dict:
  done = subprocess.run(
      ["taskset", "-c", "0", sys.executable, "-m",
       "experiments.benchmark_pipeline",
       *_args(worker="single", method=method, net=net)],
      capture_output=True, text=True, env=timing.worker_env(), timeout=1200)
  return timing.worker_result(done.stdout + done.stderr)


def measure_pipeline(method: str, net: str, microbatches: int = 1) -> dict:
  from experiments import launch  # pylint: disable=g-import-not-at-top
  coordinator = f"127.0.0.1:{launch.free_port()}"
  procs = []
  for i in range(2):
    procs.append(subprocess.Popen(
        ["taskset", "-c", str(i), sys.executable, "-m",
         "experiments.benchmark_pipeline",
         *_args(worker="pipeline", method=method, net=net,
                microbatches=microbatches)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=timing.worker_env(**{k: v for k, v in launch.process_env(
            i, 2, coordinator, False).items() if k.startswith("DNI_")})))
  outs = [p.communicate(timeout=1200)[0] for p in procs]
  first, second = timing.worker_result(outs[0]), timing.worker_result(outs[1])
  first["peak_mb_other"] = second["peak_mb"]
  first["compute_s_other"] = second.get("compute_s")
  return first


def main(argv):
  del argv
  if _WORKER.value == "single":
    return _single()
  if _WORKER.value == "pipeline":
    return _pipeline()
  if (os.cpu_count() or 1) < 2:
    sys.exit("error: the pipeline benchmark needs 2 CPU cores (one per "
             "process).")
  rows, speedups = [], {}
  for net in _NETS_RUN.value:
    single = {m: measure_single(m, net) for m in ("backprop", "dni")}
    runs = [("1 process, backprop", "backprop", single["backprop"],
             single["backprop"]),
            ("1 process, DNI", "dni", single["dni"], single["dni"])]
    dni_pipe = measure_pipeline("dni", net)
    runs.append(("DNI pipeline K=2", "dni", dni_pipe, single["dni"]))
    for m in (1, 4, 8):
      bp = measure_pipeline("backprop", net, m)
      runs.append((f"backprop pipeline K=2 M={m}", "backprop", bp,
                   single["backprop"]))
      if m == 1:
        speedups[net] = (dni_pipe["examples_per_s"] /
                         single["dni"]["examples_per_s"],
                         bp["examples_per_s"] /
                         single["backprop"]["examples_per_s"])
    for name, method, r, base in runs:
      rows.append((net, name, r["examples_per_s"],
                   r["examples_per_s"] / base["examples_per_s"],
                   r["peak_mb"], r.get("peak_mb_other")))
    # Projection from this network's measured costs (labelled as such).
    d_stage = 1.0 / single["dni"]["examples_per_s"] * _BATCH.value / _NETS[
        net][0]
    b_stage = 1.0 / single["backprop"]["examples_per_s"] * _BATCH.value / \
        _NETS[net][0]
    x = dni_pipe["exchange_s"]
    speedups[net + "_proj"] = [
        (k, k * d_stage / (d_stage + x),
         k * b_stage / ((1 + k - 1) * (b_stage + 2 * x)),
         k * b_stage / ((8 + k - 1) * (b_stage / 8 + 2 * x / 8)))
        for k in (4, 8, 16)]
    speedups[net + "_x"] = (x, dni_pipe["transfer_mb"], d_stage, b_stage,
                            dni_pipe["compute_s"], dni_pipe["compute_s_other"],
                            _BATCH.value / single["dni"]["examples_per_s"],
                            _BATCH.value / dni_pipe["examples_per_s"])
  print(f"{'network':<8}{'run':<30}{'examples/s':>12}{'vs 1 process':>14}"
        f"{'peak MB p0':>12}{'peak MB p1':>12}")
  for net, name, eps, ratio, mb0, mb1 in rows:
    print(f"{net:<8}{name:<30}{eps:>12.0f}{ratio:>14.3f}{mb0:>12.0f}"
          f"{'-' if mb1 is None else f'{mb1:.0f}':>12}")
  for net in _NETS_RUN.value:
    x, mb, d_stage, b_stage, c0, c1, whole, tick = speedups[net + "_x"]
    print(f"\n{net}: per-stage step on one core: DNI {1e3 * d_stage:.2f} ms, "
          f"backprop {1e3 * b_stage:.2f} ms; a tick's transfer "
          f"({mb:.2f} MB both ways, gloo): {1e3 * x:.2f} ms")
    print(f"{net}: DNI step on one device {1e3 * whole:.2f} ms; pipeline tick "
          f"{1e3 * tick:.2f} ms; each device's tick alone: device 0 "
          f"{1e3 * c0:.2f} ms, device 1 {1e3 * c1:.2f} ms (compute ceiling "
          f"{whole / max(c0, c1):.2f}x)")
    print("PROJECTED speed-up over one device with K equal stages "
          "(measured stage and transfer costs; not measured at this K):")
    print(f"  {'K':>4}{'DNI pipeline':>14}{'backprop M=1':>14}"
          f"{'backprop M=8':>14}")
    for k, dni_k, bp1, bp8 in speedups[net + "_proj"]:
      print(f"  {k:>4}{dni_k:>14.2f}{bp1:>14.2f}{bp8:>14.2f}")
  dni_x, bp_x = speedups[_NETS_RUN.value[0]]
  print(f"\npipeline processes=2 dni_speedup={dni_x:.3f} "
        f"bp_pipeline_speedup={bp_x:.3f}")


if __name__ == "__main__":
  app.run(main)
