"""The training state: one pytree, every stage and synthesizer on its own.

Each stage and each synthesizer has its own parameters, mutable state and
optax optimiser state, so that later work can update them at different times
(asynchronous / stochastic updates) or on different devices.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.struct
import jax
import optax

from dni_jax.core import module_state
from dni_jax.core.network import DecoupledNetwork


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
  """
  step: jax.Array
  rng: jax.Array
  stage_params: tuple
  stage_state: tuple
  stage_opt_state: tuple
  synth_params: tuple = ()
  synth_state: tuple = ()
  synth_opt_state: tuple = ()


def init_train_state(net: DecoupledNetwork, optimizers: Optimizers, source,
                     rng: jax.Array, batch: dict) -> TrainState:
  """Initialises every stage (and synthesizer, if ``source`` uses them).

  Args:
    net: the network.
    optimizers: the stage and synthesizer optax transformations.
    source: the gradient source (``dni_jax.get_source(method)``); decides
      whether synthesizers exist and what context they see.
    rng: PRNG key (``jax.random.PRNGKey(seed)``).
    batch: an example batch (``inputs``, ``labels``); fixes the shapes.

  Returns:
    The initial ``TrainState`` (step 0).
  """
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
  return TrainState(
      step=jax.numpy.zeros((), jax.numpy.int32),
      rng=step_rng,
      stage_params=tuple(stage_params),
      stage_state=tuple(stage_state),
      stage_opt_state=tuple(optimizers.stage.init(p) for p in stage_params),
      synth_params=tuple(synth_params),
      synth_state=tuple(synth_state),
      synth_opt_state=tuple(optimizers.synth.init(p) for p in synth_params))
