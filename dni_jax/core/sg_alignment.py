"""Does the synthetic gradient move the core the way the truncated gradient would?

Truncated BPTT updates the core from one window's loss; what it drops is the
gradient of the *later* losses with respect to the parameters as used in this
window, carried back through the window's end state. The synthetic gradient
``λ·M(h(s_T))`` stands in for that part. This module measures, for one window
at fixed parameters, the core's parameter gradients (all in the units of the
step's objective, a mean over the batch)::

  g_win  = ∂(window loss)/∂θ                       what truncated BPTT uses
  g_syn  = ∂⟨stop_gradient(λ·M(h(s_T))), h(s_T)⟩/∂θ  what DNI adds
  g_fut  = ∂(loss of the next K windows)/∂θ         the exact gradient of the
           through s_T's part h(s_T) only             next K windows' losses
                                                     (full BPTT across them)
                                                     that reaches θ through
                                                     h(s_T): what g_syn stands
                                                     for, to a horizon of K
  g_all  = the same through the whole end state s_T  (with an LSTM's cell
                                                     state c, whose boundary
                                                     gradient DNI on h also
                                                     truncates)

and compares them: the cosine of ``g_syn`` and ``g_fut`` (is the synthetic
gradient's update aligned with the one it replaces?), their norms, and the
cosine of ``g_win + g_syn`` (DNI's update) and of ``g_win`` (truncated BPTT's)
with ``g_win + g_all`` (the update over a horizon of K more windows). The
per-example cosine of ``λ·M(h(s_T))`` and ``∂(future)/∂h(s_T)`` is the same
question asked of the state instead of the parameters.

``g_syn`` is the part of ``tbptt.window_grads``'s core gradient that the
synthetic term contributes (a DNI+Aux run's Aux loss is left out: it is
neither). The later windows run at the same parameters: the probe asks about
one update, not about training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dni_jax.core import recurrent
from dni_jax.core import tbptt
from dni_jax.core.losses import cosine_similarity
from dni_jax.core.losses import r_squared


def _flat(tree) -> jax.Array:
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def gradients(rdni: tbptt.RecurrentDNI, params, start_BxS: jax.Array,
              batches: dict, synth_params=None, synth_state=None,
              sg_scale=None):
  """``g_win``, ``g_syn``, ``g_fut``, ``g_all`` of window 0 of ``batches``.

  Args:
    rdni: the run's static parts (``bptt`` too: then ``g_syn`` is zero).
    params: the core's parameters (fixed).
    start_BxS: window 0's start state.
    batches: ``1 + K`` consecutive windows' batches, each leaf with a
      leading axis of ``1 + K`` (window 0, then the K windows after it).
    synth_params, synth_state: the synthesizer's.
    sg_scale: λ (``None``: ``rdni.sg_scale``).

  Returns:
    ``(grads, end)``: ``grads`` a dict of flat parameter vectors (``g_win``,
    ``g_syn``, ``g_fut``, ``g_all``) and of the end-state cotangents
    ``sg_B`` (``λ·M(h(s_T))``, per example) and ``future_B``
    (``∂(future)/∂h(s_T)``, per example: the batch size times the
    objective's) and what the synthesizer reads at ``s_T``, ``input_B``;
    ``end`` the state after all ``1 + K`` windows.
  """
  first = jax.tree_util.tree_map(lambda x: x[0], batches)
  later = jax.tree_util.tree_map(lambda x: x[1:], batches)
  batch_size = start_BxS.shape[0]

  def window(p):
    end, _, logits = recurrent.unroll(rdni.core, p, start_BxS,
                                      first["inputs"])
    return rdni.loss_fn(logits, first)[0].mean(), end

  (_, end), pull = jax.vjp(window, params)
  zero = jnp.zeros((), end.dtype)
  g_win = pull((jnp.ones((), end.dtype), jnp.zeros_like(end)))[0]

  def future(s):
    def body(carry, batch):
      nxt, _, logits = recurrent.unroll(rdni.core, params, carry,
                                        batch["inputs"])
      return nxt, rdni.loss_fn(logits, batch)[0].mean()
    last, losses = jax.lax.scan(body, s, later)
    return jnp.sum(losses), last

  delta, last = jax.grad(future, has_aux=True)(end)
  # The part of a cotangent on the state that sits on h(s_T): the rest
  # (an LSTM's c under sg_on="h") zeroed.
  end_sg, part_pull = jax.vjp(lambda s: tbptt.sg_part(rdni, s), end)
  delta_sg = part_pull(tbptt.sg_part(rdni, delta))[0]
  g_all = pull((zero, delta))[0]
  g_fut = pull((zero, delta_sg))[0]
  if rdni.synthesizer is None:
    sg_B = jnp.zeros_like(end_sg)
  else:
    sg_B = tbptt._end_delta(  # pylint: disable=protected-access
        rdni, synth_params, synth_state, end,
        rdni.sg_scale if sg_scale is None else sg_scale)
  g_syn = pull((zero, part_pull(sg_B / batch_size)[0]))[0]
  return {"g_win": _flat(g_win), "g_syn": _flat(g_syn),
          "g_fut": _flat(g_fut), "g_all": _flat(g_all), "sg_B": sg_B,
          "future_B": batch_size * tbptt.sg_part(rdni, delta),
          "input_B": tbptt.sg_input(rdni, end)}, last


def compare(grads: dict) -> dict:
  """The figures of one window's ``gradients``.

  ``cos_syn_fut``, ``cos_syn_all``: the cosine of ``g_syn`` with ``g_fut``
  and with ``g_all``; ``norm_syn``, ``norm_fut``, ``norm_win``: their L2
  norms; ``cos_bptt``, ``cos_dni``: the cosine of ``g_win`` and of ``g_win +
  g_syn`` with ``g_win + g_all``; ``cos_state``: the mean per-example cosine
  of ``λ·M(h(s_T))`` and ``∂(future)/∂h(s_T)``.
  """
  g_win, g_syn, g_fut, g_all = (grads[k] for k in
                                ("g_win", "g_syn", "g_fut", "g_all"))
  longer = g_win + g_all
  sg, fut = grads["sg_B"], grads["future_B"]
  norms = jnp.linalg.norm(sg, axis=-1) * jnp.linalg.norm(fut, axis=-1)
  return {"cos_syn_fut": cosine_similarity(g_syn, g_fut),
          "cos_syn_all": cosine_similarity(g_syn, g_all),
          "norm_syn": jnp.linalg.norm(g_syn),
          "norm_fut": jnp.linalg.norm(g_fut),
          "norm_win": jnp.linalg.norm(g_win),
          "cos_bptt": cosine_similarity(g_win, longer),
          "cos_dni": cosine_similarity(g_win + g_syn, longer),
          "cos_state": jnp.mean(jnp.sum(sg * fut, -1) /
                                jnp.maximum(norms, 1e-30))}


def held_out_fit(x_train, y_train, x_eval, y_eval, own_train=None,
                 own_eval=None, ridge: float = 1e-3) -> dict:
  """How much of the future gradient what ``M`` reads can predict, linearly.

  Fits the best affine map from ``x`` (what the synthesizer reads, ``[N,
  D]``) to ``y`` (``∂(future)/∂h(s_T)`` per example, ``[N, S]``) by ridge
  regression on the training examples (the ridge: ``ridge`` times the mean
  of ``xᵀx``'s diagonal) and returns its held-out R² (``r2_linear``,
  ``losses.r_squared``: 0 for the best constant, 1 for a perfect fit). With
  ``own_*`` (the run's own ``λ·M``), also ``r2_own``: the held-out R² of
  ``own`` times the one factor that fits the training examples best (``M``
  learns a target discounted by λ per window, so its scale is not the
  horizon's).
  """
  def design(x):
    return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], -1)

  xt, xe = design(x_train), design(x_eval)
  gram = xt.T @ xt
  gram = gram + ridge * jnp.mean(jnp.diag(gram)) * jnp.eye(gram.shape[0])
  weights = jnp.linalg.solve(gram, xt.T @ y_train)
  got = {"r2_linear": r_squared(xe @ weights, y_eval)}
  if own_train is not None:
    factor = jnp.vdot(own_train, y_train) / jnp.maximum(
        jnp.vdot(own_train, own_train), 1e-30)
    got["r2_own"] = r_squared(factor * own_eval, y_eval)
  return got
