"""Two networks at two timescales, joined by a DNI (a variant of the paper's multi-network system).

Network A ticks every step on its input stream (``x_t``, e.g. one digit
image) with a task of its own (``y_t``); network B ticks every ``k`` steps,
reads A's state at that step (A's output to B) and has a task of its own
(``z_j`` at its ``j``-th tick). Both are recurrent cores
(``dni_jax.core.recurrent``'s protocol); B's input is A's state ``[B, S_A]``.

One training *step* covers ``ticks`` of B's ticks, i.e. ``ticks·k`` steps
of A, for every method, so the methods see the same data per step:

- ``dni``: A updates at **every** one of its steps, at once, from its own loss
  and the synthetic gradient ``λ·M(s_t)`` on its state: recurrent DNI with a
  window of one step, where ``M`` stands for the gradient of every later loss
  (A's and B's) with respect to A's state. At a step where B ticks, B's true
  gradient with respect to ``s_t`` joins A's objective at once, and B
  updates. ``M`` regresses, as in ``dni_jax.core.tbptt``, ``M(s_{t-1})`` onto
  the bootstrapped target ``∂J_t/∂s_{t-1}``: B's true gradient, when it
  comes, is the synthesizer's target.
- ``locked``: A waits for B: it updates only when B's true gradient arrives,
  once per tick, by BPTT through its last ``k`` steps (its ``k`` losses and
  B's loss at the tick); B updates at its tick. The states carry over ticks
  behind ``stop_gradient`` (truncation at each tick).
- ``bptt``: full BPTT through both networks over the step's ``ticks`` ticks
  (through A's ``ticks·k`` steps and B's recurrence between its ticks); A
  and B update once per step.

Losses are softmax cross-entropies, summed over a window and averaged over
the batch; ``M`` works in per-example units (as in ``tbptt``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from dni_jax.core import interface
from dni_jax.core import recurrent
from dni_jax.core.train_state import Optimizers

METHODS = ("dni", "locked", "bptt")


@dataclasses.dataclass(frozen=True)
class TwoTimescale:
  """The static parts of a two-timescale run.

  Attributes:
    core_a: network A (input ``x_t``, readout: A's task logits).
    core_b: network B (input: A's state, readout: B's task logits).
    k: B ticks once every ``k`` steps of A (B reads A's state at A's
      ``k``-th, ``2k``-th, ... step).
    ticks: B's ticks per training step (``ticks·k`` steps of A).
    method: one of ``METHODS``.
    synthesizer: ``M`` on A's state (dni only).
    sg_scale: λ.
  """
  core_a: Any
  core_b: Any
  k: int
  ticks: int
  method: str = "dni"
  synthesizer: nn.Module | None = None
  sg_scale: float = 1.0

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"unknown two-timescale method {self.method!r}; "
                       f"choose one of {METHODS}")
    if self.k < 1 or self.ticks < 1:
      raise ValueError(f"k and ticks must be >= 1, got k={self.k}, "
                       f"ticks={self.ticks}")
    if (self.method == "dni") != (self.synthesizer is not None):
      raise ValueError("dni needs a synthesizer; locked and bptt take none")

  @property
  def steps_per_update(self) -> int:
    """A's steps per training step."""
    return self.k * self.ticks


@flax.struct.dataclass
class TwoTimescaleState:
  """Everything that changes: both networks, their carries, the synthesizer.

  Attributes:
    step: training steps done (each ``ticks`` of B's ticks).
    rng: base PRNG key.
    a_params, a_opt_state, b_params, b_opt_state: the two networks'.
    a_carry, b_carry: the states carried into the next step.
    synth_params, synth_state, synth_opt_state: ``M``'s (dni only).
  """
  step: jax.Array
  rng: jax.Array
  a_params: Any
  a_opt_state: Any
  b_params: Any
  b_opt_state: Any
  a_carry: jax.Array
  b_carry: jax.Array
  synth_params: Any = None
  synth_state: Any = None
  synth_opt_state: Any = None


def init_train_state(tt: TwoTimescale, optimizers: Optimizers,
                     rng: jax.Array, batch_size: int,
                     input_size: int) -> TwoTimescaleState:
  """Both networks' parameters and optimiser states; zero carries."""
  a_rng, b_rng, synth_rng, step_rng = jax.random.split(rng, 4)
  a_params = recurrent.init(tt.core_a, a_rng, batch_size,
                            jnp.zeros((batch_size, input_size)))
  a_carry = tt.core_a.initial_state(batch_size)
  b_params = recurrent.init(tt.core_b, b_rng, batch_size, a_carry)
  state = TwoTimescaleState(
      step=jnp.zeros((), jnp.int32), rng=step_rng,
      a_params=a_params, a_opt_state=optimizers.stage.init(a_params),
      b_params=b_params, b_opt_state=optimizers.stage.init(b_params),
      a_carry=a_carry, b_carry=tt.core_b.initial_state(batch_size))
  if tt.synthesizer is not None:
    if optimizers.synth is None:
      raise ValueError("dni needs Optimizers(synth=...)")
    sg = interface.Interface(tt.synthesizer, optimizers.synth, tt.sg_scale)
    state = interface.with_state(state, sg.init(synth_rng, a_carry))
  return state



def _xent(logits, labels):
  """Per-example cross-entropy and error, ``[B]`` each."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  error = (jnp.argmax(logits, -1) != labels).astype(jnp.float32)
  return loss, error


def _metrics(a_loss, a_err, b_loss, b_err) -> dict:
  """Means per step of A and per tick of B."""
  return {"a_loss": a_loss.mean(), "a_error": a_err.mean(),
          "b_loss": b_loss.mean(), "b_error": b_err.mean()}


def _run_window(tt, a_params, b_params, a_start, b_start, x_BxKxD, y_BxK,
                z_B):
  """``k`` steps of A, then B's tick on A's last state (differentiable).

  Returns ``(a_end, b_end, per-example objective [B], metric arrays)``.
  """
  a_end, _, logits = recurrent.unroll(tt.core_a, a_params, a_start, x_BxKxD)
  a_loss, a_err = _xent(logits, y_BxK)  # [B, k]
  b_end, b_logits = tt.core_b.apply(b_params, b_start, a_end)
  b_loss, b_err = _xent(b_logits, z_B)
  objective_B = a_loss.sum(-1) + b_loss
  return a_end, b_end, objective_B, (a_loss, a_err, b_loss, b_err)


def _windows(tt, batch):
  """The step's batch cut into B's ticks: ``[ticks, B, k, ...]`` arrays."""
  b = batch["inputs"].shape[0]
  x = batch["inputs"].reshape((b, tt.ticks, tt.k) + batch["inputs"].shape[2:])
  y = batch["a_labels"].reshape(b, tt.ticks, tt.k)
  return (jnp.swapaxes(x, 0, 1), jnp.swapaxes(y, 0, 1),
          jnp.swapaxes(batch["b_labels"], 0, 1))


def _bptt_step(state, batch, tt, optimizers):
  """One update of A and B by BPTT through both over the step's ticks."""
  xs, ys, zs = _windows(tt, batch)

  def objective(a_params, b_params):
    a, b = state.a_carry, state.b_carry
    total, parts = 0.0, []
    for w in range(tt.ticks):
      a, b, obj, metric = _run_window(tt, a_params, b_params, a, b, xs[w],
                                      ys[w], zs[w])
      total = total + obj
      parts.append(metric)
    return total.mean(), (a, b, parts)

  new, parts = _update_both(state, objective, optimizers)
  stacked = [jnp.stack([p[i] for p in parts]) for i in range(4)]
  return new, _metrics(*stacked)


def _update_both(state, objective, optimizers):
  """One update of A and B from ``objective(a, b) -> (J, (a_end, b_end,
  aux))``; the carries move to the ends. Returns ``(state, aux)``."""
  (a_grads, b_grads), (a_end, b_end, aux) = jax.grad(
      objective, argnums=(0, 1), has_aux=True)(state.a_params, state.b_params)
  a_params, a_opt = interface.apply_update(
      optimizers.stage, a_grads, state.a_opt_state, state.a_params)
  b_params, b_opt = interface.apply_update(
      optimizers.stage, b_grads, state.b_opt_state, state.b_params)
  return state.replace(a_params=a_params, a_opt_state=a_opt,
                       b_params=b_params, b_opt_state=b_opt,
                       a_carry=jax.lax.stop_gradient(a_end),
                       b_carry=jax.lax.stop_gradient(b_end)), aux


def _locked_step(state, batch, tt, optimizers):
  """A waits for B: one update of A and B per tick, BPTT over A's k steps."""
  xs, ys, zs = _windows(tt, batch)

  def tick(st, window):
    x, y, z = window

    def objective(a_params, b_params):
      a_end, b_end, obj, metric = _run_window(
          tt, a_params, b_params, st.a_carry, st.b_carry, x, y, z)
      return obj.mean(), (a_end, b_end, metric)

    return _update_both(st, objective, optimizers)

  state, metric = jax.lax.scan(tick, state, (xs, ys, zs))
  return state, _metrics(*metric)


def dni_a_step(state, x_t, y_t, z=None, *, tt, optimizers):
  """One step of A under DNI, with B's tick when ``z`` (B's labels) is given.

  ``J_b = L_A(s_t) [+ L_B(B(b, s_t))] + ⟨stop_gradient(λ·M(s_t)), s_t⟩``;
  ``∂J/∂θ_A`` updates A now (and ``∂J/∂θ_B`` updates B at a tick);
  ``M(s_{t-1})`` regresses onto ``B·∂J/∂s_{t-1}``. B's parameters reach A's
  update only at a tick, through B's true gradient.

  Returns ``(new_state, (a_loss, a_err, b_loss, b_err, synth_loss))``; the
  B entries are zeros when B does not tick.
  """
  start = jax.lax.stop_gradient(state.a_carry)
  tick = z is not None
  sg = interface.Interface(tt.synthesizer, optimizers.synth, tt.sg_scale)
  sg_state = interface.state_of(state)

  def objective(a_params, b_params, s_prev):
    s, logits = tt.core_a.apply(a_params, s_prev, x_t)
    a_loss, a_err = _xent(logits, y_t)
    obj = a_loss
    b_end, b_loss, b_err = (state.b_carry, jnp.zeros_like(a_loss),
                            jnp.zeros_like(a_err))
    if tick:
      b_end, b_logits = tt.core_b.apply(b_params, state.b_carry, s)
      b_loss, b_err = _xent(b_logits, z)
      obj = obj + b_loss
    m = sg.predict(sg_state, s, train=False).value
    obj = obj + jnp.sum(jax.lax.stop_gradient(sg.delta(m)) * s, -1)
    return obj.mean(), (s, b_end, (a_loss, a_err, b_loss, b_err))

  argnums = (0, 1, 2) if tick else (0, 2)
  grads, (s, b_end, metric) = jax.grad(objective, argnums=argnums,
                                       has_aux=True)(
                                           state.a_params, state.b_params,
                                           start)
  a_grads, start_grads = grads[0], grads[-1]
  a_params, a_opt = interface.apply_update(
      optimizers.stage, a_grads, state.a_opt_state, state.a_params)
  new = state.replace(a_params=a_params, a_opt_state=a_opt,
                      a_carry=jax.lax.stop_gradient(s),
                      b_carry=jax.lax.stop_gradient(b_end))
  if tick:
    b_params, b_opt = interface.apply_update(
        optimizers.stage, grads[1], state.b_opt_state, state.b_params)
    new = new.replace(b_params=b_params, b_opt_state=b_opt)

  target = start.shape[0] * start_grads  # per-example units
  sg_state, synth_loss = sg.regress(sg_state, sg.predict(sg_state, start),
                                    target)
  return interface.with_state(new, sg_state), metric + (synth_loss,)


def _dni_step(state, batch, tt, optimizers):
  """Every step of A updates at once; B updates at its ticks."""
  xs, ys, zs = _windows(tt, batch)
  a_step = functools.partial(dni_a_step, tt=tt, optimizers=optimizers)

  def plain(st, xy):
    st, metric = a_step(st, *xy)
    return st, (metric[0], metric[1], metric[4])

  def tick(st, window):
    x, y, z = window  # [B, k, ...], [B, k], [B]
    x, y = jnp.swapaxes(x, 0, 1), jnp.swapaxes(y, 0, 1)
    st, (a_loss, a_err, synth_loss) = jax.lax.scan(
        plain, st, (x[:-1], y[:-1]))
    st, (ta_loss, ta_err, b_loss, b_err, t_synth) = a_step(st, x[-1], y[-1], z)
    a_loss = jnp.concatenate([a_loss, ta_loss[None]])
    a_err = jnp.concatenate([a_err, ta_err[None]])
    synth_loss = jnp.concatenate([synth_loss, t_synth[None]])
    return st, (a_loss, a_err, b_loss, b_err, synth_loss)

  state, (a_loss, a_err, b_loss, b_err, synth_loss) = jax.lax.scan(
      tick, state, (xs, ys, zs))
  metrics = _metrics(a_loss, a_err, b_loss, b_err)
  metrics["synth_loss"] = synth_loss.mean()
  return state, metrics


_STEPS = {"dni": _dni_step, "locked": _locked_step, "bptt": _bptt_step}


def train_step(state: TwoTimescaleState, batch: dict, *, tt: TwoTimescale,
               optimizers: Optimizers) -> tuple[TwoTimescaleState, dict]:
  """One training step: ``tt.ticks`` of B's ticks, ``ticks·k`` steps of A.

  Args:
    state: the current state.
    batch: ``inputs [B, ticks·k, D]`` (A's stream), ``a_labels [B, ticks·k]``
      and ``b_labels [B, ticks]`` (B's task at each tick).
    tt: the static parts.
    optimizers: ``stage`` for both networks, ``synth`` for ``M``.

  Returns:
    ``(new_state, metrics)``: ``a_loss``/``a_error`` per step of A,
    ``b_loss``/``b_error`` per tick of B, and ``synth_loss`` (dni).
  """
  state, metrics = _STEPS[tt.method](state, batch, tt, optimizers)
  return state.replace(step=state.step + 1), metrics


def evaluate(tt: TwoTimescale, a_params, b_params, batch: dict) -> dict:
  """A's and B's losses and errors on a stream, from zero states, no updates.

  ``batch`` as in ``train_step`` with any number of ticks.
  """
  b = batch["inputs"].shape[0]
  ticks = batch["b_labels"].shape[1]
  tt = dataclasses.replace(tt, ticks=ticks)
  xs, ys, zs = _windows(tt, batch)

  def tick(carry, window):
    a, bc = carry
    a, bc, _, metric = _run_window(tt, a_params, b_params, a, bc, *window)
    return (a, bc), metric

  _, metric = jax.lax.scan(
      tick, (tt.core_a.initial_state(b), tt.core_b.initial_state(b)),
      (xs, ys, zs))
  return _metrics(*metric)
