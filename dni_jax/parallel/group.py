"""One device's share of a pipeline: its stages' forward, update and regression.

Pure functions of a ``GroupState`` (the device's stages, synthesizers and
optimiser states) and what arrived at the device this tick; the pipeline
(``dni_jax.parallel.pipeline``) jits one per device and moves the results
between devices.

- ``dni_tick``: docs/method.md, one tick of device ``k`` of the DNI
  pipeline. Forward of the micro-batch that arrived, synthetic gradients at
  every boundary the device holds, an immediate update of its stages
  (inside the device: §2, synchronously), the bootstrapped target of the
  previous device's output boundary to send back, and the regression of the
  device's output synthesizer on the target that arrived this tick.
- ``bp_forward`` / ``bp_backward`` / ``bp_apply``: the backprop pipeline
  (fill–drain): a forward that keeps its input, a backward that recomputes
  the forward and accumulates gradients, one update per global batch.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from dni_jax.core import interface
from dni_jax.core import module_state
from dni_jax.core import stale
from dni_jax.core import staged
from dni_jax.core.network import DecoupledNetwork
from dni_jax.core.step import update_each
from dni_jax.core.train_state import Optimizers
from dni_jax.core.train_state import TrainState
from dni_jax.parallel.placement import Group

KEPT = 2  # micro-batches a device keeps its output for: the target's round trip


@flax.struct.dataclass
class GroupState(TrainState):
  """Everything device ``k`` holds: a ``TrainState`` of its stages, plus.

  The ``TrainState`` fields hold the group's stages (``stage_*``) and the
  synthesizers of ``group.boundaries`` (``synth_*``); ``step`` counts the
  micro-batches this device has updated on; ``rng`` is the same base key on
  every device, as in the one-device step.

  A stale interface (``synth_history``, as in the one-device step): the
  stages' synthetic gradients come from the device's synthesizers of ``d``
  of its ticks before.

  Attributes:
    kept_h: ``[KEPT, B, ...]``: the group's output for the last ``KEPT``
      micro-batches, newest first (the output synthesizer regresses on the
      oldest when its target comes back); ``None`` on the last device.
    kept_labels: the batch entry the synthesizers' context is made from
      (labels for cDNI, ``batch["context"]`` for conditioning "batch") of
      those micro-batches.
  """
  kept_h: Any = None
  kept_labels: Any = None


def init_group_state(full: TrainState, group: Group, h_out_shape=None,
                     labels_shape=None, labels_dtype=jnp.int32) -> GroupState:
  """Device ``group.index``'s part of a one-device ``TrainState``.

  ``h_out_shape``: the shape of the group's output (``[B, ...]``) to keep
  for the output synthesizer's regression (DNI pipeline, every device but
  the last); ``None`` keeps nothing (the backprop pipeline).
  """
  stages = slice(group.start, group.stop)
  synths = slice(group.boundaries.start, group.boundaries.stop)
  kept_h = kept_labels = None
  if h_out_shape is not None and not group.is_last:
    kept_h = jnp.zeros((KEPT,) + tuple(h_out_shape), jnp.float32)
    kept_labels = jnp.zeros((KEPT,) + tuple(labels_shape), labels_dtype)
  return GroupState(
      step=full.step, rng=full.rng,
      stage_params=full.stage_params[stages],
      stage_state=full.stage_state[stages],
      stage_opt_state=full.stage_opt_state[stages],
      synth_params=full.synth_params[synths],
      synth_state=full.synth_state[synths],
      synth_opt_state=full.synth_opt_state[synths],
      synth_history=stale.select(full.synth_history, synths),
      sg_scale=full.sg_scale, kept_h=kept_h, kept_labels=kept_labels)


def _where(flag, new, old):
  """``new`` where ``flag``; a Python bool picks without copying anything."""
  if isinstance(flag, bool):
    return new if flag else old
  return jax.tree_util.tree_map(lambda n, o: jnp.where(flag, n, o), new, old)


def _stage_fn(net, state: GroupState, group: Group, i: int, rng, train=True):
  j = i - group.start

  def fn(params, h):
    return module_state.apply(
        net.stages[i], params, state.stage_state[j], h, train=train,
        rng=None if rng is None else jax.random.fold_in(rng, i))
  return fn


def _predict(net, state: GroupState, group: Group, b: int, h, context, rng,
             synth_state=None, synth_params=None) -> interface.Prediction:
  """``M_b(h, c)`` with its vjp and new state (training mode)."""
  j = b - group.boundaries.start
  synth_state = state.synth_state if synth_state is None else synth_state
  synth_params = state.synth_params if synth_params is None else synth_params
  return interface.predict(net.synthesizers[b], synth_params[j],
                           synth_state[j], h, context,
                           rng=jax.random.fold_in(rng, b))


def _forward(net, state, group, h, rng):
  """The group's stages up to (not including) a loss stage, with vjps: the
  core's ``staged.run_stages`` over the device's range."""
  n = len(group.stages) - (1 if group.is_last else 0)
  hidden, vjps, new_state = staged.run_stages(
      net, group.start, state.stage_params[:n], state.stage_state[:n], h, rng)
  return (hidden[-1] if hidden else h), hidden, vjps, list(new_state)


def _loss_stage(net, state, group, h, labels, rng):
  """The last stage: loss, its gradients, ``∂L/∂h`` at its input."""
  i = group.stop - 1
  return staged.loss_stage(net, i, state.stage_params[i - group.start],
                           state.stage_state[i - group.start], h, labels, rng)


def dni_tick(state: GroupState, h_in, target_in, x, labels, fwd_valid,
             target_valid, cond=None, *, net: DecoupledNetwork, group: Group,
             source, optimizers: Optimizers, num_outputs: int):
  """One tick of device ``group.index`` of the DNI pipeline (docs/method.md).

  Args:
    state: the device's state.
    h_in: the input activation that arrived (unused on device 0).
    target_in: the bootstrapped target of this device's output boundary
      that arrived: for the micro-batch whose output is ``state.kept_h[-1]``
      (unused on the last device).
    x: device 0's micro-batch input (unused elsewhere).
    labels: the labels of this device's micro-batch.
    fwd_valid: a micro-batch is here (false while the pipeline fills).
    target_valid: ``target_in`` belongs to a real micro-batch. Both may be
      Python bools (static: no masking in the compiled tick) or arrays.
    cond: the batch entry the context is made from (``source.context_key``:
      the labels for cDNI, ``batch["context"]`` for conditioning "batch");
      ``None``: ``labels``.
    net, group, source, optimizers: static; ``source`` a
      ``SyntheticGradients`` (any conditioning).
    num_outputs: the network's output width (cDNI's one-hot context).

  Returns:
    ``(new_state, h_out, g_in, metrics)``: the output to send forward
    (``None`` on the last device), the input cotangent to send back
    (``None`` on device 0), and scalars.
  """
  rng = jax.random.fold_in(state.rng, state.step)
  stage_rng, synth_rng = jax.random.split(rng)
  h = x if group.is_first else h_in
  h, hidden, vjps, new_stage_state = _forward(net, state, group, h, stage_rng)
  metrics = {}
  if group.is_last:
    loss, outputs, st, last_grads, last_in = _loss_stage(
        net, state, group, h, labels, stage_rng)
    new_stage_state.append(st)
    metrics = {"loss": loss, **net.metrics_fn(outputs, labels)}
  cond = labels if cond is None else cond
  context = source.context_of(cond, num_outputs)
  batch = labels.shape[0]
  units = batch if net.per_example else 1
  preds, new_synth_state = {}, []
  for b in group.boundaries:
    preds[b] = _predict(net, state, group, b, hidden[b - group.start],
                        context, synth_rng)
    new_synth_state.append(preds[b].model_state)
  used = preds
  if state.synth_history:  # a stale interface: the stages use old synths
    used = {b: _predict(net, state, group, b, hidden[b - group.start],
                        context, synth_rng,
                        synth_params=stale.oldest(state.synth_history))
            for b in group.boundaries}
  # Every non-loss stage updates from the synthetic gradient at its output.
  stage_grads, input_grads = [], []
  for j, vjp in enumerate(vjps):
    g, g_in = vjp(state.sg_scale / units * used[group.start + j].value)
    stage_grads.append(g)
    input_grads.append(g_in)
  if group.is_last:
    stage_grads.append(last_grads)
    input_grads.append(last_in)
  # Targets of the inner boundaries: the next stage's input cotangent.
  synth_losses, synth_grads = [], []
  for b in group.boundaries:
    if b == group.stop - 1:  # the output boundary: regressed below
      continue
    target = lax.stop_gradient(input_grads[b + 1 - group.start])
    l, g = interface.fit(preds[b], units * target)
    synth_losses.append((b, l))
    synth_grads.append(g)
  new_stage_params, new_stage_opt = update_each(
      optimizers.stage, tuple(stage_grads), state.stage_opt_state,
      state.stage_params)
  history = state.synth_history
  if history:  # this tick's synthesizers take the oldest slot
    history = stale.push(history, state.step, state.synth_params)
  new = state.replace(step=state.step + 1, stage_params=new_stage_params,
                      stage_state=tuple(new_stage_state),
                      stage_opt_state=new_stage_opt,
                      synth_state=tuple(new_synth_state),
                      synth_history=history)
  if not group.is_last:
    out_b = group.stop - 1
    kept_context = source.context_of(state.kept_labels[-1], num_outputs)
    kept = _predict(net, state, group, out_b, state.kept_h[-1], kept_context,
                    synth_rng, synth_state=new.synth_state)
    l, g = interface.fit(kept, units * target_in)
    synth_losses.append((out_b, l))
    synth_grads.append(g)
  inner = [b for b in group.boundaries if b != group.stop - 1 or
           group.is_last]
  synth_params, synth_opt = list(state.synth_params), list(
      state.synth_opt_state)
  for b, g in zip([b for b, _ in synth_losses], synth_grads):
    j = b - group.boundaries.start
    (p,), (o,) = update_each(optimizers.synth, (g,), (synth_opt[j],),
                             (synth_params[j],))
    valid = fwd_valid if b in inner else target_valid
    synth_params[j] = _where(valid, p, synth_params[j])
    synth_opt[j] = _where(valid, o, synth_opt[j])
  new = _where(fwd_valid, new, state)
  new = new.replace(synth_params=tuple(synth_params),
                    synth_opt_state=tuple(synth_opt))
  for b, l in synth_losses:
    metrics[f"synth_loss/{b}"] = l
  h_out = None
  if not group.is_last:
    h_out = hidden[-1]
    new = new.replace(
        kept_h=jnp.concatenate([h_out[None], state.kept_h[:-1]]),
        kept_labels=jnp.concatenate([cond[None], state.kept_labels[:-1]]))
  g_in = None if group.is_first else input_grads[0]
  return new, h_out, g_in, metrics


def group_forward(state: GroupState, h, *, net: DecoupledNetwork,
                  group: Group, train: bool, rng=None):
  """The group's stages composed (outputs of its last stage), new BN state."""
  new_state = []
  for i in group.stages:
    h, st = _stage_fn(net, state, group, i, rng, train=train)(
        state.stage_params[i - group.start], h)
    new_state.append(st)
  return h, tuple(new_state)


def bp_forward(state: GroupState, h_in, x, *, net, group, rng):
  """Backprop pipeline, a non-last device: output and new BN state."""
  h = x if group.is_first else h_in
  out, st = group_forward(state, h, net=net, group=group, train=True, rng=rng)
  return out, st


def bp_backward(state: GroupState, h_in, x, cotangent, labels, *, net,
                group, rng):
  """Backprop pipeline: gradients of the group from a recomputed forward.

  On the last device ``cotangent`` is unused: the loss gives it. Returns
  ``(param_grads, input_cotangent, loss, metrics, new_bn_state)``.
  """
  h = x if group.is_first else h_in

  def fn(params, h):
    s = state.replace(stage_params=params)
    return group_forward(s, h, net=net, group=group, train=True, rng=rng)
  if group.is_last:
    def objective(params, h):
      outputs, st = fn(params, h)
      return net.loss_fn(outputs, labels), (outputs, st)
    argnums = (0,) if group.is_first else (0, 1)
    (loss, (outputs, st)), grads = jax.value_and_grad(
        objective, argnums=argnums, has_aux=True)(state.stage_params, h)
    metrics = {"loss": loss, **net.metrics_fn(outputs, labels)}
    return grads[0], (None if group.is_first else grads[1]), metrics, st
  if group.is_first:
    _, vjp, st = jax.vjp(lambda p: fn(p, h), state.stage_params, has_aux=True)
    return vjp(cotangent)[0], None, {}, st
  _, vjp, st = jax.vjp(fn, state.stage_params, h, has_aux=True)
  grads, g_in = vjp(cotangent)
  return grads, g_in, {}, st


def bp_apply(state: GroupState, grad_sums, num_microbatches: int, new_bn,
             *, optimizers: Optimizers) -> GroupState:
  """One update of the group from gradients summed over the micro-batches."""
  grads = jax.tree_util.tree_map(lambda g: g / num_microbatches, grad_sums)
  params, opt = update_each(optimizers.stage, tuple(grads),
                            state.stage_opt_state, state.stage_params)
  return state.replace(step=state.step + 1, stage_params=params,
                       stage_opt_state=opt, stage_state=tuple(new_bn))


def zeros_like_grads(state: GroupState):
  return jax.tree_util.tree_map(jnp.zeros_like, state.stage_params)
