"""Stages on separate devices: the DNI pipeline and the backprop pipeline.

docs/method.md. ``K`` devices in a chain, device ``k`` holding the stage
group ``k`` (``dni_jax.parallel.placement``). The data is a stream of
micro-batches ``m = 0, 1, …`` (each ``batch(m)``, labels included).

**DNI pipeline**, tick ``t`` (``DNIPipeline.tick``), on every device at once:

  device k works on micro-batch m = t − k (nothing while t < k: the fill)
  1. its input h_{k-1}^(m) arrived at the end of tick t−1 (device 0: x^(m));
  2. forward of its stages with the parameters θ_k as they are now;
  3. synthetic gradients λ·M_b(h_b^(m), c^(m)) at every boundary it holds;
     its stages update at once (inside the device: §2, synchronously);
  4. sends h_k^(m) forward and g_in^(m), the input cotangent of its first
     stage (the bootstrapped target of device k−1's output boundary for
     micro-batch m), backward; both arrive at tick t+1;
  5. the target that arrived now was sent by device k+1 at tick t−1, which
     then worked on micro-batch m−1... for its own input: it is the target
     of *this* device's output for micro-batch m−2 (computed here at tick
     t−2, sent at t−2, processed by k+1 at t−1, sent back, arrived at t).
     M_k regresses M_k(h_k^(m−2), c^(m−2)) — with its current parameters,
     on the output it kept for two ticks — onto that target.

The last device computes the loss and updates with the true gradient; its
input cotangent is the true ``∂L/∂h`` at the last boundary. After ``K−1``
ticks every device works at every tick; none waits for a later device's
backward pass. A target is two ticks old when it is used: with transfers
that arrive at the next tick, one round trip takes two ticks.

**Backprop pipeline** (``BackpropPipeline.step``): GPipe fill–drain. The
global batch is split into ``M`` micro-batches; ``M + K − 1`` forward ticks
(device ``k`` on micro-batch ``τ − k``, keeping its input), then ``M + K −
1`` backward ticks (each device recomputes its forward and takes the vjp of
the cotangent from device ``k+1``), then one update of every stage with the
mean gradient: the update of backprop on the global batch.

Each device's work is its own jitted program; ``Exchange`` moves the
tick's outputs. In a multi-process run each process drives its own devices.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from dni_jax.core import module_state
from dni_jax.core import train_state as train_state_lib
from dni_jax.core.network import DecoupledNetwork
from dni_jax.core.train_state import Optimizers
from dni_jax.errors import ConfigError
from dni_jax.parallel import group as group_lib
from dni_jax.parallel import placement
from dni_jax.parallel.exchange import Exchange
from dni_jax.parallel.exchange import pack
from dni_jax.parallel.exchange import unpack

BatchFn = Callable[[int], dict]  # micro-batch index -> {"inputs", "labels"}


def _boundary_shapes(net, full_state, example):
  """``h_1 … h_N`` shapes (``[B, ...]``) of a training forward pass."""
  def run(state, x):
    h, shapes = x, []
    for stage, p, s in zip(net.stages, state.stage_params, state.stage_state):
      h, _ = module_state.apply(stage, p, s, h, train=False)
      shapes.append(h)
    return shapes
  return [tuple(s.shape) for s in jax.eval_shape(run, full_state,
                                                 example["inputs"])]


class _Pipeline:
  """What both pipelines share: placement, devices, transfers, metrics."""

  def __init__(self, net: DecoupledNetwork, optimizers: Optimizers, source,
               devices: Sequence[jax.Device], example: dict, rng: jax.Array,
               stages_per_device: Sequence[int] = (), synth_delay: int = 0):
    self.net, self.optimizers, self.source = net, optimizers, source
    self.groups = placement.place(len(net.stages), len(devices),
                                  stages_per_device)
    self.exchange = Exchange(devices)
    self.devices = self.exchange.devices
    self.local = self.exchange.local
    self.full = train_state_lib.init_train_state(
        net, optimizers, source, rng, example, synth_delay=synth_delay)
    self.shapes = _boundary_shapes(net, self.full, example)
    self.batch = example["inputs"].shape[0]
    self.input_shape = tuple(example["inputs"].shape)
    width = max(math.prod(s[1:]) for s in self.shapes[:-1] or [(1, 1)])
    self.num_outputs = self.shapes[-1][-1]
    metric_shapes = jax.eval_shape(net.metrics_fn,
                                   jax.ShapeDtypeStruct(self.shapes[-1],
                                                        jnp.float32),
                                   example["labels"])
    self.metric_names = (["loss"] + sorted(metric_shapes) +
                         [f"synth_loss/{b}" for b in range(len(net.stages) - 1)
                          if source.uses_synthesizers])
    self.width = max(width, len(self.metric_names))
    self.example = example

  def in_shape(self, k: int, batch: int | None = None) -> tuple:
    shape = (self.input_shape if k == 0 else self.shapes[
        self.groups[k].start - 1])
    return ((batch or shape[0]),) + tuple(shape[1:])

  def out_shape(self, k: int, batch: int | None = None) -> tuple:
    shape = self.shapes[self.groups[k].stop - 1]
    return ((batch or shape[0]),) + tuple(shape[1:])

  def _metric_vector(self, metrics: dict) -> jax.Array:
    return jnp.stack([jnp.asarray(metrics.get(n, 0.0), jnp.float32)
                      for n in self.metric_names])[None]

  def _no_metrics(self, k: int) -> jax.Array:
    return jax.device_put(jnp.zeros((1, len(self.metric_names)), jnp.float32),
                          self.devices[k])

  def _on_device(self, tree, k: int):
    """A copy of ``tree`` on device ``k`` (never an alias: ticks donate)."""
    return jax.device_put(jax.device_get(tree), self.devices[k])

  def zeros(self, k: int, batch: int | None = None) -> jax.Array:
    """An empty transfer buffer ``[1, batch, width]`` on device ``k``."""
    return jax.device_put(
        jnp.zeros((1, batch or self.batch, self.width), jnp.float32),
        self.devices[k])

  def _metrics_of(self, vector, keep) -> dict:
    return {n: vector[i] for i, n in enumerate(self.metric_names) if keep(n)}

  def evaluate(self, groups: dict, batches: Sequence[dict]) -> dict:
    """Example-weighted means of the loss and metrics of the composed chain.

    The evaluation batches flow through the devices like a pipeline's
    micro-batches (forward only, evaluation mode).
    """
    sums, count = None, 0
    fns = {k: self._eval_fn(k) for k in self.local}
    inbox = {}
    num = len(batches)
    for tick in range(num + len(self.groups) - 1):
      out, vec = {}, {}
      for k in self.local:
        m = tick - k
        b = batches[min(max(m, 0), num - 1)]
        n = b["labels"].shape[0]
        h_in = inbox.get(k, self.zeros(k, n))
        if h_in.shape[1] != n:
          h_in = self.zeros(k, n)
        x = jax.device_put(b["inputs"], self.devices[k]) if k == 0 else None
        labels = jax.device_put(b["labels"], self.devices[k])
        o, v = fns[k](groups[k], h_in, x, labels, jnp.asarray(0 <= m < num))
        out[k], vec[k] = o, v
      # Every device's buffer must have one shape: pad to this tick's size.
      size = max(o.shape[1] for o in out.values())
      out = {k: o if o.shape[1] == size else self.zeros(k, size)
             for k, o in out.items()}
      inbox, _, summed = self.exchange(
          out, {k: self.zeros(k, size) for k in self.local}, vec,
          backward=False)
      m_last = tick - (len(self.groups) - 1)
      if 0 <= m_last < num:
        n = batches[m_last]["labels"].shape[0]
        sums = summed if sums is None else sums + summed
        count += n
    values = jax.device_get(sums)
    return {name: float(values[i]) / count
            for i, name in enumerate(self.metric_names)
            if not name.startswith("synth_loss")}

  @functools.lru_cache(maxsize=None)
  def _eval_fn(self, k: int):
    group = self.groups[k]
    net = self.net

    def fn(state, h_in, x, labels, valid):
      n = labels.shape[0]
      h = x if group.is_first else unpack(h_in, self.in_shape(k, n))
      out, _ = group_lib.group_forward(state, h, net=net, group=group,
                                       train=False)
      if group.is_last:
        metrics = {"loss": net.loss_fn(out, labels),
                   **net.metrics_fn(out, labels)}
        vec = self._metric_vector({key: v * n * valid
                                   for key, v in metrics.items()})
        return jnp.zeros((1, n, self.width), jnp.float32), vec
      return pack(out, self.width), self._metric_vector({})
    return jax.jit(fn)


class DNIPipeline(_Pipeline):
  """The DNI pipeline: every device updates at every tick (docs/method.md).

  State (``init``): ``{"groups": {k: GroupState}, "inbox_fwd": {k: [1, B,
  A]}, "inbox_bwd": {...}}`` for the local devices: the in-flight
  activations and targets are part of it, so a checkpoint resumes exactly.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if not self.source.uses_synthesizers:
      raise ConfigError("the DNI pipeline needs synthetic gradients (method "
                        "dni or cdni); method backprop runs the backprop "
                        "pipeline (BackpropPipeline).")
    # The batch entry each device's synthesizers make their context from,
    # sent with every micro-batch (the labels for dni, which ignores them).
    self.cond_key = self.source.context_key or "labels"
    if self.cond_key not in self.example:
      raise ConfigError(f"conditioning={self.source.conditioning!r} needs a "
                        f"{self.cond_key!r} entry in every micro-batch.")
    self.cond_like = self.example[self.cond_key]
    # Device k's jitted tick, ``ticks[k](group_state, inbox_fwd, inbox_bwd,
    # x, labels, cond, fwd_valid=..., target_valid=...)``.
    self.ticks = {k: self._tick_fn(k) for k in self.local}

  def init(self) -> dict:
    groups = {}
    for k in self.local:
      g = self.groups[k]
      state = group_lib.init_group_state(
          self.full, g, None if g.is_last else self.out_shape(k),
          self.cond_like.shape, self.cond_like.dtype)
      groups[k] = self._on_device(state, k)
    rows = self.batch + 1  # the activations, then a row of metrics
    return {"groups": groups,
            "inbox_fwd": {k: self.zeros(k, rows) for k in self.local},
            "inbox_bwd": {k: self.zeros(k, rows) for k in self.local}}

  def _tick_fn(self, k: int):
    group = self.groups[k]
    tick = functools.partial(
        group_lib.dni_tick, net=self.net, group=group, source=self.source,
        optimizers=self.optimizers, num_outputs=self.num_outputs)
    rows, size = self.batch, len(self.metric_names)

    def fn(state, inbox_f, inbox_b, x, labels, cond, fwd_valid, target_valid):
      h_in = (None if group.is_first else
              unpack(inbox_f[:, :rows], self.in_shape(k)))
      target = (None if group.is_last else
                unpack(inbox_b[:, :rows], self.out_shape(k)))
      new, h_out, g_in, metrics = tick(state, h_in, target, x, labels,
                                       fwd_valid, target_valid, cond)
      own = self._metric_vector(metrics)[0]
      # The metrics travel back with the cotangents, each device adding its
      # own to those that came from the next one: device 0 reads device j's
      # j ticks after they were made.
      relayed = own if group.is_last else own + inbox_b[0, rows, :size]
      row = jnp.zeros((1, 1, self.width)).at[0, 0, :size].set(relayed)
      body_f = (jnp.zeros((1, rows, self.width)) if h_out is None
                else pack(h_out, self.width))
      body_b = (jnp.zeros((1, rows, self.width)) if g_in is None
                else pack(g_in, self.width))
      if group.is_first:  # what device 0 knows: its own, and the relayed
        known = own if group.is_last else own + inbox_b[0, rows, :size]
        own = {n: known[i] for i, n in enumerate(self.metric_names)}
      else:
        own = {}
      return (new, jnp.concatenate([body_f, jnp.zeros_like(row)], 1),
              jnp.concatenate([body_b, row], 1), own)
    # The validity flags are static: the steady state (both true) compiles
    # with no masking; the fill's few ticks have their own programs.
    return jax.jit(fn, donate_argnums=0,
                   static_argnames=("fwd_valid", "target_valid"))

  def _metric_owner(self, name: str) -> tuple[int, int]:
    """``(device, ticks after its micro-batch's arrival that it is valid)``."""
    if name.startswith("synth_loss/"):
      b = int(name.split("/")[1])
      g = next(g for g in self.groups if b in g.boundaries)
      return g.index, (0 if b != g.stop - 1 else 2)
    return len(self.groups) - 1, 0  # the loss and task metrics: last device

  def tick(self, state: dict, t: int, batch: BatchFn) -> tuple[dict, dict]:
    """Tick ``t`` on the local devices, then the exchange.

    Returns:
      ``(state, metrics)``: on the process of device 0, each metric as
      device 0 knows it at this tick (device ``j``'s from its tick ``t − j``,
      relayed back with the cotangents), only those of real micro-batches;
      ``{}`` on other processes.
    """
    groups, out_f, out_b, own = {}, {}, {}, {}
    for k in self.local:
      m = t - k
      data = batch(max(m, 0))
      x = (jax.device_put(data["inputs"], self.devices[k]) if k == 0
           else None)
      labels = jax.device_put(data["labels"], self.devices[k])
      cond = jax.device_put(data[self.cond_key], self.devices[k])
      groups[k], out_f[k], out_b[k], own[k] = self.ticks[k](
          state["groups"][k], state["inbox_fwd"][k], state["inbox_bwd"][k],
          x, labels, cond, fwd_valid=m >= 0, target_valid=m - 2 >= 0)
    fwd_in, bwd_in, _ = self.exchange(out_f, out_b)
    new_state = {"groups": groups, "inbox_fwd": fwd_in, "inbox_bwd": bwd_in}
    if 0 not in self.local:
      return new_state, {}

    def keep(name):  # device k's value came back from its tick t − k
      k, delay = self._metric_owner(name)
      return (t - k) - k - delay >= 0
    return new_state, {n: v for n, v in own[0].items() if keep(n)}

  def evaluate_state(self, state: dict, batches) -> dict:
    return self.evaluate(state["groups"], batches)


class BackpropPipeline(_Pipeline):
  """GPipe fill–drain over ``num_microbatches`` micro-batches (docs/method.md).

  ``example`` is one micro-batch. State: ``{"groups": {k: GroupState}}``
  (between steps nothing is in flight).
  """

  def __init__(self, *args, num_microbatches: int = 1, **kwargs):
    super().__init__(*args, **kwargs)
    self.num_microbatches = num_microbatches
    self._fwd = {k: self._forward_fn(k) for k in self.local}
    self._bwd = {k: self._backward_fn(k) for k in self.local}
    self._apply = {k: jax.jit(functools.partial(
        group_lib.bp_apply, num_microbatches=num_microbatches,
        optimizers=self.optimizers), donate_argnums=0) for k in self.local}

  def init(self) -> dict:
    groups = {}
    for k in self.local:
      state = group_lib.init_group_state(self.full, self.groups[k])
      groups[k] = self._on_device(state, k)
    return {"groups": groups}

  def _rng(self, state, m):
    return jax.random.fold_in(jax.random.fold_in(state.rng, state.step), m)

  def _forward_fn(self, k):
    group = self.groups[k]

    def fn(state, inbox_f, x, m):
      h_in = None if group.is_first else unpack(inbox_f, self.in_shape(k))
      out, st = group_lib.bp_forward(state, h_in, x, net=self.net,
                                     group=group, rng=self._rng(state, m))
      return pack(out, self.width), st
    return jax.jit(fn)

  def _backward_fn(self, k):
    group = self.groups[k]

    def fn(state, kept_in, x, inbox_b, labels, m, grad_sums):
      h_in = None if group.is_first else unpack(kept_in, self.in_shape(k))
      cot = None if group.is_last else unpack(inbox_b, self.out_shape(k))
      grads, g_in, metrics, st = group_lib.bp_backward(
          state, h_in, x, cot, labels, net=self.net, group=group,
          rng=self._rng(state, m))
      grad_sums = jax.tree_util.tree_map(jnp.add, grad_sums, grads)
      out_b = (jnp.zeros((1, labels.shape[0], self.width)) if g_in is None
               else pack(g_in, self.width))
      return grad_sums, out_b, self._metric_vector(metrics), st
    return jax.jit(fn)

  def step(self, state: dict, batches: Sequence[dict]) -> tuple[dict, dict]:
    """One update of every stage from the ``M`` micro-batches of a batch."""
    num, mb = len(self.groups), self.num_microbatches
    groups = state["groups"]
    kept = {k: {} for k in self.local}  # the inputs each device keeps
    bn = {k: groups[k].stage_state for k in self.local}
    inbox = {k: self.zeros(k) for k in self.local}
    sums = {k: jax.device_put(group_lib.zeros_like_grads(groups[k]),
                              self.devices[k]) for k in self.local}
    loss_sum, pending_cot = None, {}
    last = num - 1
    put = lambda a, k: jax.device_put(a, self.devices[k])
    for tau in range(mb + num - 1):  # forward (the last device: + backward)
      out = {}
      for k in self.local:
        m = tau - k
        if not 0 <= m < mb:
          out[k] = self.zeros(k)
          continue
        x = put(batches[m]["inputs"], k) if k == 0 else None
        kept[k][m] = (inbox[k], x)
        if k == last:
          sums[k], pending_cot[m], vec, bn[k] = self._bwd[k](
              groups[k], inbox[k], x, None, put(batches[m]["labels"], k),
              m, sums[k])
          loss_sum = vec if loss_sum is None else loss_sum + vec
          out[k] = self.zeros(k)
        else:
          out[k], bn[k] = self._fwd[k](groups[k].replace(stage_state=bn[k]),
                                       inbox[k], x, m)
      inbox, _, _ = self.exchange(
          out, {k: self.zeros(k) for k in self.local}, backward=False)
    inbox_b = {k: self.zeros(k) for k in self.local}
    for beta in range(mb + num - 1 if num > 1 else 0):  # backward
      out_b = {}
      for k in self.local:
        if k == last:
          out_b[k] = pending_cot.get(beta, self.zeros(k))
          continue
        m = beta - (last - k)
        if not 0 <= m < mb:
          out_b[k] = self.zeros(k)
          continue
        kept_in, x = kept[k].pop(m)
        sums[k], out_b[k], _, _ = self._bwd[k](
            groups[k], kept_in, x, inbox_b[k],
            put(batches[m]["labels"], k), m, sums[k])
      _, inbox_b, _ = self.exchange(
          {k: self.zeros(k) for k in self.local}, out_b, forward=False)
    new = {k: self._apply[k](groups[k], sums[k], new_bn=bn[k])
           for k in self.local}
    vec = loss_sum
    # The loss lives on the last device; share it with every process.
    _, _, summed = self.exchange(
        {k: self.zeros(k) for k in self.local},
        {k: self.zeros(k) for k in self.local},
        {k: (vec if k == last else self._no_metrics(k))
         for k in self.local}, forward=False, backward=False)
    metrics = self._metrics_of(summed / mb, lambda n: True)
    return {"groups": new}, metrics

  def evaluate_state(self, state: dict, batches) -> dict:
    return self.evaluate(state["groups"], batches)
