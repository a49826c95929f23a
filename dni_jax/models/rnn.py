"""Recurrent cores: an LSTM or a vanilla RNN with a readout (plain Flax modules).

The core's state is one flat array ``[B, S]``: ``concat(c, h)`` for the LSTM
(``S = 2·hidden``), ``h`` for the vanilla RNN (``S = hidden``). The synthetic
gradient sits on the part of the state that ``sg_on`` names: the core's output
``h`` (the paper's choice and the default; ``sg_part`` slices it out of the
flat state, and the LSTM's cell state ``c`` gets no synthetic gradient),
``"ch"``, the whole state ``(c, h)`` concatenated, or ``"h_ch"``: the
synthesizer reads ``h`` alone (``sg_input``: the state with ``c`` zeroed)
and predicts the gradient of the whole state.

The LSTM is Flax's ``OptimizedLSTMCell`` by default. With ``forget_bias``
or ``peepholes`` it is ``GravesLSTMCell``: the LSTM of Graves (2013), the form
the DNI paper names, with optional peephole connections from the cell state
to the gates and a constant added to the forget gate's pre-activation (as
TensorFlow's and Sonnet's LSTMs add 1 by default).

``RecurrentCore`` is one time step: ``core.apply(params, state, x_t) ->
(new_state, logits_t)``; ``dni_jax.core.recurrent.unroll`` scans it over a
window with ``jax.lax.scan``. With ``with_aux`` the core also has an
auxiliary head (used by DNI+Aux),
``core.apply(params, state, method="predict_aux")``, predicting a synthetic
gradient (shape ``[B, sg_size]``) from the same part of a state.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

CELLS = ("lstm", "rnn")
SG_PARTS = ("h", "ch", "h_ch")


def _per_gate(init, gates: int = 4):
  """A ``[F, gates·F]`` kernel initialiser: ``init`` of each ``[F, F]`` block."""
  def fn(key, shape, dtype=jnp.float32):
    rows, cols = shape
    keys = jax.random.split(key, gates)
    return jnp.concatenate([init(k, (rows, cols // gates), dtype)
                            for k in keys], axis=-1)
  return fn


class GravesLSTMCell(nn.Module):
  """The LSTM of Graves (2013), eqs. 7–11 (Flax's cell has no peepholes).

  ``i = σ(W_xi x + W_hi h + w_ci ⊙ c + b_i)``,
  ``f = σ(W_xf x + W_hf h + w_cf ⊙ c + b_f + forget_bias)``,
  ``c' = f ⊙ c + i ⊙ tanh(W_xc x + W_hc h + b_c)``,
  ``o = σ(W_xo x + W_ho h + w_co ⊙ c' + b_o)``, ``h' = o ⊙ tanh(c')``.
  The peephole weights ``w_c·`` (zero at initialisation) exist only with
  ``peepholes``. Same call signature as Flax's cells:
  ``((c, h), x) -> ((c', h'), h')``.

  Attributes:
    features: hidden units.
    forget_bias: added to the forget gate's pre-activation.
    peepholes: connect the cell state to the gates.
  """
  features: int
  forget_bias: float = 0.0
  peepholes: bool = False

  @nn.compact
  def __call__(self, carry, x):
    c, h = carry
    f = self.features
    z = (nn.Dense(4 * f, use_bias=False, name="input")(x)
         + nn.Dense(4 * f, kernel_init=_per_gate(nn.initializers.orthogonal()),
                    name="recurrent")(h))
    zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
    if self.peepholes:
      w = self.param("peepholes", nn.initializers.zeros, (3, f))
      zi, zf = zi + w[0] * c, zf + w[1] * c
    c = (jax.nn.sigmoid(zf + self.forget_bias) * c
         + jax.nn.sigmoid(zi) * jnp.tanh(zg))
    if self.peepholes:
      zo = zo + w[2] * c
    h = jax.nn.sigmoid(zo) * jnp.tanh(c)
    return (c, h), h


class RecurrentCore(nn.Module):
  """One step of an LSTM / tanh RNN with a linear readout.

  Attributes:
    cell: "lstm" or "rnn".
    hidden: units of the cell.
    num_outputs: readout width (vocabulary size, or output bits).
    vocab_size: if set, integer inputs ``[B]`` are one-hot encoded to this
      width; otherwise inputs are float vectors ``[B, D]``.
    with_aux: build the DNI+Aux head (a zero-initialised linear map from
      the synthetic gradient's part of the state to a synthetic gradient).
    sg_on: the part of the state the synthetic gradient sits on: "h", the
      core's output, or "ch", the LSTM's whole state ``(c, h)``; "h_ch":
      on the whole state, predicted from ``h`` alone.
    forget_bias, peepholes: the LSTM's (``GravesLSTMCell``; with neither,
      Flax's ``OptimizedLSTMCell``).
  """
  cell: str = "lstm"
  hidden: int = 256
  num_outputs: int = 8
  vocab_size: int | None = None
  with_aux: bool = False
  sg_on: str = "h"
  forget_bias: float = 0.0
  peepholes: bool = False

  def setup(self):
    if self.cell not in CELLS:
      raise ValueError(f"unknown cell {self.cell!r}; choose one of {CELLS}")
    if self.sg_on not in SG_PARTS:
      raise ValueError(f"unknown sg_on {self.sg_on!r}; choose one of "
                       f"{SG_PARTS}")
    if self.cell == "lstm" and (self.forget_bias or self.peepholes):
      self.rnn_cell = GravesLSTMCell(self.hidden, self.forget_bias,
                                     self.peepholes)
    elif self.cell == "lstm":
      self.rnn_cell = nn.OptimizedLSTMCell(self.hidden)
    else:
      self.rnn_cell = nn.SimpleCell(self.hidden)
    self.readout = nn.Dense(self.num_outputs)
    if self.with_aux:
      self.aux_head = nn.Dense(self.sg_size, kernel_init=nn.initializers.zeros)

  @property
  def state_size(self) -> int:
    return 2 * self.hidden if self.cell == "lstm" else self.hidden

  @property
  def sg_size(self) -> int:
    """Width of the part of the state the synthetic gradient sits on."""
    return self.hidden if self.sg_on == "h" else self.state_size

  def sg_input(self, state_BxS: jax.Array) -> jax.Array:
    """What the synthesizer (and the Aux head) reads: ``sg_part``, or for
    "h_ch" the whole state with ``c`` zeroed (so it reads ``h`` alone)."""
    if self.sg_on == "h_ch" and self.cell == "lstm":
      return state_BxS.at[..., :self.hidden].set(0.0)
    return self.sg_part(state_BxS)

  def sg_part(self, state_BxS: jax.Array) -> jax.Array:
    """The part of the state the synthetic gradient sits on: ``h`` (the last
    ``hidden`` units of an LSTM's ``(c, h)``) or the whole state."""
    if self.sg_on == "h" and self.cell == "lstm":
      return state_BxS[..., self.hidden:]
    return state_BxS

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
    return self.aux_head(self.sg_input(state_BxS))

  def init_all(self, state_BxS: jax.Array, x_t: jax.Array):
    """Touches every submodule (for ``init``)."""
    out = self(state_BxS, x_t)
    if self.with_aux:
      self.predict_aux(state_BxS)
    return out
