"""The synthetic-gradient interface: one model ``M``, its state and its update.

Every kind of training predicts and regresses its synthetic gradients
through this module: the feed-forward step (``gradient_sources``), a
pipeline device's tick (``dni_jax.parallel.group``), the recurrent window
(``tbptt``) and the two-network system (``two_networks``). In the style of optax, the static
parts are one frozen object and what changes is a ``NamedTuple``:

  sg = Interface(model, tx, scale=λ)
  state = sg.init(rng, h, context)                    # InterfaceState
  pred = sg.predict(state, h, context, rng=rng)       # M(h, c) and its vjp
  delta = sg.delta(pred.value, units)                 # λ·M/units, the cotangent
  state, loss = sg.regress(state, pred, target)       # L2 onto target, optax update

``regress`` is ``fit`` (the L2 loss and its gradient, pulled back through the
prediction's vjp: no second forward pass) followed by ``update`` (one optax
step); callers that update later, or only on some steps (stochastic
updates), use the two halves.

Units: for a batch-mean loss over ``B`` examples, ``M`` may predict the
per-example gradient ``B·∂L/∂h`` (docs/method.md): ``delta(value, B)`` is
then ``λ·M/B`` and the regression target is given per example.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dni_jax.core import module_state


class InterfaceState(NamedTuple):
  """What changes: ``M``'s parameters, mutable state and optimiser state."""
  params: Any
  model_state: Any
  opt_state: Any


class Prediction(NamedTuple):
  """``M(stop_gradient(h), c)`` with what its regression needs.

  Attributes:
    value: the prediction (``[B, ...]``, the shape of ``h``).
    vjp: a cotangent on ``value`` -> ``(param_grads,)``.
    model_state: ``M``'s mutable state after the call (BatchNorm stats).
  """
  value: jax.Array
  vjp: Callable
  model_state: Any


def state_of(train_state) -> InterfaceState:
  """The ``InterfaceState`` kept in a train state's ``synth_params``,
  ``synth_state`` and ``synth_opt_state`` fields (the recurrent and the
  two-network states keep their synthesizers so)."""
  return InterfaceState(train_state.synth_params, train_state.synth_state,
                        train_state.synth_opt_state)


def with_state(train_state, sg_state: InterfaceState):
  """``train_state`` with its ``synth_*`` fields set from ``sg_state``."""
  return train_state.replace(synth_params=sg_state.params,
                             synth_state=sg_state.model_state,
                             synth_opt_state=sg_state.opt_state)


def predict(model: nn.Module, params, model_state, h: jax.Array,
            context: Any = None, *, train: bool = True,
            rng: jax.Array | None = None) -> Prediction:
  """``M(stop_gradient(h), c)`` with its vjp w.r.t. ``params``."""
  h = jax.lax.stop_gradient(h)

  def fn(p):
    return module_state.apply(model, p, model_state or {}, h, context,
                              train=train, rng=rng)
  value, vjp, new_state = jax.vjp(fn, params, has_aux=True)
  return Prediction(value, vjp, new_state)


def fit(prediction: Prediction, target: jax.Array) -> tuple[jax.Array, Any]:
  """``(mean_batch ‖M − stop_gradient(target)‖², ∂loss/∂params)``.

  The loss's gradient w.r.t. the prediction, ``2 (M − target) / B``, is
  pulled back through the prediction's vjp.
  """
  error = prediction.value - jax.lax.stop_gradient(target)
  batch = prediction.value.shape[0]
  loss = jnp.sum(jnp.square(error)) / batch
  return loss, prediction.vjp(2.0 * error / batch)[0]


def apply_update(tx: optax.GradientTransformation, grads, opt_state, params):
  """One optax step: ``(new_params, new_opt_state)``."""
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


@dataclasses.dataclass(frozen=True)
class Interface:
  """A synthetic-gradient model with its optimiser and scale (static).

  Attributes:
    model: ``M``, a Flax module called as ``M(h, context)``
      (``dni_jax.core.synthesizers``).
    tx: its optax transformation.
    scale: λ, the synthetic gradient is ``λ·M(h, c)`` (in the units
      ``delta`` is told).
  """
  model: nn.Module
  tx: optax.GradientTransformation
  scale: Any = 1.0

  def init(self, rng: jax.Array, h: jax.Array,
           context: Any = None) -> InterfaceState:
    """Parameters and state for activations shaped like ``h``."""
    params, model_state = module_state.init(self.model, rng, h, context)
    return InterfaceState(params, model_state, self.tx.init(params))

  def predict(self, state: InterfaceState, h: jax.Array, context: Any = None,
              *, train: bool = True, rng: jax.Array | None = None,
              params: Any = None) -> Prediction:
    """``M(h, c)`` (``params``: other parameters than the state's, e.g. a
    stale copy)."""
    return predict(self.model, state.params if params is None else params,
                   state.model_state, h, context, train=train, rng=rng)

  def delta(self, value: jax.Array, units: Any = 1) -> jax.Array:
    """The synthetic gradient of a prediction: ``λ·value / units``."""
    return self.scale / units * value

  def update(self, state: InterfaceState, grads: Any,
             model_state: Any = None) -> InterfaceState:
    """One optax step of ``M`` (and its new mutable state, if given)."""
    params, opt_state = apply_update(self.tx, grads, state.opt_state,
                                     state.params)
    return InterfaceState(
        params, state.model_state if model_state is None else model_state,
        opt_state)

  def regress(self, state: InterfaceState, prediction: Prediction,
              target: jax.Array) -> tuple[InterfaceState, jax.Array]:
    """Regress ``prediction`` onto ``target`` and update: ``(state, loss)``."""
    loss, grads = fit(prediction, target)
    return self.update(state, grads, prediction.model_state), loss
