"""The pure training and evaluation steps, shared by every method.

``train_step(state, batch) -> (state, metrics)``: a staged forward pass, the
gradient source (backprop / DNI / cDNI), then one optax update per stage and
per synthesizer. ``make_train_step`` binds the static choices and jits it once
with the state donated.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dni_jax.core import gradient_sources
from dni_jax.core import interface
from dni_jax.core import losses
from dni_jax.core import module_state
from dni_jax.core import stale
from dni_jax.core import staged
from dni_jax.core import stochastic
from dni_jax.core import train_state as train_state_lib
from dni_jax.core.network import DecoupledNetwork
from dni_jax.core.train_state import Optimizers, TrainState


def _check_batch(batch: dict) -> None:
  missing = {"inputs", "labels"} - set(batch)
  if missing:
    raise KeyError(f"a batch needs 'inputs' and 'labels'; missing "
                   f"{sorted(missing)} (got keys {sorted(batch)})")


def update_each(tx: optax.GradientTransformation, grads: tuple,
                 opt_states: tuple, params: tuple) -> tuple[tuple, tuple]:
  """One optax update per element: each stage keeps its own optimiser."""
  new_params, new_opt_states = [], []
  for g, s, p in zip(grads, opt_states, params):
    p, s = interface.apply_update(tx, g, s, p)
    new_params.append(p)
    new_opt_states.append(s)
  return tuple(new_params), tuple(new_opt_states)


def _alignment_metrics(fwd: staged.ForwardPass, boundary_grads: tuple) -> dict:
  """Cosine and relative error of each boundary's gradient vs the truth."""
  _, true_grads = staged.backprop_grads(fwd)
  metrics = {}
  for i, (used, true) in enumerate(zip(boundary_grads, true_grads)):
    metrics[f"grad_cosine/{i}"] = losses.cosine_similarity(used, true)
    metrics[f"grad_rel_error/{i}"] = losses.relative_error(used, true)
  return metrics


def train_step(state: TrainState, batch: dict, *, net: DecoupledNetwork,
               optimizers: Optimizers, source: Callable,
               track_alignment: bool = False,
               update_prob: float | tuple | jax.Array = 1.0,
               schedule_clock: str = "steps") -> tuple[TrainState, dict]:
  """One update of every stage and synthesizer.

  Args:
    state: the current state. A non-empty ``state.synth_history`` (see
      ``init_train_state(..., synth_delay=d)``) makes the interface stale:
      the stages' synthetic gradients come from the synthesizers of ``d``
      steps before.
    batch: ``inputs`` and ``labels`` (and ``context`` if the source uses it).
    net: the network (static).
    optimizers: the optax transformations (static).
    source: the gradient source, e.g. ``get_source("dni")`` (static). An
      unlocked source (``dni_unlocked``, ``cdni_unlocked``) feeds every stage
      after the first its synthetic input ``I_i(x)``; the input models
      regress onto ``net.input_targets``: "neighbour" (stage ``i``'s output
      in that same forward, on ``I_{i-1}(x)``; no real chain is run) or
      "real_chain" (the composed stages' ``h_i``).
      ``net.synth_fit_at`` says where each synthesizer regresses: at the
      stage's output or at ``I_i(x)``.
    track_alignment: also compute the true gradient (a full backward pass)
      and report, per boundary, its cosine and relative error against the
      gradient the stage was updated with.
    update_prob: stochastic updates (``dni_jax.core.stochastic.wrap``, a
      wrapper around this step): each stage applies its update with this
      probability (one value or one per stage), independently of the
      others; the synthesizer below stage ``i`` regresses exactly when stage
      ``i`` updates, and an input model exactly when the stage whose output
      it predicts does. With an unlocked source a stage whose coin is tails
      is busy: it does not run, so its BatchNorm statistics stay too, and
      (with ``net.synth_fit_at="output"``) the synthesizer above it, which
      regresses at its output, is held back as well.
      Backprop flips one coin for the whole network. 1 (static) is the
      ordinary step. A traced ``[num_stages]`` array (a vmapped sweep's
      member, ``stochastic.probabilities``) always flips coins.
    schedule_clock: with ``update_prob < 1``, what a unit's learning-rate
      schedule counts: "steps" (every unit decays at the same global steps)
      or "updates" (its own updates).

  Returns:
    ``(new_state, metrics)``; metrics are scalars: ``loss``, the
    ``metrics_fn`` entries, ``synth_loss/i``, ``input_loss/i`` (complete
    unlock) and, on request, ``grad_cosine/i`` and ``grad_rel_error/i``.
  """
  step = functools.partial(_step, net=net, optimizers=optimizers,
                           source=source, track_alignment=track_alignment)
  probs = stochastic.probabilities(update_prob, len(net.stages))
  if stochastic.needs_coins(probs):
    step = stochastic.wrap(step, probs,
                           one_coin=not source.uses_synthesizers,
                           busy=source.unlocked,
                           synth_reads_output=net.synth_fit_at == "output",
                           schedule_clock=schedule_clock)
  return step(state, batch)


def _step(state: TrainState, batch: dict, *, net: DecoupledNetwork,
          optimizers: Optimizers, source: Callable,
          track_alignment: bool) -> tuple[TrainState, dict]:
  """The ordinary step (every unit updates): ``train_step`` without coins."""
  _check_batch(batch)
  stage_rng, synth_rng = jax.random.split(
      jax.random.fold_in(state.rng, state.step))
  inputs = None
  if source.unlocked:
    fwd, inputs = _unlocked_forward(state, batch, net, stage_rng, synth_rng)
  else:
    fwd = staged.forward(net, state.stage_params, state.stage_state, batch,
                         stage_rng)
  old = stale.oldest(state.synth_history) if state.synth_history else None
  fit_inputs = None
  if inputs is not None and net.synth_fit_at == "input_model":
    fit_inputs = inputs.preds
  out = source(net, fwd, state.synth_params, state.synth_state, batch,
               synth_rng, sg_scale=state.sg_scale, stale_synth_params=old,
               fit_inputs=fit_inputs)
  stage_params, stage_opt_state = update_each(
      optimizers.stage, out.stage_grads + (fwd.last_grads,),
      state.stage_opt_state, state.stage_params)
  synth_params, synth_opt_state = state.synth_params, state.synth_opt_state
  if out.synth_grads:
    synth_params, synth_opt_state = update_each(
        optimizers.synth, out.synth_grads, state.synth_opt_state,
        state.synth_params)
  new = state.replace(
      step=state.step + 1, stage_params=stage_params,
      stage_opt_state=stage_opt_state, stage_state=fwd.new_stage_state,
      synth_params=synth_params, synth_opt_state=synth_opt_state,
      synth_state=out.new_synth_state)

  metrics = {"loss": fwd.loss, **net.metrics_fn(fwd.outputs, batch["labels"])}
  for i, synth_loss in enumerate(out.synth_losses):
    if synth_loss is not None:  # None: a boundary without a synthesizer
      metrics[f"synth_loss/{i}"] = synth_loss
  if inputs is not None:
    input_losses, input_grads = gradient_sources.regress(
        inputs.preds, inputs.vjps, inputs.targets)
    input_params, input_opt_state = update_each(
        optimizers.synth, input_grads, state.input_opt_state,
        state.input_params)
    new = new.replace(input_params=input_params,
                      input_opt_state=input_opt_state,
                      input_state=inputs.new_state)
    for i, input_loss in enumerate(input_losses):
      metrics[f"input_loss/{i}"] = input_loss
  if track_alignment and out.synth_grads:
    metrics.update(_alignment_metrics(fwd, out.boundary_grads))
  if state.synth_history:  # this step's synthesizers take the oldest slot
    new = new.replace(synth_history=stale.push(
        state.synth_history, state.step, state.synth_params))
  return new, metrics


class InputModels(NamedTuple):
  """Complete unlock's synthetic inputs ``I_i(x)`` of one step.

  Attributes:
    preds: per boundary, ``I_i(x)``.
    vjps: per boundary, a cotangent on ``I_i(x)`` -> ``(param_grads,)``.
    targets: per boundary, ``I_i``'s stop-gradient target: with neighbour
      targets stage ``i``'s output in the training forward (on
      ``I_{i-1}(x)``, stage 0 on ``x``); with ``real_chain`` the real
      chain's ``h_i``.
    new_state: per boundary, the input model's new mutable state.
  """
  preds: tuple
  vjps: tuple
  targets: tuple
  new_state: tuple


def _unlocked_forward(state, batch, net, stage_rng, synth_rng):
  """Complete unlock's forward: stage ``i+1`` reads ``I_i(x)``, not ``h_i``.

  Returns the ``ForwardPass`` on the synthetic inputs and the
  ``InputModels``. ``net.input_targets`` picks the input models' targets
  and the stages' new mutable state: "neighbour", that forward's own
  outputs and state (no real chain runs); "real_chain", the real chain's
  ``h_i`` and state.
  """
  if len(net.input_models) != net.num_boundaries:
    raise ValueError("complete unlock needs an input model per boundary; "
                     "build the network with `decouple(..., input_model=...)`.")
  x = batch["inputs"]
  real = net.input_targets == "real_chain"
  if real:
    real_hidden, real_state = staged.real_chain(
        net, state.stage_params, state.stage_state, x, stage_rng)
    shapes = [h.shape for h in real_hidden]
  else:  # only the shapes: nothing of the real chain is computed
    shapes = [h.shape for h in jax.eval_shape(
        functools.partial(staged.real_chain, net), state.stage_params,
        state.stage_state, x, stage_rng)[0]]
  preds, vjps, input_state = _input_predictions(state, net, x, shapes,
                                                synth_rng)
  fwd = staged.forward(net, state.stage_params, state.stage_state, batch,
                       stage_rng, stage_inputs=preds)
  if not real:
    return fwd, InputModels(preds, vjps, fwd.hidden, input_state)
  fwd = fwd._replace(new_stage_state=real_state)
  return fwd, InputModels(preds, vjps, real_hidden, input_state)


def _input_predictions(state, net, x, shapes, synth_rng):
  """``I_i(x)`` of every boundary (``shapes``: ``h_i``'s), with its vjp.

  Returns:
    ``(preds, vjps, new_state)``, per-boundary tuples.
  """
  input_rng = jax.random.fold_in(synth_rng, train_state_lib.INPUT_STREAM)
  preds, vjps, input_state = [], [], []
  for i, (model, shape) in enumerate(zip(net.input_models, shapes)):
    def input_fn(params, model=model, i=i, shape=shape[1:]):
      return module_state.apply(model, params, state.input_state[i], x, shape,
                                train=True,
                                rng=jax.random.fold_in(input_rng, i))
    pred, vjp, new_state = jax.vjp(input_fn, state.input_params[i],
                                   has_aux=True)
    preds.append(pred)
    vjps.append(vjp)
    input_state.append(new_state)
  return tuple(preds), tuple(vjps), tuple(input_state)


def _chain(state: TrainState, inputs: jax.Array, net: DecoupledNetwork,
           batch_stats: bool = False) -> list:
  """Every stage's output on the real chain: BatchNorm with its running
  statistics, or (``batch_stats``) with the batch's own."""
  h, hidden = inputs, []
  for stage, params, stage_state in zip(net.stages, state.stage_params,
                                        state.stage_state):
    h, _ = module_state.apply(stage, params, stage_state, h,
                              train=batch_stats and bool(stage_state))
    hidden.append(h)
  return hidden


def predict(state: TrainState, inputs: jax.Array, *,
            net: DecoupledNetwork) -> jax.Array:
  """Evaluation-mode outputs of the whole chain (BatchNorm running stats)."""
  return _chain(state, inputs, net)[-1]


def eval_step(state: TrainState, batch: dict, *,
              net: DecoupledNetwork) -> dict:
  """Loss and ``metrics_fn`` of the whole chain in evaluation mode.

  A completely unlocked network (one with input models) also reports what
  tells its failures apart, all in evaluation mode:

  - ``input_error/i``: ``‖I_i(x) − h_i‖² / ‖h_i‖²`` over the batch (over
    a split, the example-weighted mean of the batches'), each input model
    against the real chain's ``h_i``;
  - ``synthetic/...``: the last stage's loss and metrics on
    ``I_{N-2}(x)``, the input it trained on;
  - ``batch_stats/...`` (if a stage keeps BatchNorm statistics): the real
    chain normalised by the batch's own statistics instead of the running
    ones gathered in training.
  """
  _check_batch(batch)
  x, labels = batch["inputs"], batch["labels"]
  hidden = _chain(state, x, net)
  metrics = {"loss": net.loss_fn(hidden[-1], labels),
             **net.metrics_fn(hidden[-1], labels)}
  if not (net.input_models and state.input_params):
    return metrics
  for i, (model, h) in enumerate(zip(net.input_models, hidden)):
    pred, _ = module_state.apply(model, state.input_params[i],
                                 state.input_state[i], x, h.shape[1:],
                                 train=False)
    # (A dead stage, h_i = 0, reads as a large error, not as NaN.)
    metrics[f"input_error/{i}"] = (jnp.sum(jnp.square(pred - h)) / jnp.maximum(
        jnp.sum(jnp.square(h)), jnp.finfo(jnp.float32).tiny))
    if i == net.num_boundaries - 1:
      outputs, _ = module_state.apply(net.stages[-1], state.stage_params[-1],
                                      state.stage_state[-1], pred,
                                      train=False)
      metrics["synthetic/loss"] = net.loss_fn(outputs, labels)
      metrics.update({f"synthetic/{k}": v for k, v in
                      net.metrics_fn(outputs, labels).items()})
  if any(state.stage_state):
    outputs = _chain(state, x, net, batch_stats=True)[-1]
    metrics["batch_stats/loss"] = net.loss_fn(outputs, labels)
    metrics.update({f"batch_stats/{k}": v for k, v in
                    net.metrics_fn(outputs, labels).items()})
  return metrics


def make_train_step(net: DecoupledNetwork, optimizers: Optimizers,
                    source: Callable, track_alignment: bool = False,
                    update_prob: float | tuple | jax.Array = 1.0,
                    schedule_clock: str = "steps"):
  """``train_step`` with the static choices bound, jitted, state donated."""
  stochastic.probabilities(update_prob, len(net.stages))  # fail early
  stochastic.check_clock(schedule_clock)  # likewise
  return jax.jit(
      functools.partial(train_step, net=net, optimizers=optimizers,
                        source=source, track_alignment=track_alignment,
                        update_prob=update_prob,
                        schedule_clock=schedule_clock),
      donate_argnums=0)


def make_eval_step(net: DecoupledNetwork):
  """``eval_step`` with the network bound, jitted."""
  return jax.jit(functools.partial(eval_step, net=net))
