"""Does the synthetic gradient move the core as the gradient it stands for?

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
  g_fix  = the same as g_fut, window k's loss        what M's own regression
           weighted by d^(k-1), the state outside    converges to (its
           h(s) cut at every later boundary          bootstrapped target
                                                     carries the synthetic
                                                     gradient back through h
                                                     alone, discounted by
                                                     d = λ per window; d = 1
                                                     for bootstrap="unscaled")

and compares them: the cosine of ``g_syn`` with ``g_fut`` (is the synthetic
gradient's update aligned with the one it replaces?) and with ``g_fix`` (with
the best its regression can give), their norms, and the
cosine of ``g_win + g_syn`` (DNI's update) and of ``g_win`` (truncated BPTT's)
with ``g_win + g_all`` (the update over a horizon of K more windows). The
per-example cosine of ``λ·M(h(s_T))`` and ``∂(future)/∂h(s_T)`` is the same
question asked of the state instead of the parameters.

``g_syn`` is the part of ``tbptt.window_grads``'s core gradient that the
synthetic term contributes (a DNI+Aux run's Aux loss is left out: it is
neither, so ``g_win + g_syn`` is not a DNI+Aux run's gradient). The later
windows run at the same parameters: the probe asks about one update, not about
training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dni_jax.core import offline_fit
from dni_jax.core import recurrent
from dni_jax.core import tbptt
from dni_jax.core.losses import cosine_similarity
from dni_jax.core.losses import r_squared


def _flat(tree) -> jax.Array:
  return jnp.concatenate(
      [jnp.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


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
    ``g_syn``, ``g_fut``, ``g_all``, ``g_fix``) and of per-example
    cotangents on ``h(s_T)`` (the batch size times the objective's):
    ``sg_B`` (``λ·M(h(s_T))``), ``future_B`` (``∂(future)/∂h(s_T)``, the
    cotangent of ``g_fut``) and ``fixed_B`` (that of ``g_fix``); and what the
    synthesizer reads at ``s_T``, ``input_B``, and the whole state
    ``s_T``, ``state_B`` (an LSTM's ``(c, h)``). ``end``: ``s_T``, the state
    after window 0 (the next window's start).
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

  # The part of a cotangent on the state that sits on h(s_T): the rest
  # (an LSTM's c under sg_on="h") zeroed.
  end_sg, part_pull = jax.vjp(lambda s: tbptt.sg_part(rdni, s), end)
  on_part = part_pull(jnp.ones_like(end_sg))[0]

  def future(s, discount, cut):
    """The later windows' losses, window k's weighted by discount^(k-1);
    ``cut``: the state outside h(s) cut at every later boundary."""
    def body(carry, batch):
      state, weight = carry
      if cut:
        state = jax.lax.stop_gradient(state) + on_part * (
            state - jax.lax.stop_gradient(state))
      nxt, _, logits = recurrent.unroll(rdni.core, params, state,
                                        batch["inputs"])
      loss = weight * rdni.loss_fn(logits, batch)[0].mean()
      return (nxt, weight * discount), loss
    _, losses = jax.lax.scan(body, (s, jnp.ones((), s.dtype)), later)
    return jnp.sum(losses)

  delta = jax.grad(future)(end, 1.0, False)
  g_all = pull((zero, delta))[0]
  g_fut = pull((zero, on_part * delta))[0]
  scale = rdni.sg_scale if sg_scale is None else sg_scale
  # What M's own regression converges to: its bootstrapped target carries
  # the synthetic gradient back through h alone, discounted by λ per
  # window unless the bootstrap is unscaled.
  discount = scale if rdni.bootstrap == "scaled" else jnp.ones((), end.dtype)
  delta_fix = jax.grad(future)(end, discount, True)
  g_fix = pull((zero, on_part * delta_fix))[0]
  if rdni.synthesizer is None:
    sg_B = jnp.zeros_like(end_sg)
  else:
    sg_B = tbptt._end_delta(  # pylint: disable=protected-access
        rdni, synth_params, synth_state, end, scale)
  g_syn = pull((zero, part_pull(sg_B / batch_size)[0]))[0]
  return {"g_win": _flat(g_win), "g_syn": _flat(g_syn),
          "g_fut": _flat(g_fut), "g_all": _flat(g_all),
          "g_fix": _flat(g_fix), "sg_B": sg_B,
          "future_B": batch_size * tbptt.sg_part(rdni, delta),
          "fixed_B": batch_size * tbptt.sg_part(rdni, delta_fix),
          "input_B": tbptt.sg_input(rdni, end), "state_B": end}, end


def part_names(core) -> tuple[str, str]:
  """``(sits, reads)``: the part of the end state the synthetic gradient
  sits on and what ``M`` reads, as ``experiments.sg_alignment``'s report
  names them: ``h_T`` for a vanilla RNN or an LSTM under ``sg_on="h"``;
  ``(c_T, h_T)`` and ``c_T, h_T`` under ``"ch"``; ``(c_T, h_T)`` and
  ``h_T`` under ``"h_ch"``."""
  if getattr(core, "cell", None) != "lstm":
    return "h_T", "h_T"
  sg_on = getattr(core, "sg_on", "h")
  return (("h_T", "h_T") if sg_on == "h" else
          ("(c_T, h_T)", "c_T, h_T" if sg_on == "ch" else "h_T"))


def stream_windows(task, data, task_state, first, span: int) -> dict:
  """The batches of windows ``first … first + span − 1`` of a task's stream
  (``task.window``, as ``tbptt.task_step`` makes them), stacked on a leading
  axis: the ``batches`` of ``gradients``. The task's state (e.g. Copy's
  curriculum) is held as it is."""
  return jax.vmap(lambda k: task.window(task_state, data, first + k))(
      jnp.arange(span))


def _mean_cosine(a_BxS: jax.Array, b_BxS: jax.Array) -> jax.Array:
  norms = jnp.linalg.norm(a_BxS, axis=-1) * jnp.linalg.norm(b_BxS, axis=-1)
  return jnp.mean(jnp.sum(a_BxS * b_BxS, -1) / jnp.maximum(norms, 1e-30))


def adam_scale(opt_state, b2: float = 0.999, eps: float = 1e-8):
  """Adam's per-coordinate step size ``1 / (√ν̂ + ε)`` in a run's optimiser
  state, flat in the order of ``gradients``' vectors (``ν̂``: the second
  moment, bias-corrected by its count; ``b2``, ``eps``: ``optax.adam``'s
  defaults, which the configs use); ``None`` where the state holds no Adam
  moments (SGD).

  Adding a gradient ``g`` to step ``t + 1`` moves that step by
  ``−lr·(1 − β1)/(1 − β1^(t+1))·g / (√ν̂ + ε)`` and, through the momentum,
  the sum of all later steps by about ``−lr·g / (√ν̂ + ε)`` (to first
  order: its effect on ``ν`` aside, and before any clipping), so
  ``compare``'s figures of the scaled gradients ask what each term does to
  the steps Adam takes."""
  found = optax.tree_utils.tree_get_all_with_path(opt_state,
                                                  "ScaleByAdamState")
  if not found:
    return None
  if len(found) != 1:
    raise ValueError(f"the optimiser state holds {len(found)} Adam states; "
                     "expected one")
  adam = found[0][1]
  bias = 1.0 - b2 ** jnp.maximum(adam.count, 1).astype(jnp.float32)
  return 1.0 / (jnp.sqrt(_flat(adam.nu) / bias) + eps)


def _centred(x_BxS: jax.Array) -> jax.Array:
  return x_BxS - jnp.mean(x_BxS, axis=0, keepdims=True)


def compare(grads: dict, scale=None) -> dict:
  """The figures of one window's ``gradients``.

  ``cos_syn_fut``, ``cos_syn_all``, ``cos_syn_fix``: the cosine of
  ``g_syn`` with ``g_fut``, ``g_all`` and ``g_fix``; ``norm_syn``,
  ``norm_fut``, ``norm_win``: their L2 norms; ``cos_bptt``, ``cos_dni``:
  the cosine of ``g_win`` and of ``g_win + g_syn`` with ``g_win + g_all``;
  ``cos_state``, ``cos_state_fix``: the mean per-example cosine of
  ``λ·M(h(s_T))`` with ``∂(future)/∂h(s_T)`` and with ``M``'s fixed point;
  ``cos_state_own``: the same as ``cos_state`` with each side's batch mean
  removed first, what the prediction says of each stream's own future
  beyond what all streams share (on a task whose streams run in phase,
  such as Copy, the batch mean carries the phase); NaN for a batch of one.

  With ``scale`` (a flat per-coordinate step size, e.g. ``adam_scale``'s),
  the same questions of the steps the gradients make, each gradient
  multiplied by ``scale`` coordinate by coordinate: ``adam_cos_syn_fut``,
  ``adam_cos_bptt``, ``adam_cos_dni`` as above, and ``adam_norm_syn``,
  ``adam_norm_fut``, ``adam_norm_win``, the norms of the scaled ``g_syn``,
  ``g_fut`` and ``g_win``.
  """
  g_win, g_syn, g_fut, g_all, g_fix = (
      grads[k] for k in ("g_win", "g_syn", "g_fut", "g_all", "g_fix"))
  longer = g_win + g_all
  out = {"cos_syn_fut": cosine_similarity(g_syn, g_fut),
         "cos_syn_all": cosine_similarity(g_syn, g_all),
         "cos_syn_fix": cosine_similarity(g_syn, g_fix),
         "norm_syn": jnp.linalg.norm(g_syn),
         "norm_fut": jnp.linalg.norm(g_fut),
         "norm_win": jnp.linalg.norm(g_win),
         "cos_bptt": cosine_similarity(g_win, longer),
         "cos_dni": cosine_similarity(g_win + g_syn, longer),
         "cos_state": _mean_cosine(grads["sg_B"], grads["future_B"]),
         "cos_state_fix": _mean_cosine(grads["sg_B"], grads["fixed_B"]),
         "cos_state_own": (
             _mean_cosine(_centred(grads["sg_B"]),
                          _centred(grads["future_B"]))
             if grads["sg_B"].shape[0] > 1 else jnp.asarray(jnp.nan))}
  if scale is not None:
    s_win, s_syn, s_fut, s_longer = (scale * g for g in (g_win, g_syn, g_fut,
                                                         longer))
    out.update(
        adam_cos_syn_fut=cosine_similarity(s_syn, s_fut),
        adam_cos_bptt=cosine_similarity(s_win, s_longer),
        adam_cos_dni=cosine_similarity(s_win + s_syn, s_longer),
        adam_norm_syn=jnp.linalg.norm(s_syn),
        adam_norm_fut=jnp.linalg.norm(s_fut),
        adam_norm_win=jnp.linalg.norm(s_win))
  return out


def ridge_map(x, y, ridge: float = 1e-3) -> np.ndarray:
  """The best affine map from ``x [N, D]`` to ``y [N, S]`` by ridge
  regression (the ridge: ``ridge`` times the mean of ``xᵀx``'s diagonal;
  solved in float64 with numpy): ``[D + 1, S]``, the bias last; apply it
  with ``affine``."""
  xt = _design(np.asarray(x, np.float64))
  gram = xt.T @ xt
  gram += ridge * np.mean(np.diag(gram)) * np.eye(gram.shape[0])
  return np.linalg.solve(gram, xt.T @ np.asarray(y, np.float64))


def _design(x):
  return np.concatenate([x, np.ones((x.shape[0], 1))], -1)


def affine(weights, x) -> np.ndarray:
  """``ridge_map``'s map applied to ``x [N, D]``."""
  return _design(np.asarray(x, np.float64)) @ weights


def held_out_fit(x_train, y_train, x_eval, y_eval, own_train=None,
                 own_eval=None, ridge: float = 1e-3) -> dict:
  """How much of a target what ``M`` reads can predict, linearly.

  Fits the best affine map from ``x`` (what the synthesizer reads, ``[N,
  D]``) to ``y`` (e.g. ``∂(future)/∂h(s_T)`` per example, ``[N, S]``) on the
  training examples (``ridge_map``) and returns its held-out R²
  (``r2_linear``, ``losses.r_squared``: 0 for the best constant, 1 for a
  perfect fit). With ``own_*`` (the run's own ``λ·M``), also ``r2_own``:
  the held-out R² of ``own`` times the one factor that fits the training
  examples best (λ and the discount set ``M``'s scale, not the direction
  asked about).
  """
  weights = ridge_map(x_train, y_train, ridge)
  got = {"r2_linear": r_squared(affine(weights, x_eval), y_eval)}
  if own_train is not None:
    own_train = np.asarray(own_train, np.float64)
    y_train = np.asarray(y_train, np.float64)
    factor = np.vdot(own_train, y_train) / max(
        np.vdot(own_train, own_train), 1e-30)
    got["r2_own"] = r_squared(factor * np.asarray(own_eval), y_eval)
  return got


def held_out_mlp_fit(x_train, y_train, x_eval, y_eval, *,
                     hidden: tuple[int, ...], steps: int = 3000,
                     batch_size: int = 512, learning_rate: float = 1e-3,
                     seed: int = 0) -> float:
  """``held_out_fit``'s question asked of an MLP: can a nonlinear function
  of what ``M`` reads predict the target?

  Standardises ``x`` per feature, centres ``y`` and divides it by one
  scale (all from the training examples; R² does not depend on ``y``'s
  offset or scale, and the fit then starts at the best constant), keeps
  the last fifth of the training examples out of the fit to pick when to
  stop, and
  returns the held-out R² of ``offline_fit.mlp_r2`` (``hidden`` widths,
  Adam ``learning_rate``, ``steps`` minibatches of ``batch_size``).
  """
  x_train, y_train, x_eval, y_eval = (np.asarray(a, np.float32) for a in (
      x_train, y_train, x_eval, y_eval))
  mean, std = x_train.mean(0), x_train.std(0) + 1e-6
  y_mean = y_train.mean(0)
  scale = float(np.sqrt(np.mean(np.square(y_train - y_mean)))) or 1.0
  x_train, x_eval = (x_train - mean) / std, (x_eval - mean) / std
  y_train, y_eval = (y_train - y_mean) / scale, (y_eval - y_mean) / scale
  split = x_train.shape[0] - max(1, x_train.shape[0] // 5)
  return float(_mlp_r2(x_train[:split], y_train[:split], x_eval, y_eval,
                       jax.random.PRNGKey(seed), hidden=tuple(hidden),
                       steps=steps, batch_size=batch_size,
                       learning_rate=learning_rate, x_val=x_train[split:],
                       y_val=y_train[split:]))


# Compiled once per shape and setting, not once per call.
_mlp_r2 = jax.jit(offline_fit.mlp_r2, static_argnames=(
    "hidden", "steps", "batch_size", "learning_rate", "check_every"))


def online_linear_fit(x_WxBxD, y_WxBxS, learning_rates,
                      clip_norm: float | None = None):
  """What a synthesizer of ``M``'s form learns *online* from a stream that
  holds still: the fitted affine maps, one per learning rate.

  An affine map, zero-initialised as ``M`` is, takes one Adam step per
  window in stream order on that window's examples (``x_WxBxD[w]`` to
  ``y_WxBxS[w]``, the squared error summed over the target's dimensions
  and averaged over the batch, as ``M``'s regression; the gradient first
  clipped to a global norm of ``clip_norm`` where given, as the configs'
  ``opt.clip_norm`` clips ``M``'s), once for each of ``learning_rates``
  (vmapped). Returns ``(W [L, D, S], b [L, S])``; score with
  ``losses.r_squared(x @ W[l] + b[l], y)``. The windows come from a run
  held at fixed parameters, so the stream is stationary: set beside
  ``held_out_fit``'s best map (what the same examples allow) and the run's
  own ``M`` (what online training beside a moving core got), it tells
  whether the regression's rate or the core's motion keeps ``M`` from the
  target.
  """
  x_WxBxD, y_WxBxS = (jnp.asarray(a, jnp.float32)
                      for a in (x_WxBxD, y_WxBxS))

  def loss(p, x, y):
    return jnp.mean(jnp.sum(jnp.square(x @ p[0] + p[1] - y), -1))

  def run(learning_rate):
    optimizer = optax.adam(learning_rate)
    if clip_norm:
      optimizer = optax.chain(optax.clip_by_global_norm(clip_norm),
                              optimizer)

    def step(carry, xy):
      p, opt_state = carry
      updates, opt_state = optimizer.update(jax.grad(loss)(p, *xy),
                                            opt_state)
      return (optax.apply_updates(p, updates), opt_state), None

    p = (jnp.zeros((x_WxBxD.shape[-1], y_WxBxS.shape[-1])),
         jnp.zeros(y_WxBxS.shape[-1]))
    (p, _), _ = jax.lax.scan(step, (p, optimizer.init(p)),
                             (x_WxBxD, y_WxBxS))
    return p

  return jax.jit(jax.vmap(run))(jnp.asarray(learning_rates, jnp.float32))
