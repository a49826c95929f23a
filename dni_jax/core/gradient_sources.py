"""Where each stage's boundary gradient comes from: backprop, DNI or cDNI.

A *gradient source* turns a ``ForwardPass`` into the gradients of stages
``0…N-2`` (and, for synthetic gradients, of the synthesizers). It is the one
thing that differs between the methods, so backprop, DNI and cDNI share one
training step (``dni_jax.step``) and one test harness.

- ``Backprop``: the exact reverse sweep.
- ``SyntheticGradients``: ``δ̂_i = λ·M_i(h_i, c)`` at every boundary; every
  stage updates from its own ``δ̂_i`` (docs/method.md); every synthesizer
  regresses, by ``mean_batch ‖M_i − target_i‖²``, onto the bootstrapped
  target. With ``net.per_example`` (the default) ``M_i`` works in units of
  the per-example loss: ``δ̂_i = λ·M_i/B`` and the regression target is
  ``B·target_i``. ``conditioning`` picks ``c``: nothing (DNI), one-hot labels (cDNI) or
  ``batch["context"]``. ``oracle=True`` feeds the exact ``∂L/∂h_i`` instead of
  ``λ·M_i`` (the synthesizers still regress): the key invariant's test, and an
  upper bound for diagnostics. ``unlocked=True`` marks complete unlock
  (docs/method.md): the step feeds every stage its synthetic input
  ``I_i(x)`` (``dni_jax.core.synthetic_inputs``); the source is unchanged,
  but may regress the synthesizers at ``I_i(x)`` (``fit_inputs``).
- A stale interface (``stale_synth_params``): the stages are updated with the
  prediction of an older copy of the synthesizers (a slow link), while the
  current synthesizers regress onto the targets.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from dni_jax.core import interface
from dni_jax.core import staged
from dni_jax.core.network import DecoupledNetwork

CONDITIONINGS = ("none", "labels", "batch")


class SourceOutput(NamedTuple):
  """What a gradient source hands to the optimiser step.

  Attributes:
    stage_grads: parameter gradients of stages ``0…N-2``.
    synth_grads: per-boundary synthesizer gradients (``()`` without them).
    new_synth_state: per-boundary synthesizer mutable state.
    boundary_grads: the gradient each stage ``0…N-2`` was updated with.
    targets: the bootstrapped target of every boundary, in the units of
      ``∂L/∂h`` (the synthesizer regresses onto ``B`` times it when
      ``net.per_example``).
    synth_losses: every synthesizer's regression loss.
  """
  stage_grads: tuple
  synth_grads: tuple = ()
  new_synth_state: tuple = ()
  boundary_grads: tuple = ()
  targets: tuple = ()
  synth_losses: tuple = ()


def label_context(labels: jax.Array, num_outputs: int) -> jax.Array:
  """cDNI's context: one-hot integer labels, or float targets flattened."""
  if jnp.issubdtype(labels.dtype, jnp.integer):
    if labels.ndim != 1:
      raise ValueError(f"integer labels for cDNI must have shape [B], got "
                       f"{labels.shape}")
    return jax.nn.one_hot(labels, num_outputs)
  return labels.reshape(labels.shape[0], -1).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Backprop:
  """Exact gradients by a stage-by-stage reverse sweep."""
  uses_synthesizers = False
  unlocked = False

  def context(self, batch: staged.Batch, outputs: jax.Array) -> None:
    del batch, outputs
    return None

  def __call__(self, net: DecoupledNetwork, fwd: staged.ForwardPass,
               synth_params: Sequence, synth_state: Sequence,
               batch: staged.Batch, rng: jax.Array, *, sg_scale: Any = None,
               stale_synth_params: Sequence | None = None,
               fit_inputs: Sequence | None = None) -> SourceOutput:
    del net, synth_params, batch, rng, sg_scale, stale_synth_params
    del fit_inputs
    stage_grads, true_grads = staged.backprop_grads(fwd)
    return SourceOutput(stage_grads, (), tuple(synth_state), true_grads)


@dataclasses.dataclass(frozen=True)
class SyntheticGradients:
  """Synthetic gradients at every boundary (DNI; cDNI when conditioned).

  Attributes:
    conditioning: the synthesizers' context: "none" (DNI), "labels" (cDNI:
      one-hot labels, or float targets as they are) or "batch"
      (``batch["context"]``).
    oracle: update the stages with the exact gradient instead of ``λ·M_i``.
    unlocked: complete unlock: every stage after the first reads its
      synthetic input ``I_i(x)`` (the step runs it; the network needs
      ``input_models``).
  """
  conditioning: str = "none"
  oracle: bool = False
  unlocked: bool = False
  uses_synthesizers = True

  def __post_init__(self):
    if self.conditioning not in CONDITIONINGS:
      raise ValueError(f"unknown conditioning {self.conditioning!r}; choose "
                       f"one of {CONDITIONINGS}")

  @property
  def context_key(self) -> str | None:
    """The batch entry the context is made from (``None`` for DNI)."""
    return {"labels": "labels", "batch": "context"}.get(self.conditioning)

  def context(self, batch: staged.Batch, outputs: jax.Array) -> Any:
    """The synthesizers' context ``c`` for this batch (``None`` for DNI)."""
    if self.conditioning == "batch" and "context" not in batch:
      raise KeyError('conditioning="batch" needs a "context" entry [B, C] '
                     "in every batch")
    key = self.context_key
    return None if key is None else self.context_of(batch[key],
                                                    outputs.shape[-1])

  def context_of(self, entry: jax.Array | None, num_outputs: int) -> Any:
    """The context from the batch entry ``context_key`` names."""
    if self.conditioning == "labels":
      return label_context(entry, num_outputs)
    return entry if self.conditioning == "batch" else None

  def __call__(self, net: DecoupledNetwork, fwd: staged.ForwardPass,
               synth_params: Sequence, synth_state: Sequence,
               batch: staged.Batch, rng: jax.Array, *, sg_scale: Any,
               stale_synth_params: Sequence | None = None,
               fit_inputs: Sequence | None = None) -> SourceOutput:
    """The stage and synthesizer gradients of one forward pass.

    ``sg_scale``: λ (the train state's ``sg_scale``).

    ``stale_synth_params``: if given, the stages are updated with the
    predictions of these (older) synthesizer parameters; the current ones
    still make the predictions that regress onto the targets.

    ``fit_inputs``: if given (complete unlock's ``synth_fit_at=
    "input_model"``: the stages' synthetic inputs ``I_i(x)``), each
    synthesizer regresses at these, not at ``fwd.hidden``, which the stages
    still read it at; its new mutable state is the regression's.
    """
    if len(net.synthesizers) != net.num_boundaries:
      raise ValueError("synthetic gradients need one synthesizer per "
                       "boundary; build the network with `decouple(stages, "
                       "synthesizer)`.")
    context = self.context(batch, fwd.outputs)
    at = fwd.hidden if fit_inputs is None else fit_inputs
    preds, pred_vjps, new_state = predict_synthetic_grads(
        net, synth_params, synth_state, at, context, rng)
    used = preds
    if stale_synth_params is not None or fit_inputs is not None:
      # The stages read the synthesizers (the stale ones if given) at their
      # outputs.
      params = (synth_params if stale_synth_params is None
                else stale_synth_params)
      used = predict_synthetic_grads(net, params, synth_state, fwd.hidden,
                                     context, rng)[0]
    units = fwd.outputs.shape[0] if net.per_example else 1
    if self.oracle:
      boundary_grads = staged.backprop_grads(fwd)[1]
    else:
      boundary_grads = tuple(None if p is None else sg_scale / units * p
                             for p in used)
    stage_grads, targets = staged.decoupled_grads(fwd, boundary_grads)
    # A boundary without a synthesizer was updated with its target.
    boundary_grads = tuple(t if g is None else g
                           for g, t in zip(boundary_grads, targets))
    synth_losses, synth_grads = regress(preds, pred_vjps,
                                        tuple(units * t for t in targets))
    return SourceOutput(stage_grads, synth_grads, new_state, boundary_grads,
                        targets, synth_losses)


def predict_synthetic_grads(net: DecoupledNetwork, synth_params: Sequence,
                            synth_state: Sequence, hidden: Sequence,
                            context: Any, rng: jax.Array):
  """``M_i(stop_gradient(h_i), c)`` at every boundary, with its vjp.

  Returns:
    ``(predictions, vjps, new_state)``, each a per-boundary tuple; ``vjps[i]``
    maps a cotangent on the prediction to ``(synth_param_grads,)``. A
    boundary without a synthesizer (``None``) has ``None`` prediction and
    vjp, and keeps its (empty) state.
  """
  preds, vjps, new_state = [], [], []
  for i, (synth, h) in enumerate(zip(net.synthesizers, hidden)):
    if synth is None:
      preds.append(None)
      vjps.append(None)
      new_state.append(synth_state[i])
      continue
    pred = interface.predict(synth, synth_params[i], synth_state[i], h,
                             context, rng=jax.random.fold_in(rng, i))
    preds.append(pred.value)
    vjps.append(pred.vjp)
    new_state.append(pred.model_state)
  return tuple(preds), tuple(vjps), tuple(new_state)


def regress(preds: Sequence[jax.Array], pred_vjps: Sequence,
            targets: Sequence[jax.Array]) -> tuple[tuple, tuple]:
  """L2 regression of every prediction onto its (stop-gradient) target.

  ``loss_i = mean_batch ‖pred_i − target_i‖²``; its gradient w.r.t. the
  prediction, ``2 (pred_i − target_i) / B``, is pulled back through the
  synthesizer with the vjp kept from the prediction (no second forward).

  Returns:
    ``(losses, param_grads)``, per boundary; a ``None`` prediction (no
    synthesizer) has loss ``None`` and empty gradients.
  """
  losses, grads = [], []
  for pred, vjp, target in zip(preds, pred_vjps, targets):
    if pred is None:
      losses.append(None)
      grads.append({})
      continue
    loss, grad = interface.fit(interface.Prediction(pred, vjp, None), target)
    losses.append(loss)
    grads.append(grad)
  return tuple(losses), tuple(grads)


METHODS = {
    "backprop": Backprop(),
    "dni": SyntheticGradients("none"),
    "cdni": SyntheticGradients("labels"),
    "dni_unlocked": SyntheticGradients("none", unlocked=True),
    "cdni_unlocked": SyntheticGradients("labels", unlocked=True),
}


def get_source(method: str):
  """The gradient source of a method name (a key of ``METHODS``)."""
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; choose one of "
                     f"{sorted(METHODS)}")
  return METHODS[method]
