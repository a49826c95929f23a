"""Recurrent DNI: truncated BPTT with a synthetic gradient at the boundary.

docs/method.md. The core runs over consecutive windows of ``T`` steps; the
state carries from window to window behind ``stop_gradient``. For one window,
per example ``b`` (``s₀`` the carried start state, ``s_T`` the end state,
``h(s)`` the part of a state the synthetic gradient sits on)::

  J_b = Σ_t L_{b,t} + ⟨stop_gradient(λ·M(h(s_T))), h(s_T)⟩          (dni)
        + w·(1/T) Σ_t ‖A(h(s_t)) − stop_gradient(λ·M(h(s_T)))‖²       (dni_aux)

and ``J = mean_b J_b``. ``∂J/∂θ`` updates the core. The synthesizer ``M``
regresses its prediction at the start, ``M(h(s₀))``, onto the bootstrapped
target ``∂J_b/∂h(s₀)`` (the true gradient inside the window plus the
synthetic gradient at its end, carried back; ``bootstrap="unscaled"``
carries back ``M(h(s_T))`` instead of ``λ·M(h(s_T))``; with
``target_decay > 0`` the target reads a slowly moving copy of ``M``, the
target network, at the window's end, while the core still receives
``λ·M(h(s_T))``). ``h`` is the core's
``sg_part``: by default the LSTM's output ``h``, as in the paper, so the cell
state ``c`` crosses the boundary with its gradient truncated, as in plain
truncated BPTT; ``sg_on="h_ch"`` predicts the gradient of the whole state
from ``h`` alone (the synthesizer reads the core's ``sg_input``);
``sg_on="ch"`` puts the synthetic gradient on the whole state
``(c, h)`` instead (an unbounded ``c`` lets the linear synthetic term grow
without bound, docs/results.md).

The three methods share this one step: ``bptt`` is the window objective with
no synthetic term (plain truncated BPTT), ``dni`` adds it, ``dni_aux`` adds the
auxiliary head too. Like the feed-forward code, ``M`` works in per-example
units: it predicts ``∂J_b/∂s`` (``= B·∂J/∂s``), so the batch size does not
shrink its targets.

The prediction ``M(s₀)`` is recomputed with the synthesizer's current
parameters from the kept start state (the "one extra state in memory"), so
the regression's gradient needs no stored graph of the previous window.

The Aux head ``A`` reads every state ``s_1 … s_T`` of the window and is
trained towards the synthetic gradient produced at the window's end, the
latest boundary whose synthetic gradient exists when the window is updated;
its loss reaches the core through the states it reads.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from dni_jax.core import interface
from dni_jax.core import recurrent
from dni_jax.core.train_state import Optimizers

METHODS = ("bptt", "dni", "dni_aux")
BOOTSTRAPS = ("scaled", "unscaled")

# loss_fn(logits [B, T, K], batch) -> (per-example loss summed over the
# window [B], metrics dict of scalars)
LossFn = Callable[[jax.Array, dict], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class RecurrentDNI:
  """The static parts of a recurrent-DNI run.

  Attributes:
    core: the recurrent core (``dni_jax.core.recurrent``'s protocol, e.g.
      ``dni_jax.RecurrentCore``; ``with_aux=True`` for dni_aux; its
      ``sg_part`` is where the synthetic gradient sits).
    loss_fn: the task's window loss (see ``LossFn``).
    synthesizer: the synthetic-gradient model on the state, or ``None`` for
      plain truncated BPTT.
    sg_scale: λ; the synthetic gradient at the window end is ``λ·M(s_T)``
      (the value a train state starts with: the step reads the state's
      ``sg_scale``).
    aux_weight: w, the weight of the Aux loss (used only if ``core.with_aux``).
    bootstrap: what the synthesizer's target carries back from the
      window's end: "scaled", ``λ·M(h(s_T))``, the synthetic gradient the
      core was updated with (the target is ``∂J_b/∂h(s₀)``, and ``M``'s
      fixed point is the future gradient discounted by λ per window); or
      "unscaled", ``M(h(s_T))`` itself (the paper's bootstrapped target
      ``δ_T = Σ ∂L_τ/∂h_T + δ̂_2T·∂h_2T/∂h_T``: ``M`` estimates the
      undiscounted future gradient and λ only scales what the core
      receives). One more backward pass through the window.
    oracle_end_grad: testing hook: take the end gradient from
      ``batch["end_grad"]`` (per-example units, ``[B, sg_size]``) instead of
      ``λ·M(h(s_T))``, in the core's objective and in the target alike
      (``bootstrap`` is then ignored).
    target_decay: 0 (the default): the bootstrapped target reads ``M``
      itself at the window's end. In (0, 1): it reads a target network
      ``M̄`` instead, an exponential moving average of ``M``'s parameters
      (``θ̄ ← d·θ̄ + (1 − d)·θ`` after each window's update of ``M``), as
      deep Q-learning steadies a bootstrapped regression; the core's synthetic
      gradient is still ``λ·M(h(s_T))``. One more backward pass.
    synth_steps: optax steps of ``M`` per window, each regressing
      ``M(h(s₀))``, recomputed with ``M``'s latest parameters, onto the
      window's one target (1, the default: the paper's one step). More lets
      ``M`` follow a target that moves faster than one step of its
      optimiser can (docs/results.md); the logged ``synth_loss`` is the
      first step's, the one a single step would log.
    sg_shuffle: a control, off by default: every use of ``λ·M(h(s_T))`` (the
      core's synthetic gradient, the bootstrap, the Aux target) gives stream
      ``b`` the prediction for stream ``b − 1``'s end state (rolled across
      the batch). The synthetic gradients keep their sizes and batch mean
      and lose what they say about each stream's own state: does DNI gain
      from the per-stream prediction or from any gradient of that size?
    shuffle_target: with ``sg_shuffle``, whether ``M``'s target is the
      whole control's too (True, the default: ``∂J_b/∂h(s₀)`` of the
      shuffled objective above). False keeps the shuffle to the core's
      update: ``M`` regresses onto the target plain DNI's ``M`` would get
      at the same parameters and state (stream ``b``'s own prediction at
      the window's end in every use), so only the core loses the
      per-stream prediction. It costs a second ``window_grads`` of the
      window.
    sg_warmup: 0 (the default): λ from the first window. ``n > 0``: λ grows
      linearly from 0 over the first ``n`` windows (window ``k``, counted
      from 0, uses ``λ·min(1, k/n)``, in the core's synthetic gradient and
      in the bootstrapped target alike; ``k`` is ``state.step``, counted
      from the run's start), so the core's first windows are close to
      truncated BPTT (window 0 is exactly it, with dni_aux's Aux head
      trained towards 0) while ``M`` learns from their targets
      (docs/results.md: at 1024 units λ = 0.1 from the first window keeps
      most cells saturated after the early transient).
  """
  core: Any
  loss_fn: LossFn
  synthesizer: nn.Module | None = None
  sg_scale: float = 0.1
  aux_weight: float = 1.0
  bootstrap: str = "scaled"
  oracle_end_grad: bool = False
  target_decay: float = 0.0
  synth_steps: int = 1
  sg_shuffle: bool = False
  shuffle_target: bool = True
  sg_warmup: int = 0

  @property
  def method(self) -> str:
    if self.synthesizer is None:
      return "bptt"
    return "dni_aux" if self.core.with_aux else "dni"


def build(method: str, core: Any, loss_fn: LossFn,
          synthesizer: nn.Module, sg_scale: float = 0.1,
          aux_weight: float = 1.0, sg_on: str | None = None,
          bootstrap: str = "scaled",
          target_decay: float = 0.0, synth_steps: int = 1,
          sg_shuffle: bool = False,
          shuffle_target: bool = True, sg_warmup: int = 0) -> RecurrentDNI:
  """The ``RecurrentDNI`` of a method name: bptt, dni or dni_aux.

  ``sg_on`` ("h", "ch" or "h_ch"), if given, replaces the core's ``sg_on``;
  ``bootstrap``, ``target_decay``, ``synth_steps``, ``sg_shuffle``,
  ``shuffle_target``, ``sg_warmup``: ``RecurrentDNI``'s.
  """
  if method not in METHODS:
    raise ValueError(f"unknown recurrent method {method!r}; choose one of "
                     f"{METHODS}")
  if bootstrap not in BOOTSTRAPS:
    raise ValueError(f"unknown bootstrap {bootstrap!r}; choose one of "
                     f"{BOOTSTRAPS}")
  if not 0.0 <= target_decay < 1.0:
    raise ValueError(f"target_decay must be in [0, 1), got {target_decay}")
  if synth_steps < 1:
    raise ValueError(f"synth_steps must be at least 1, got {synth_steps}")
  if sg_warmup < 0:
    raise ValueError(f"sg_warmup must be at least 0, got {sg_warmup}")
  core = dataclasses.replace(core, with_aux=method == "dni_aux")
  if sg_on is not None:
    core = dataclasses.replace(core, sg_on=sg_on)
  return RecurrentDNI(core, loss_fn,
                      None if method == "bptt" else synthesizer,
                      sg_scale, aux_weight, bootstrap,
                      target_decay=target_decay, synth_steps=synth_steps,
                      sg_shuffle=sg_shuffle, shuffle_target=shuffle_target,
                      sg_warmup=sg_warmup)


@flax.struct.dataclass
class RecurrentTrainState:
  """Everything that changes while training a recurrent core.

  Attributes:
    step: windows trained so far.
    rng: base PRNG key; window ``n`` uses ``fold_in(rng, n)``.
    params, opt_state: the core's parameters (readout and Aux head included)
      and optimiser state.
    synth_params, synth_state, synth_opt_state: the synthesizer's (``None``
      for bptt).
    synth_target_params: the target network's parameters (``None`` unless
      ``RecurrentDNI.target_decay > 0``).
    carry: the state ``[B, S]`` carried into the next window.
    task: the task's own state (e.g. the curriculum of Copy).
    sg_scale: λ (a float32 scalar, a hyper-parameter kept in the state so
      the members of a sweep may differ in it).
  """
  step: jax.Array
  rng: jax.Array
  params: Any
  opt_state: Any
  carry: jax.Array
  task: Any
  synth_params: Any = None
  synth_state: Any = None
  synth_opt_state: Any = None
  sg_scale: jax.Array = 0.1
  synth_target_params: Any = None


def init_train_state(rdni: RecurrentDNI, optimizers: Optimizers,
                     rng: jax.Array, batch_size: int, example_x: jax.Array,
                     task_state: Any = None) -> RecurrentTrainState:
  """Initial state: parameters, optimiser states, zero carry.

  Args:
    rdni: the run's static parts.
    optimizers: core and synthesizer transformations.
    rng: PRNG key.
    batch_size: number of parallel streams.
    example_x: one time step's input ``[B]`` (tokens) or ``[B, D]``.
    task_state: the task's initial state.
  """
  core_rng, synth_rng, step_rng = jax.random.split(rng, 3)
  params = recurrent.init(rdni.core, core_rng, batch_size, example_x)
  carry = rdni.core.initial_state(batch_size)
  state = RecurrentTrainState(
      step=jnp.zeros((), jnp.int32), rng=step_rng, params=params,
      opt_state=optimizers.stage.init(params), carry=carry, task=task_state,
      sg_scale=jnp.asarray(rdni.sg_scale, jnp.float32))
  if rdni.synthesizer is not None:
    if optimizers.synth is None:
      raise ValueError("dni/dni_aux need Optimizers(synth=...)")
    sg = _interface(rdni, optimizers, rdni.sg_scale)
    state = interface.with_state(state,
                                 sg.init(synth_rng, sg_input(rdni, carry)))
    if rdni.target_decay > 0:
      # A copy: the jitted step donates the state, so no two leaves may
      # share a buffer.
      state = state.replace(synth_target_params=jax.tree_util.tree_map(
          jnp.copy, state.synth_params))
  return state


def _interface(rdni: RecurrentDNI, optimizers: Optimizers | None,
               sg_scale: Any):
  return interface.Interface(rdni.synthesizer,
                             optimizers.synth if optimizers else None,
                             sg_scale)


def sg_input(rdni: RecurrentDNI, state_BxS: jax.Array) -> jax.Array:
  """What the synthesizer reads of a state (the core's ``sg_input``;
  ``sg_part`` for a core without one)."""
  read = getattr(rdni.core, "sg_input", None)
  return sg_part(rdni, state_BxS) if read is None else read(state_BxS)


def sg_part(rdni: RecurrentDNI, state_BxS: jax.Array) -> jax.Array:
  """The part of a state the synthetic gradient sits on (the core's
  ``sg_part``; the whole state for a core without one)."""
  part = getattr(rdni.core, "sg_part", None)
  return state_BxS if part is None else part(state_BxS)


def _end_delta(rdni: RecurrentDNI, synth_params, synth_state,
               end_BxS: jax.Array, scale, units: Any = 1) -> jax.Array:
  """``scale·M(h(s_T)) / units``: the synthesizer's prediction at a window's
  end (evaluation mode), scaled; rolled across the batch under
  ``sg_shuffle``."""
  sg = _interface(rdni, None, scale)
  delta = sg.delta(sg.predict(
      interface.InterfaceState(synth_params, synth_state, None),
      sg_input(rdni, end_BxS), train=False).value, units)
  return jnp.roll(delta, 1, axis=0) if rdni.sg_shuffle else delta


def window_objective(rdni: RecurrentDNI, params, start_BxS: jax.Array,
                     batch: dict, synth_params=None, synth_state=None,
                     sg_scale=None):
  """``J`` of one window and what the step reports.

  Args:
    rdni: static parts.
    params: the core's parameters (differentiated).
    start_BxS: the window's start state (differentiated: ``∂J/∂s₀`` is the
      synthesizer's target).
    batch: ``inputs`` ``[B, T(, D)]`` plus what ``loss_fn`` reads.
    synth_params, synth_state: the synthesizer's (constants here).
    sg_scale: λ (the train state's; ``None``: ``rdni.sg_scale``).

  Returns:
    ``(J, (end_state, metrics))``.
  """
  end, states, logits = recurrent.unroll(rdni.core, params, start_BxS,
                                   batch["inputs"])
  task_B, metrics = rdni.loss_fn(logits, batch)
  objective_B = task_B
  if rdni.synthesizer is not None:
    end_sg = sg_part(rdni, end)
    if rdni.oracle_end_grad:
      sg_B = batch["end_grad"]
    else:
      sg_B = _end_delta(rdni, synth_params, synth_state, end,
                        rdni.sg_scale if sg_scale is None else sg_scale)
    sg_B = jax.lax.stop_gradient(sg_B)
    objective_B = objective_B + jnp.sum(sg_B * end_sg, axis=-1)
    if rdni.core.with_aux:
      pred = rdni.core.apply(params, states, method="predict_aux")
      aux_B = jnp.mean(jnp.sum(jnp.square(pred - sg_B[:, None]), -1), -1)
      objective_B = objective_B + rdni.aux_weight * aux_B
      metrics["aux_loss"] = aux_B.mean()
    metrics["sg_norm"] = jnp.sqrt(jnp.sum(jnp.square(sg_B), -1)).mean()
  metrics["loss"] = task_B.mean() / logits.shape[1]  # per time step
  # The carried state's size: what the synthetic term can inflate, since
  # the core can lower ⟨λ·M(s_T), s_T⟩ without bound by growing s_T
  # against M (an LSTM's cell state is unbounded).
  metrics["state_norm"] = jnp.sqrt(jnp.sum(jnp.square(end), -1)).mean()
  return objective_B.mean(), (end, metrics)


def window_grads(rdni: RecurrentDNI, params, start_BxS: jax.Array,
                 batch: dict, synth_params=None, synth_state=None,
                 sg_scale=None, target_params=None):
  """``(∂J/∂θ, per-example target, end_state, metrics)`` of one window.

  The target is ``∂J_b/∂h(s₀)`` (``h(s₀)``: the part of the start state the
  synthetic gradient sits on; the rest of ``∂J_b/∂s₀`` is truncated at the
  boundary); with ``bootstrap="unscaled"``, that of ``J_b`` with
  ``M(h(s_T))`` in place of ``λ·M(h(s_T))`` in its linear term (the Aux
  head's target stays ``λ·M``); with ``target_params`` (the target
  network's), ``M̄(h(s_T))`` in place of ``M(h(s_T))`` there; under
  ``sg_shuffle`` without ``shuffle_target``, the target of DNI itself.
  """
  if rdni.sg_shuffle and not rdni.shuffle_target:
    args = (params, start_BxS, batch, synth_params, synth_state, sg_scale,
            target_params)
    param_grads, _, end, metrics = window_grads(
        dataclasses.replace(rdni, shuffle_target=True), *args)
    _, target, _, _ = window_grads(
        dataclasses.replace(rdni, sg_shuffle=False), *args)
    return param_grads, target, end, metrics
  batch_size = start_BxS.shape[0]
  if (rdni.synthesizer is None or rdni.oracle_end_grad
      or (rdni.bootstrap == "scaled" and target_params is None)):
    grad_fn = jax.grad(functools.partial(window_objective, rdni),
                       argnums=(0, 1), has_aux=True)
    (param_grads, start_grads), (end, metrics) = grad_fn(
        params, start_BxS, batch, synth_params, synth_state, sg_scale)
    return param_grads, batch_size * sg_part(rdni, start_grads), end, metrics

  # J is linear in the end term, so the target adds the vjp of the
  # difference between the bootstrapped end gradient (unscaled: M(h(s_T)),
  # so (1 − λ)·M(h(s_T)) is added; target network: c·M̄(h(s_T)), c = λ or 1)
  # and λ·M(h(s_T)) through the window to ∂J/∂h(s₀). One forward pass,
  # pulled back twice.
  def objective_and_end(p, s):
    j, (end, metrics) = window_objective(rdni, p, s, batch, synth_params,
                                         synth_state, sg_scale)
    return (j, sg_part(rdni, end)), (end, metrics)

  (j, end_sg), pull, (end, metrics) = jax.vjp(
      objective_and_end, params, start_BxS, has_aux=True)
  param_grads, start_grads = pull((jnp.ones_like(j), jnp.zeros_like(end_sg)))
  scale = rdni.sg_scale if sg_scale is None else sg_scale
  if target_params is None:
    extra_B = _end_delta(rdni, synth_params, synth_state, end, 1.0 - scale,
                         batch_size)
  else:
    boot = scale if rdni.bootstrap == "scaled" else 1.0
    # M̄ reads M's synth_state (the library's synthesizers keep none).
    extra_B = (_end_delta(rdni, target_params, synth_state, end, boot,
                          batch_size)
               - _end_delta(rdni, synth_params, synth_state, end, scale,
                            batch_size))
  extra_B = jax.lax.stop_gradient(extra_B)
  start_grads = start_grads + pull((jnp.zeros_like(j), extra_B))[1]
  return param_grads, batch_size * sg_part(rdni, start_grads), end, metrics


def warmed_scale(rdni: RecurrentDNI, state: RecurrentTrainState):
  """The λ window ``state.step`` trains with: ``state.sg_scale``, scaled by
  ``min(1, step / sg_warmup)`` during a warm-up."""
  if not rdni.sg_warmup:
    return state.sg_scale
  return state.sg_scale * jnp.minimum(
      1.0, state.step.astype(jnp.float32) / rdni.sg_warmup)


def train_step(state: RecurrentTrainState, batch: dict, *,
               rdni: RecurrentDNI, optimizers: Optimizers):
  """One window: update the core (and synthesizer); carry the state on.

  Returns:
    ``(new_state, metrics)``: ``loss`` (task loss per time step),
    ``state_norm`` (the mean L2 norm of the window's end state, the carry),
    the task's metrics and, with a synthesizer, ``synth_loss``, ``sg_norm``,
    ``target_norm`` (the mean L2 norm of the per-example target) and
    ``synth_loss_ratio``: ``synth_loss`` over the loss of predicting zero,
    mean ‖t‖², on the same window before ``M`` is updated on it (1: ``M``
    predicts nothing of a target it has not seen; a growing ``synth_loss``
    at a flat ratio is its targets' growth, not a worse fit).
  """
  start = jax.lax.stop_gradient(state.carry)
  scale = warmed_scale(rdni, state)
  grads, target, end, metrics = window_grads(
      rdni, state.params, start, batch, state.synth_params, state.synth_state,
      scale, state.synth_target_params)
  params, opt_state = interface.apply_update(optimizers.stage, grads,
                                             state.opt_state, state.params)
  new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                      carry=jax.lax.stop_gradient(end))
  if rdni.synthesizer is not None:
    sg = _interface(rdni, optimizers, scale)
    sg_state = interface.state_of(state)
    h0 = sg_input(rdni, start)
    sg_state, metrics["synth_loss"] = sg.regress(
        sg_state, sg.predict(sg_state, h0), target)
    if rdni.synth_steps > 1:
      sg_state = jax.lax.fori_loop(
          1, rdni.synth_steps,
          lambda _, st: sg.regress(st, sg.predict(st, h0), target)[0],
          sg_state)
    # The regression target's size, to read the synthesizer's loss against
    # (its targets grow as the core learns longer dependencies).
    sq_norms = jnp.sum(jnp.square(target), -1)
    metrics["target_norm"] = jnp.sqrt(sq_norms).mean()
    metrics["synth_loss_ratio"] = metrics["synth_loss"] / jnp.maximum(
        sq_norms.mean(), jnp.finfo(sq_norms.dtype).tiny)
    new = interface.with_state(new, sg_state)
    if state.synth_target_params is not None:
      new = new.replace(synth_target_params=optax.incremental_update(
          sg_state.params, state.synth_target_params,
          1.0 - rdni.target_decay))
  return new, metrics


def synthesizer_fit(state: RecurrentTrainState, batch: dict, *,
                    rdni: RecurrentDNI, optimizers: Optimizers) -> dict:
  """How well ``M`` predicts its regression target on one window.

  Per example, at the window's start state: ``mse`` = mean ‖M(h₀) − t‖²
  (the ``synth_loss`` a train step logs), ``target_sq`` = mean ‖t‖² (the
  loss of predicting zero; ``mse / target_sq`` is the fraction of the
  target's second moment left unexplained) and ``cosine``, the mean cosine
  of ``M(h₀)`` and ``t``. Updates nothing.
  """
  start = jax.lax.stop_gradient(state.carry)
  scale = warmed_scale(rdni, state)
  _, target, _, _ = window_grads(
      rdni, state.params, start, batch, state.synth_params, state.synth_state,
      scale, state.synth_target_params)
  sg = _interface(rdni, optimizers, scale)
  pred = sg.predict(interface.state_of(state), sg_input(rdni, start)).value
  norms = jnp.linalg.norm(pred, axis=-1) * jnp.linalg.norm(target, axis=-1)
  return {"mse": jnp.mean(jnp.sum(jnp.square(pred - target), -1)),
          "target_sq": jnp.mean(jnp.sum(jnp.square(target), -1)),
          "cosine": jnp.mean(jnp.sum(pred * target, -1) /
                             jnp.maximum(norms, 1e-12))}


def task_step(state: RecurrentTrainState, data, *, rdni: RecurrentDNI,
              optimizers: Optimizers, task):
  """One window of a task: its batch, ``train_step``, the task's update.

  The window's batch is made on the device by ``task.window(task_state,
  data, step)``; ``task.update`` advances the task's own state (e.g. the
  curriculum) from the window's metrics. Pure; ``make_train_step`` jits it.
  """
  batch = task.window(state.task, data, state.step)
  new, metrics = train_step(state, batch, rdni=rdni, optimizers=optimizers)
  task_state, task_metrics = task.update(state.task, metrics, state.step)
  return new.replace(task=task_state), {**metrics, **task_metrics}


def make_train_step(rdni: RecurrentDNI, optimizers: Optimizers, task):
  """The jitted step of a task: ``step(state, data) -> (state, metrics)``.

  The window's batch is made on the device by ``task.window(task_state,
  data, step)`` (``data``: the task's arrays, e.g. a corpus, passed as an
  argument rather than baked into the compiled code), and ``task.update``
  advances the task's own state (e.g. the curriculum) from the window's
  metrics. The state is donated.
  """
  return jax.jit(functools.partial(task_step, rdni=rdni,
                                   optimizers=optimizers, task=task),
                 donate_argnums=0)


def multi_task_step(state: RecurrentTrainState, data, *, rdni: RecurrentDNI,
                    optimizers: Optimizers, task, windows: int):
  """``windows`` consecutive windows of ``task_step`` in one ``lax.scan``.

  The same updates as ``windows`` calls of ``task_step``, without a host
  round trip between windows. Returns the state after the last window and
  every metric with a trailing axis of ``windows`` entries.
  """
  def body(s, _):
    return task_step(s, data, rdni=rdni, optimizers=optimizers, task=task)
  state, metrics = jax.lax.scan(body, state, None, length=windows)
  # Scan stacks along a leading axis; the loop reads a trailing one (so a
  # vmapped group's metrics are [members, windows]).
  return state, jax.tree_util.tree_map(lambda m: jnp.moveaxis(m, 0, -1),
                                       metrics)


def make_multi_step(rdni: RecurrentDNI, optimizers: Optimizers, task,
                    windows: int):
  """``multi_task_step`` jitted, the state donated:
  ``step(state, data) -> (state, metrics [..., windows])``."""
  return jax.jit(functools.partial(multi_task_step, rdni=rdni,
                                   optimizers=optimizers, task=task,
                                   windows=windows),
                 donate_argnums=0)
