"""Running a network stage by stage: per-stage vjps, backprop, decoupled grads.

Every stage's forward is split with ``jax.vjp`` and its input is cut with
``stop_gradient``, so the only way a cotangent reaches stage ``i`` is through
the vjp of stage ``i`` itself, applied to whatever stands at its output
boundary: the true gradient (backprop) or a synthetic one (DNI).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
from jax import lax

from dni_jax.core import module_state
from dni_jax.core.network import DecoupledNetwork

Batch = dict  # {"inputs": [B, ...], "labels": [B, ...], optional "context"}


class ForwardPass(NamedTuple):
  """Everything one training forward pass leaves for the update.

  Attributes:
    hidden: ``h_1 … h_{N-1}``, the (stop-gradient) outputs of stages ``0…N-2``.
    vjps: per stage ``0…N-2``, ``cotangent on its output -> (param grads,
      input cotangent)``; stage 0's input cotangent is ``None`` (the data).
    last_grads: gradient of the loss w.r.t. the last stage's parameters.
    last_input_grad: ``∂L/∂h_{N-1}``, the true gradient at the last boundary
      (``None`` for a one-stage network).
    loss: the batch-mean task loss.
    outputs: the last stage's outputs (logits).
    new_stage_state: each stage's updated mutable state (BatchNorm stats).
  """
  hidden: tuple
  vjps: tuple[Callable, ...]
  last_grads: Any
  last_input_grad: Any
  loss: jax.Array
  outputs: jax.Array
  new_stage_state: tuple


def _params_only(vjp: Callable) -> Callable:
  return lambda cotangent: (vjp(cotangent)[0], None)


def forward(net: DecoupledNetwork, stage_params: Sequence, stage_state: Sequence,
            batch: Batch, rng: jax.Array,
            stage_inputs: Sequence | None = None) -> ForwardPass:
  """Training-mode forward pass, keeping each stage's vjp.

  Args:
    net: the network.
    stage_params: per-stage parameters.
    stage_state: per-stage mutable state.
    batch: ``inputs`` and ``labels``.
    rng: folded with the stage index for each stage's dropout.
    stage_inputs: forward unlocking (docs/method.md): the inputs of stages
      ``1…N-1`` (e.g. synthetic inputs ``I_i(x)``), read instead of the
      previous stage's output; ``None``: the ordinary chain.

  Returns:
    The ``ForwardPass``.
  """
  if stage_inputs is not None and len(stage_inputs) != net.num_boundaries:
    raise ValueError(f"stage_inputs needs one input per stage after the "
                     f"first ({net.num_boundaries}), got {len(stage_inputs)}")
  last = len(net.stages) - 1
  hidden, vjps, new_state = run_stages(
      net, 0, stage_params[:last], stage_state[:last], batch["inputs"], rng,
      stage_inputs)
  h = batch["inputs"] if not hidden else hidden[-1]
  if stage_inputs is not None and last:
    h = stage_inputs[last - 1]
  loss, outputs, state, last_grads, last_input_grad = loss_stage(
      net, last, stage_params[last], stage_state[last], h, batch["labels"],
      rng)
  return ForwardPass(
      hidden=hidden, vjps=vjps, last_grads=last_grads,
      last_input_grad=last_input_grad, loss=loss, outputs=outputs,
      new_stage_state=new_state + (state,))


def run_stages(net: DecoupledNetwork, first: int, stage_params: Sequence,
               stage_state: Sequence, h: jax.Array, rng: jax.Array,
               stage_inputs: Sequence | None = None
               ) -> tuple[tuple, tuple, tuple]:
  """Stages ``first, first+1, …`` (one per ``stage_params``), each split
  with ``jax.vjp`` behind ``stop_gradient``: the non-loss stages of a
  ``forward``, or of one pipeline device's range of stages.

  Args:
    net: the network.
    first: the index of the first stage run (its dropout key and whether
      its input is the data, which gets no cotangent).
    stage_params, stage_state: of the stages run.
    h: the first stage's input.
    rng: folded with each stage's index.
    stage_inputs: forward unlocking: stage ``i``'s input is
      ``stage_inputs[i-1]`` (for ``i > 0``) instead of the previous output.

  Returns:
    ``(hidden, vjps, new_state)``, one entry per stage run; ``vjps[j]`` maps
    a cotangent on the output to ``(param_grads, input_cotangent)``, the
    latter ``None`` for stage 0.
  """
  hidden, vjps, new_state = [], [], []
  for j, params in enumerate(stage_params):
    i = first + j
    if stage_inputs is not None and i > 0:
      h = stage_inputs[i - 1]

    def stage_fn(params, h_in, stage=net.stages[i], i=i, j=j):
      return module_state.apply(stage, params, stage_state[j], h_in,
                                train=True, rng=jax.random.fold_in(rng, i))
    h_in = lax.stop_gradient(h)
    if i == 0:  # no cotangent for the data: skip the input-gradient matmul
      h, vjp, state = jax.vjp(lambda p: stage_fn(p, h_in), params,
                              has_aux=True)
      vjp = _params_only(vjp)
    else:
      h, vjp, state = jax.vjp(stage_fn, params, h_in, has_aux=True)
    h = lax.stop_gradient(h)
    hidden.append(h)
    vjps.append(vjp)
    new_state.append(state)
  return tuple(hidden), tuple(vjps), tuple(new_state)


def loss_stage(net: DecoupledNetwork, i: int, params, stage_state,
               h_in: jax.Array, labels: jax.Array, rng: jax.Array):
  """Stage ``i`` as the last: the loss and its exact gradients.

  Returns:
    ``(loss, outputs, new_state, param_grads, input_grad)``; ``input_grad``
    is ``∂L/∂h_in`` (``None`` when stage ``i`` is the first, whose input is
    the data).
  """
  def objective(params, h_in):
    outputs, state = module_state.apply(
        net.stages[i], params, stage_state, h_in, train=True,
        rng=jax.random.fold_in(rng, i))
    return net.loss_fn(outputs, labels), (outputs, state)

  argnums = (0,) if i == 0 else (0, 1)
  (loss, (outputs, state)), grads = jax.value_and_grad(
      objective, argnums=argnums, has_aux=True)(
          params, lax.stop_gradient(h_in))
  return loss, outputs, state, grads[0], (grads[1] if i else None)


def real_chain(net: DecoupledNetwork, stage_params: Sequence,
               stage_state: Sequence, inputs: jax.Array,
               rng: jax.Array) -> tuple[tuple, tuple]:
  """The composed chain in training mode, without vjps (stop-gradient).

  Forward unlocking's targets with ``input_targets="real_chain"``: the real
  ``h_1 … h_{N-1}`` that the synthetic inputs regress onto, and every
  stage's state updated on the real chain
  (the BatchNorm statistics that evaluation, which runs the real chain,
  uses). Same dropout keys as ``forward``.

  Returns:
    ``(hidden, new_stage_state)``.
  """
  h, hidden, new_state = inputs, [], []
  for i, stage in enumerate(net.stages):
    h, state = module_state.apply(stage, stage_params[i], stage_state[i], h,
                                  train=True, rng=jax.random.fold_in(rng, i))
    h = lax.stop_gradient(h)
    hidden.append(h)
    new_state.append(state)
  return tuple(hidden[:-1]), tuple(new_state)


def backprop_grads(fwd: ForwardPass) -> tuple[tuple, tuple]:
  """Backprop, one stage at a time: the reverse sweep through the vjps.

  Returns:
    ``(stage_grads, true_grads)``: parameter gradients of stages ``0…N-2``
    and the exact ``∂L/∂h_{i+1}`` at every boundary ``i``.
  """
  num_boundaries = len(fwd.vjps)
  stage_grads = [None] * num_boundaries
  true_grads = [None] * num_boundaries
  cotangent = fwd.last_input_grad
  for i in reversed(range(num_boundaries)):
    true_grads[i] = cotangent
    stage_grads[i], cotangent = fwd.vjps[i](cotangent)
  return tuple(stage_grads), tuple(true_grads)


def decoupled_grads(fwd: ForwardPass,
                    boundary_grads: Sequence[jax.Array | None]
                    ) -> tuple[tuple, tuple]:
  """Updates every stage from the gradient at its own output boundary only.

  Stage ``i``'s update is ``vjp_i(boundary_grads[i])``: independent of every
  later stage, and of every other stage's update. The input cotangent of
  stage ``i+1`` is the *bootstrapped target* of boundary ``i``: the next
  boundary's gradient propagated back through one stage. The last
  boundary's target is the true ``∂L/∂h_{N-1}``.

  A ``None`` boundary is not decoupled: its gradient is its target, i.e.
  backprop flows through it from the next boundary (as if the two stages
  were one). With every boundary ``None`` this is backprop.

  Args:
    fwd: the forward pass.
    boundary_grads: the (synthetic) gradient at every boundary, or ``None``.

  Returns:
    ``(stage_grads, targets)`` for stages / boundaries ``0…N-2``; the
    targets are behind ``stop_gradient``.
  """
  num_boundaries = len(fwd.vjps)
  if len(boundary_grads) != num_boundaries:
    raise ValueError(f"expected {num_boundaries} boundary gradients, got "
                     f"{len(boundary_grads)}")
  stage_grads = [None] * num_boundaries
  targets = [None] * num_boundaries
  target = fwd.last_input_grad
  for i in reversed(range(num_boundaries)):
    targets[i] = target
    g = target if boundary_grads[i] is None else boundary_grads[i]
    stage_grads[i], target = fwd.vjps[i](g)
  return tuple(stage_grads), tuple(lax.stop_gradient(t) for t in targets)
