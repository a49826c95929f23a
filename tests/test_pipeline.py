"""Stages on separate devices (REFERENCE.md §6), on fake CPU devices.

conftest.py gives the test processes 4 fake CPU devices. The pipelines are
checked against independent references: the one-device step, a plain
Python replay of the tick schedule, and single-device backprop.
"""

import os
import socket
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import dni_jax as dni
from dni_jax.core import module_state
from dni_jax.errors import ConfigError
from dni_jax.parallel import distributed
from dni_jax.parallel import placement
from dni_jax.parallel.pipeline import BackpropPipeline
from dni_jax.parallel.pipeline import DNIPipeline
from dni_jax.training import train
from dni_jax.training.metrics_log import read_metrics
from test_train import tiny as tiny_config
import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = dict(rtol=2e-5, atol=1e-6)


def _batches(n=12, size=8, context=False):
  """Micro-batches; ``context``: with a ``context`` entry ``[B, 3]`` (for
  conditioning "batch")."""
  batches = [tiny.batch(size=size, seed=s) for s in range(n)]
  if context:
    batches = [{**b, "context": jax.random.normal(jax.random.PRNGKey(100 + s),
                                                  (size, 3))}
               for s, b in enumerate(batches)]
  return batches


def _source(method):
  """A method name, or "bdni": synthesizers conditioned on batch["context"]."""
  if method == "bdni":
    return dni.SyntheticGradients("batch")
  return dni.get_source(method)


def _devices(k):
  if len(jax.devices()) < k:
    pytest.skip(f"needs {k} CPU devices (XLA_FLAGS device count)")
  return jax.devices()[:k]


@pytest.mark.parametrize("method,delay", [("dni", 0), ("cdni", 0),
                                          ("bdni", 0), ("cdni", 2)])
def test_one_device_pipeline_is_the_synchronous_step(method, delay):
  net, opt = tiny.network("fcn", depth=3), tiny.optimizers()
  source = _source(method)
  batches = _batches(context=method == "bdni")
  pipe = DNIPipeline(net, opt, source, _devices(1), batches[0],
                     jax.random.PRNGKey(0), synth_delay=delay)
  state = pipe.init()
  sync = dni.init_train_state(net, opt, source, jax.random.PRNGKey(0),
                              batches[0], synth_delay=delay)
  step = dni.make_train_step(net, opt, source)
  for t in range(4):
    state, metrics = pipe.tick(state, t, lambda m: batches[m])
    sync, sync_metrics = step(sync, batches[t])
  (group,) = state["groups"].values()
  chex.assert_trees_all_close(group.stage_params, sync.stage_params, **TOL)
  chex.assert_trees_all_close(group.synth_params, sync.synth_params, **TOL)
  chex.assert_trees_all_close(group.stage_state, sync.stage_state, **TOL)
  assert set(metrics) == set(sync_metrics)
  for k, v in sync_metrics.items():
    assert float(metrics[k]) == pytest.approx(float(v), rel=1e-5)


def _replay(net, opt, source, groups, batches, ticks, delay=0):
  """REFERENCE §6 in plain Python: device after device, messages in dicts.

  A message sent at tick t is delivered at tick t+1, tagged with its
  micro-batch; a device regresses its output synthesizer on whatever target
  is delivered, against the output it kept for that micro-batch. With a
  stale interface (``delay`` d) a device's stages use its synthesizers as
  they were d of its ticks before.
  """
  n = len(net.stages)
  full = dni.init_train_state(net, opt, source, jax.random.PRNGKey(0),
                              batches[0])
  params, bn, opt_s = (list(full.stage_params), list(full.stage_state),
                       list(full.stage_opt_state))
  sp, ss, so = (list(full.synth_params), list(full.synth_state),
                list(full.synth_opt_state))
  history = {bb: [sp[bb]] * delay for bb in range(len(sp))}
  inbox_f, inbox_b, kept = {}, {}, {}

  def context(b):
    if source.conditioning == "labels":
      return jax.nn.one_hot(b["labels"], tiny.NUM_CLASSES)
    return b["context"] if source.conditioning == "batch" else None

  def update(tx, grads, opt_state, p):
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  def synth(b, p, h, ctx, rng):
    return module_state.apply(net.synthesizers[b], p, ss[b], h, ctx,
                              train=True, rng=jax.random.fold_in(rng, b))[0]

  for t in range(ticks):
    out_f, out_b = {}, {}
    for g in groups:
      k, m = g.index, t - g.index
      if m < 0:
        continue
      b = batches[m]
      rng = jax.random.fold_in(full.rng, m)
      stage_rng, synth_rng = jax.random.split(rng)
      ctx = context(b)
      h = b["inputs"] if k == 0 else inbox_f.pop((k, m))
      vjps, outs = {}, {}
      for i in g.stages:
        def f(p, x, i=i):
          return module_state.apply(net.stages[i], p, bn[i], x, train=True,
                                    rng=jax.random.fold_in(stage_rng, i))
        if i == n - 1:
          def loss(p, x):
            out, st = f(p, x)
            return net.loss_fn(out, b["labels"]), st
          (value, st), (gp, gx) = jax.value_and_grad(
              loss, argnums=(0, 1), has_aux=True)(params[i], h)
          vjps[i] = (gp, gx)
          bn[i] = st
        else:
          out, vjp, st = jax.vjp(f, params[i], h, has_aux=True)
          vjps[i], outs[i], bn[i] = vjp, out, st
          h = out
      preds = {bb: synth(bb, history[bb][0] if delay else sp[bb], outs[bb],
                         ctx, synth_rng)
               for bb in g.boundaries}
      grads, in_cot = {}, {}
      for i in g.stages:
        if i == n - 1:
          grads[i], in_cot[i] = vjps[i]
        else:
          grads[i], in_cot[i] = vjps[i](net.sg_scale / 8 * preds[i])
      for i in g.stages:
        params[i], opt_s[i] = update(opt.stage, grads[i], opt_s[i],
                                     params[i])
      new_sp = {}
      for bb in g.boundaries:
        if bb == g.stop - 1:
          continue  # the output boundary: its target comes later
        target = 8 * in_cot[bb + 1]
        gsp = jax.grad(lambda p: jnp.sum(jnp.square(
            synth(bb, p, outs[bb], ctx, synth_rng) - target)) / 8)(sp[bb])
        new_sp[bb] = update(opt.synth, gsp, so[bb], sp[bb])
      if not g.is_last:
        bb = g.stop - 1
        kept[(k, m)] = (outs[bb], ctx)
        if k in inbox_b:
          tag, target = inbox_b.pop(k)
          h_kept, ctx_kept = kept.pop((k, tag))
          gsp = jax.grad(lambda p: jnp.sum(jnp.square(
              synth(bb, p, h_kept, ctx_kept, synth_rng) - 8 * target)) / 8)(
                  sp[bb])
          new_sp[bb] = update(opt.synth, gsp, so[bb], sp[bb])
        out_f[(k + 1, m)] = outs[bb]
      for bb in g.boundaries:  # the old synthesizers join the queue
        history[bb] = history[bb][1:] + [sp[bb]] if delay else []
      for bb, (p, o) in new_sp.items():
        sp[bb], so[bb] = p, o
      if not g.is_first:
        out_b[k - 1] = (m, in_cot[g.start])
    inbox_f.update(out_f)
    inbox_b.update(out_b)
  return params, sp


@pytest.mark.parametrize("method,delay", [("dni", 0), ("cdni", 0),
                                          ("bdni", 0), ("cdni", 2)])
@pytest.mark.parametrize("depth,split", [(3, (2, 1)), (3, (1, 2)),
                                         (3, (1, 1, 1))])
def test_the_schedule_is_the_algorithm(method, delay, depth, split):
  """The pipeline equals a plain replay of REFERENCE §6's ticks.

  SGD, not Adam: Adam's first steps map a gradient entry of 1e-9 (rounding
  noise where the exact value is 0) to a full step of the learning rate, so
  two correct programs that round differently (the replay runs op by op,
  the pipeline jitted) would not agree; with SGD they agree to rounding.
  """
  net = tiny.network("fcn", depth=depth)
  opt = dni.Optimizers(optax.sgd(0.1), optax.sgd(0.1))
  source = _source(method)
  batches = _batches(context=method == "bdni")
  pipe = DNIPipeline(net, opt, source, _devices(len(split)), batches[0],
                     jax.random.PRNGKey(0), stages_per_device=split,
                     synth_delay=delay)
  state = pipe.init()
  ticks = 7 + 2 * delay  # until every synthesizer has had a target
  for t in range(ticks):
    state, _ = pipe.tick(state, t, lambda m: batches[m])
  params, sp = _replay(net, opt, source, pipe.groups, batches, ticks, delay)
  if delay:  # the stale replay is a different algorithm: the test can tell
    fresh, _ = _replay(net, opt, source, pipe.groups, batches, ticks)
    assert max(float(jnp.abs(a - b).max()) for a, b in zip(
        jax.tree_util.tree_leaves(fresh), jax.tree_util.tree_leaves(params))
               ) > 1e-6
  got_params = [p for k in sorted(state["groups"])
                for p in state["groups"][k].stage_params]
  got_synths = [p for k in sorted(state["groups"])
                for p in state["groups"][k].synth_params]
  chex.assert_trees_all_close(got_params, params, **TOL)
  chex.assert_trees_all_close(got_synths, sp, **TOL)
  # The synthesizers moved off zero: the comparison is not of zeros.
  assert all(float(jnp.abs(p["output"]["kernel"]).max()) > 0 for p in sp)


@pytest.mark.parametrize("num_devices", [2, 3])
def test_backprop_pipeline_is_backprop_on_the_global_batch(num_devices):
  net = dni.decouple(dni.fcn_stages(3, 16, tiny.NUM_CLASSES,
                                    use_batch_norm=False))
  opt, source = tiny.optimizers(), dni.get_source("backprop")
  big = tiny.batch(size=8)
  micro = [{k: v[i * 2:(i + 1) * 2] for k, v in big.items()}
           for i in range(4)]
  pipe = BackpropPipeline(net, opt, source, _devices(num_devices), micro[0],
                          jax.random.PRNGKey(0), num_microbatches=4)
  state = pipe.init()
  ref = dni.init_train_state(net, opt, source, jax.random.PRNGKey(0),
                             micro[0])
  step = dni.make_train_step(net, opt, source)
  for seed in range(2):
    big = tiny.batch(size=8, seed=seed)
    micro = [{k: v[i * 2:(i + 1) * 2] for k, v in big.items()}
             for i in range(4)]
    state, metrics = pipe.step(state, micro)
    ref, ref_metrics = step(ref, big)
  got = [p for k in sorted(state["groups"])
         for p in state["groups"][k].stage_params]
  chex.assert_trees_all_close(got, list(ref.stage_params), **TOL)
  assert float(metrics["loss"]) == pytest.approx(float(ref_metrics["loss"]),
                                                 rel=1e-5)


def test_bad_placements_and_batches_are_clear_errors(tmp_path):
  with pytest.raises(ConfigError, match="needs at least 4 stages"):
    placement.place(3, 4)
  with pytest.raises(ConfigError, match="misses stages"):
    placement.place(4, 2, (1, 2))
  with pytest.raises(ConfigError, match="repeats stages"):
    placement.place(3, 2, (2, 2))
  with pytest.raises(ConfigError, match="gives a device no stage"):
    placement.place(3, 2, (3, 0))
  config = tiny_config("binary_addition", method="backprop", batch_size=6,
                       **{"parallel.num_devices": 2,
                          "parallel.microbatches": 4})
  with pytest.raises(ConfigError, match="does not split into"):
    train.train_and_evaluate(config, tmp_path)
  config = tiny_config("binary_addition", method="cdni",
                       **{"parallel.num_devices": 8})
  with pytest.raises(ConfigError, match="this run has 4 device"):
    train.train_and_evaluate(config, tmp_path)
  assert not os.listdir(tmp_path)


def test_coordinator_port_in_use_is_refused():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    s.listen()
    address = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ConfigError, match="already in use"):
      distributed.initialize(address, 2, 0)
  with pytest.raises(ConfigError, match="outside 0..1"):
    distributed.initialize("127.0.0.1:1", 2, 5)


def _pipelined(method, **overrides):
  config = tiny_config("binary_addition", method=method, num_steps=6,
                       log_every=2, eval_every=3, checkpoint_every=2,
                       **{"parallel.num_devices": 2,
                          "model.hidden": (8, 8), **overrides})
  return config


def test_pipelined_run_resumes_exactly(tmp_path, monkeypatch):
  from dni_jax.parallel import pipeline as pipeline_lib
  train.train_and_evaluate(_pipelined("cdni"), tmp_path / "straight")
  real = pipeline_lib.DNIPipeline.tick

  def crash(self, state, t, batch):
    if t == 5:
      raise KeyboardInterrupt("simulated")
    return real(self, state, t, batch)
  monkeypatch.setattr(pipeline_lib.DNIPipeline, "tick", crash)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(_pipelined("cdni"), tmp_path / "resumed")
  monkeypatch.setattr(pipeline_lib.DNIPipeline, "tick", real)
  train.train_and_evaluate(_pipelined("cdni"), tmp_path / "resumed")
  assert read_metrics(tmp_path / "straight" / "metrics.jsonl") == read_metrics(
      tmp_path / "resumed" / "metrics.jsonl")
  records = read_metrics(tmp_path / "straight" / "metrics.jsonl")
  assert [r["step"] for r in records if r["split"] == "test"] == [3, 6]


def test_two_processes_match_one_process_with_two_devices(tmp_path):
  args = ["--config=configs/binary_addition.py", "--config.method=cdni",
          "--config.parallel.num_devices=2", "--config.num_steps=6",
          "--config.log_every=2", "--config.eval_every=3",
          "--config.model.hidden=(8,8)"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  launched = subprocess.run(
      [sys.executable, "-m", "experiments.launch", "--num_processes=2", "--",
       f"--workdir={tmp_path / 'two'}", *args], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=300)
  assert launched.returncode == 0, launched.stderr[-3000:]
  single = subprocess.run(
      [sys.executable, "-m", "experiments.main", f"--workdir={tmp_path / 'one'}",
       *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
  assert single.returncode == 0, single.stderr[-3000:]
  two = read_metrics(tmp_path / "two" / "metrics.jsonl")
  one = read_metrics(tmp_path / "one" / "metrics.jsonl")
  assert len(two) == len(one) > 0
  for a, b in zip(two, one):
    assert a.keys() == b.keys()
    for k in a:
      if isinstance(a[k], str):
        assert a[k] == b[k]
      else:
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k
  assert os.path.isdir(tmp_path / "two" / "process_1" / "checkpoints")


