"""The training state: one pytree, every stage and synthesizer on its own.

Each stage and each synthesizer has its own parameters, mutable state and
optax optimiser state, so that later work can update them at different times
(asynchronous / stochastic updates) or on different devices.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import optax

from dni_jax.core import module_state
from dni_jax.core import stale
from dni_jax.core.network import DecoupledNetwork

INPUT_STREAM = 0x696E  # "in": the input models' keys off the synthesizers'


class Optimizers(NamedTuple):
  """The optax transformations of the stages and of the synthesizers.

  The transformation is shared; its state is per stage / per synthesizer.
  """
  stage: optax.GradientTransformation
  synth: optax.GradientTransformation | None = None


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training.

  Attributes:
    step: number of updates done.
    rng: base PRNG key; step ``n`` uses ``fold_in(rng, n)``.
    stage_params, stage_state, stage_opt_state: per-stage tuples.
    synth_params, synth_state, synth_opt_state: per-boundary tuples (empty
      for backprop).
    synth_history: a stale interface of delay ``d``: the synthesizer
      parameters of the last ``d`` steps in a ring of ``d`` slots, and a
      copy of the oldest, from which the stages' synthetic gradients come
      (``dni_jax.core.stale``); ``()`` for ``d = 0``.
    input_params, input_state, input_opt_state: complete unlock's
      synthetic-input models, per boundary (empty otherwise).
    sg_scale: λ, the factor on every synthetic gradient (a float32 scalar;
      from ``DecoupledNetwork.sg_scale`` at initialisation). A
      hyper-parameter kept in the state, like the learning rates in the
      optimiser states, so the step's static arguments are the same for
      every member of a sweep.
  """
  step: jax.Array
  rng: jax.Array
  stage_params: tuple
  stage_state: tuple
  stage_opt_state: tuple
  synth_params: tuple = ()
  synth_state: tuple = ()
  synth_opt_state: tuple = ()
  synth_history: Any = ()  # stale.init: a dict, or () without a delay
  input_params: tuple = ()
  input_state: tuple = ()
  input_opt_state: tuple = ()
  sg_scale: jax.Array = 1.0


def init_train_state(net: DecoupledNetwork, optimizers: Optimizers, source,
                     rng: jax.Array, batch: dict,
                     synth_delay: int = 0) -> TrainState:
  """Initialises every stage (and synthesizer, if ``source`` uses them).

  Args:
    net: the network.
    optimizers: the stage and synthesizer optax transformations.
    source: the gradient source (``dni_jax.get_source(method)``); decides
      whether synthesizers exist and what context they see.
    rng: PRNG key (``jax.random.PRNGKey(seed)``).
    batch: an example batch (``inputs``, ``labels``); fixes the shapes.
    synth_delay: ``d``, a stale interface: the stages' synthetic gradients
      come from the synthesizers of ``d`` steps before (0: the current ones).

  Returns:
    The initial ``TrainState`` (step 0).
  """
  if synth_delay < 0:
    raise ValueError(f"synth_delay must be >= 0, got {synth_delay}")
  param_rng, synth_rng, step_rng = jax.random.split(rng, 3)
  h = batch["inputs"]
  hidden, stage_params, stage_state = [], [], []
  for i, stage in enumerate(net.stages):
    params, state = module_state.init(stage, jax.random.fold_in(param_rng, i), h)
    h, _ = module_state.apply(stage, params, state, h, train=False)
    hidden.append(h)
    stage_params.append(params)
    stage_state.append(state)
  synth_params, synth_state = [], []
  if source.uses_synthesizers:
    if optimizers.synth is None:
      raise ValueError("synthetic gradients need Optimizers(synth=...) for "
                       "the synthesizers")
    if len(net.synthesizers) != net.num_boundaries:
      raise ValueError(f"method needs {net.num_boundaries} synthesizers, the "
                       f"network has {len(net.synthesizers)}; build it with "
                       "`decouple(stages, synthesizer)`.")
    context = source.context(batch, h)
    for i, synth in enumerate(net.synthesizers):
      if synth is None:  # a boundary backpropagated through
        synth_params.append({})
        synth_state.append({})
        continue
      params, state = module_state.init(
          synth, jax.random.fold_in(synth_rng, i), hidden[i], context)
      synth_params.append(params)
      synth_state.append(state)
  input_params, input_state = [], []
  if getattr(source, "unlocked", False):
    if net.num_boundaries == 0:
      raise ValueError("complete unlock needs at least two stages: a "
                       "one-stage network has no boundary to unlock.")
    if len(net.input_models) != net.num_boundaries:
      raise ValueError(f"complete unlock needs {net.num_boundaries} input "
                       f"models, the network has {len(net.input_models)}; "
                       "build it with `decouple(..., input_model=...)`.")
    input_rng = jax.random.fold_in(synth_rng, INPUT_STREAM)
    for i, model in enumerate(net.input_models):
      params, state = module_state.init(
          model, jax.random.fold_in(input_rng, i), batch["inputs"],
          hidden[i].shape[1:])
      input_params.append(params)
      input_state.append(state)
  synth_params = tuple(synth_params)
  return TrainState(
      step=jax.numpy.zeros((), jax.numpy.int32),
      rng=step_rng,
      stage_params=tuple(stage_params),
      stage_state=tuple(stage_state),
      stage_opt_state=tuple(optimizers.stage.init(p) for p in stage_params),
      synth_params=synth_params,
      synth_state=tuple(synth_state),
      synth_opt_state=tuple(optimizers.synth.init(p) for p in synth_params),
      synth_history=stale.init(synth_params, synth_delay),
      input_params=tuple(input_params),
      input_state=tuple(input_state),
      input_opt_state=tuple(optimizers.synth.init(p) for p in input_params),
      sg_scale=jax.numpy.asarray(net.sg_scale, jax.numpy.float32))
