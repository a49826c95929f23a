"""Running a recurrent core over a window: the protocol and its scan.

A *recurrent core* is any Flax module with

- ``initial_state(batch) -> [B, S]``, the zero state;
- ``__call__(state_BxS, x_t) -> (new_state_BxS, logits_t)``, one time step;
- ``init_all(state_BxS, x_t)``, touching every submodule (for ``init``);
- ``with_aux`` and, when it is true, ``predict_aux(state_BxS) -> [B, S]``
  (the DNI+Aux head).

``dni_jax.models.rnn.RecurrentCore`` (LSTM, tanh RNN) is one. The recurrent
DNI step (``dni_jax.core.tbptt``) and the sequence evaluation only use this
protocol, so any module that keeps it can be trained with them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def init(core, rng: jax.Array, batch: int, x_t: jax.Array):
  """The core's parameters (aux head included when ``core.with_aux``)."""
  return core.init(rng, core.initial_state(batch), x_t, method="init_all")


def unroll(core, params, state_BxS: jax.Array, inputs_BxT: jax.Array):
  """Runs the core over a window with ``lax.scan``.

  Args:
    core: the core module.
    params: its parameters.
    state_BxS: the state before the window's first input.
    inputs_BxT: ``[B, T]`` tokens or ``[B, T, D]`` vectors.

  Returns:
    ``(final_state [B, S], states [B, T, S], logits [B, T, K])``; ``states[:,
    t]`` is the state after input ``t``.
  """
  def body(state, x_t):
    new_state, logits = core.apply(params, state, x_t)
    return new_state, (new_state, logits)

  final, (states, logits) = jax.lax.scan(
      body, state_BxS, jnp.swapaxes(inputs_BxT, 0, 1))
  return final, jnp.swapaxes(states, 0, 1), jnp.swapaxes(logits, 0, 1)
