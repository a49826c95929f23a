"""Recurrent cores: an LSTM or a vanilla RNN with a readout (plain Flax modules).

The core's state is one flat array ``[B, S]``: ``concat(c, h)`` for the LSTM
(``S = 2·hidden``), ``h`` for the vanilla RNN (``S = hidden``). The synthetic
gradient covers the whole state ``(c, h)`` concatenated, so one flat array
keeps the synthesizer, the carried state and the bootstrapped target the same
shape. (The paper feeds the LSTM's output ``h`` alone to the synthetic-
gradient model; see docs/results.md, Penn Treebank, known gaps.)

``RecurrentCore`` is one time step: ``core.apply(params, state, x_t) ->
(new_state, logits_t)``; ``dni_jax.core.recurrent.unroll`` scans it over a
window with ``jax.lax.scan``. With ``with_aux`` the core also has an
auxiliary head (used by DNI+Aux),
``core.apply(params, state, method="predict_aux")``, predicting a synthetic gradient
(shape ``[B, S]``) from a state.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

CELLS = ("lstm", "rnn")


class RecurrentCore(nn.Module):
  """One step of an LSTM / tanh RNN with a linear readout.

  Attributes:
    cell: "lstm" or "rnn".
    hidden: units of the cell.
    num_outputs: readout width (vocabulary size, or output bits).
    vocab_size: if set, integer inputs ``[B]`` are one-hot encoded to this
      width; otherwise inputs are float vectors ``[B, D]``.
    with_aux: build the DNI+Aux head (a zero-initialised linear map
      state→state).
  """
  cell: str = "lstm"
  hidden: int = 256
  num_outputs: int = 8
  vocab_size: int | None = None
  with_aux: bool = False

  def setup(self):
    if self.cell not in CELLS:
      raise ValueError(f"unknown cell {self.cell!r}; choose one of {CELLS}")
    if self.cell == "lstm":
      self.rnn_cell = nn.OptimizedLSTMCell(self.hidden)
    else:
      self.rnn_cell = nn.SimpleCell(self.hidden)
    self.readout = nn.Dense(self.num_outputs)
    if self.with_aux:
      self.aux_head = nn.Dense(self.state_size, kernel_init=nn.initializers.zeros)

  @property
  def state_size(self) -> int:
    return 2 * self.hidden if self.cell == "lstm" else self.hidden

  def initial_state(self, batch: int) -> jax.Array:
    """The zero state ``[batch, S]``."""
    return jnp.zeros((batch, self.state_size), jnp.float32)

  def __call__(self, state_BxS: jax.Array, x_t: jax.Array):
    if self.vocab_size is not None:
      x_t = jax.nn.one_hot(x_t, self.vocab_size)
    if self.cell == "lstm":
      c, h = jnp.split(state_BxS, 2, axis=-1)
      (c, h), _ = self.rnn_cell((c, h), x_t)
      new_state = jnp.concatenate([c, h], axis=-1)
    else:
      h, _ = self.rnn_cell(state_BxS, x_t)
      new_state = h
    return new_state, self.readout(h)

  def predict_aux(self, state_BxS: jax.Array) -> jax.Array:
    """DNI+Aux: this state's prediction of a later synthetic gradient."""
    return self.aux_head(state_BxS)

  def init_all(self, state_BxS: jax.Array, x_t: jax.Array):
    """Touches every submodule (for ``init``)."""
    out = self(state_BxS, x_t)
    if self.with_aux:
      self.predict_aux(state_BxS)
    return out
