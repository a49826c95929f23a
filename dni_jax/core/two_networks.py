"""Two networks at two timescales: A talks to B through a synthetic gradient.

The paper's multi-network system (REFERENCE §3.2, the paper's §3.2 and
Fig. 5). Network A reads one digit per step and every ``T`` steps answers
how many of its last ``T`` digits were odd; at that step it also sends B a
*message* (a linear head on A's output ``h``, the last ``message_width``
units of A's readout). Network B ticks once per message, reads nothing else,
and after ``T`` ticks answers how many of the episode's ``T²`` digits were
3s: information only A sees, so A has to learn to send it.

One training step is one *episode* of ``T²`` digits per stream; both
networks start it from the zero state (B's task is defined on the episode,
and the digits are drawn independently, so nothing older is worth keeping).

- ``locked``: the joint system is unrolled over the ``T²`` steps and trained
  end to end by backprop through both networks; A and B update once per
  episode. A is update-locked to B.
- ``dni``: A is unrolled ``T`` steps at a time (truncated BPTT; its state
  carries over windows behind ``stop_gradient``) and updates after each
  window, ``T`` times per episode, from its own loss plus
  ``⟨stop_gradient(λ·M_w(message_w)), message_w⟩``. B runs over its ``T``
  messages and updates once per episode; its true gradient with respect to
  message ``w`` is ``M_w``'s regression target. B is unrolled over the whole
  episode, so the target is exact (no bootstrap).
- ``no_dni`` (the control): as ``dni`` without ``M``: no gradient reaches A
  from B; B learns from whatever the messages carry.

The synthetic-gradient models: ``sg_slots="each"`` keeps one model per
message slot ``w`` (the paper's figure draws one per message; the gradient of
a message depends on how many ticks B has left), ``"shared"`` one model that
also reads the slot as a one-hot context. ``M`` works in per-example units
(as in ``tbptt``): the target is the batch size times B's gradient.

Losses are softmax cross-entropies averaged over the batch, summed over a
network's answers in the window (A: one per window; B: one per episode).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from dni_jax.core import interface
from dni_jax.core import recurrent
from dni_jax.core.losses import r_squared
from dni_jax.core.train_state import Optimizers

METHODS = ("locked", "dni", "no_dni")
SG_SLOTS = ("each", "shared")
# What M reads beside the message. The paper's §3.2 does not say; its §2
# protocol is M_B(h_A, s_B, c): the message, B's state when it arrives (B
# ticks on it) and any context c available in training, such as the label.
# none: the message alone; b_state: and B's state before the message;
# label: and B's label (as cDNI); b_state_label: all of §2's.
SG_CONTEXTS = ("none", "b_state", "label", "b_state_label")
READS_B_STATE = ("b_state", "b_state_label")
READS_LABEL = ("label", "b_state_label")


@dataclasses.dataclass(frozen=True)
class TwoNetworks:
  """The static parts of a two-network run.

  Attributes:
    core_a: network A, a recurrent core (``dni_jax.core.recurrent``) reading
      digits; its readout is ``T + 1`` answer logits then the message.
    core_b: network B, a recurrent core reading messages; its readout is
      ``T² + 1`` answer logits.
    T: A answers (and sends a message) every ``T`` steps; B answers every
      ``T`` messages.
    message_width: the message's units (the last units of A's readout).
    method: one of ``METHODS``.
    synthesizer: ``M`` on a message (dni only).
    sg_scale: λ, the value a train state starts with (the steps read the
      state's ``sg_scale``).
    sg_slots: "each" (one ``M`` per message slot) or "shared" (one ``M``
      reading the slot too).
    reset_a: A starts each of its windows from the zero state (then
      truncating A at its windows loses nothing).
    sg_context: what ``M`` reads beside the message (``SG_CONTEXTS``).
    oracle: dni only, a diagnostic: A's synthetic gradient on message ``w``
      is λ times B's true gradient w.r.t. it, at the parameters and messages of
      the episode's start (what ``locked`` backpropagates), instead of
      ``M_w``'s prediction. A then waits for B: it bounds what a perfect
      synthesizer could give, it is not decoupled. ``M`` still trains.
  """
  core_a: Any
  core_b: Any
  T: int
  message_width: int
  method: str = "dni"
  synthesizer: nn.Module | None = None
  sg_scale: Any = 1.0
  sg_slots: str = "each"
  reset_a: bool = False
  sg_context: str = "none"
  oracle: bool = False
  synth_delay: int = 0

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"unknown two-network method {self.method!r}; choose "
                       f"one of {METHODS}")
    if self.sg_slots not in SG_SLOTS:
      raise ValueError(f"unknown sg_slots {self.sg_slots!r}; choose one of "
                       f"{SG_SLOTS}")
    if self.sg_context not in SG_CONTEXTS:
      raise ValueError(f"unknown sg_context {self.sg_context!r}; choose one "
                       f"of {SG_CONTEXTS}")
    if self.T < 1 or self.message_width < 1:
      raise ValueError(f"T and message_width must be >= 1, got T={self.T}, "
                       f"message_width={self.message_width}")
    if (self.method == "dni") != (self.synthesizer is not None):
      raise ValueError("dni needs a synthesizer; locked and no_dni take none")
    if self.oracle and self.method != "dni":
      raise ValueError("oracle replaces dni's synthetic gradient; it needs "
                       "method 'dni'")
    if self.synth_delay < 0 or (self.synth_delay and (
        self.method != "dni" or self.oracle)):
      raise ValueError(f"synth_delay={self.synth_delay}: a stale interface "
                       "is a whole number >= 0 of episodes, and above 0 it "
                       "needs method 'dni' with oracle off (the "
                       "synthesizers are what goes stale)")

  @property
  def episode(self) -> int:
    """A's steps per training step (``T²``)."""
    return self.T * self.T

  @property
  def a_updates_per_step(self) -> int:
    """A's updates per training step: ``T`` when decoupled, 1 when locked."""
    return 1 if self.method == "locked" else self.T


@flax.struct.dataclass
class TwoNetworksState:
  """Everything that changes.

  Attributes:
    step: episodes trained.
    a_params, a_opt_state, b_params, b_opt_state: the two networks'.
    synth_params, synth_state, synth_opt_state: the ``M``s' (dni only); with
      ``sg_slots="each"`` every leaf has a leading axis of ``T`` slots.
    sg_scale: λ (a float32 scalar, a hyper-parameter kept in the state so
      the members of a sweep may differ in it).
    seen_by_a: a stale interface (``TwoNetworks.synth_delay = d``): the
      last ``d`` values of what A reads of B's side (``b_side``), oldest
      first; A's next episode uses ``seen_by_a[0]``. ``()`` for ``d = 0``.
  """
  step: jax.Array
  a_params: Any
  a_opt_state: Any
  b_params: Any
  b_opt_state: Any
  synth_params: Any = None
  synth_state: Any = None
  synth_opt_state: Any = None
  sg_scale: jax.Array = 1.0
  seen_by_a: tuple = ()


def b_side(tn: TwoNetworks, state: TwoNetworksState) -> tuple:
  """What dni's A reads of B's side of the state: the synthesizers (and
  B's parameters, where ``M`` reads B's state)."""
  part = (state.synth_params, state.synth_state)
  if tn.sg_context in READS_B_STATE:
    part = part + (state.b_params,)
  return part


def with_b_side(state: TwoNetworksState, part: tuple) -> TwoNetworksState:
  """``state`` with B's side as ``b_side`` gave it."""
  state = state.replace(synth_params=part[0], synth_state=part[1])
  if len(part) > 2:
    state = state.replace(b_params=part[2])
  return state


def _interface(tn: TwoNetworks, optimizers: Optimizers, sg_scale: Any):
  return interface.Interface(tn.synthesizer, optimizers.synth, sg_scale)


def _context(tn: TwoNetworks, w, b_state, labels):
  """What ``M`` reads beside message ``w``: B's state before it, B's
  label one-hot, or both (``sg_context``), and for "shared" the slot's one-hot;
  concatenated, ``[B, C]``, or ``None``."""
  batch = labels.shape[0]
  parts = []
  if tn.sg_context in READS_B_STATE:
    parts.append(jax.lax.stop_gradient(b_state))
  if tn.sg_context in READS_LABEL:
    parts.append(jax.nn.one_hot(labels, tn.episode + 1))
  if tn.sg_slots == "shared":
    parts.append(jnp.broadcast_to(jax.nn.one_hot(w, tn.T), (batch, tn.T)))
  return jnp.concatenate(parts, -1) if parts else None


def init_train_state(tn: TwoNetworks, optimizers: Optimizers,
                     rng: jax.Array, batch_size: int,
                     input_size: int) -> TwoNetworksState:
  """Both networks' parameters and optimiser states (and the ``M``s')."""
  a_rng, b_rng, synth_rng = jax.random.split(rng, 3)
  a_params = recurrent.init(tn.core_a, a_rng, batch_size,
                            jnp.zeros((batch_size, input_size)))
  message = jnp.zeros((batch_size, tn.message_width))
  b_params = recurrent.init(tn.core_b, b_rng, batch_size, message)
  state = TwoNetworksState(
      step=jnp.zeros((), jnp.int32),
      a_params=a_params, a_opt_state=optimizers.stage.init(a_params),
      b_params=b_params, b_opt_state=optimizers.stage.init(b_params),
      sg_scale=jnp.asarray(tn.sg_scale, jnp.float32))
  if tn.synthesizer is None:
    return state
  if optimizers.synth is None:
    raise ValueError("dni needs Optimizers(synth=...)")
  sg = _interface(tn, optimizers, tn.sg_scale)
  context = _context(tn, 0, tn.core_b.initial_state(batch_size),
                     jnp.zeros((batch_size,), jnp.int32))
  if tn.sg_slots == "each":
    sg_state = jax.vmap(lambda r: sg.init(r, message, context))(
        jax.random.split(synth_rng, tn.T))
  else:
    sg_state = sg.init(synth_rng, message, context)
  state = interface.with_state(state, sg_state)
  # Copies: a donated state may not hold one buffer twice.
  return state.replace(seen_by_a=tuple(
      jax.tree_util.tree_map(jnp.copy, b_side(tn, state))
      for _ in range(tn.synth_delay)))


def _xent(logits, labels):
  """Per-example cross-entropy and error, ``[B]`` each."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  error = (jnp.argmax(logits, -1) != labels).astype(jnp.float32)
  return loss, error


def a_window(tn: TwoNetworks, a_params, a_start, x_BxTxD):
  """A over one window of ``T`` digits.

  Returns ``(a_end, answer_logits [B, T+1], message [B, message_width])``,
  both read from A's output after the window's last digit.
  """
  if tn.reset_a:
    a_start = jnp.zeros_like(a_start)
  a_end, _, out = recurrent.unroll(tn.core_a, a_params, a_start, x_BxTxD)
  last = out[:, -1]
  return a_end, last[:, :tn.T + 1], last[:, tn.T + 1:]


def b_answer(tn: TwoNetworks, b_params, messages_BxTxM):
  """B over its ``T`` messages from the zero state: its answer's logits."""
  batch = messages_BxTxM.shape[0]
  _, _, out = recurrent.unroll(tn.core_b, b_params,
                               tn.core_b.initial_state(batch), messages_BxTxM)
  return out[:, -1]


def _windows(tn: TwoNetworks, batch: dict):
  """``[T, B, T, D]`` digits and ``[T, B]`` A's labels, window-major."""
  b = batch["inputs"].shape[0]
  x = batch["inputs"].reshape((b, tn.T, tn.T) + batch["inputs"].shape[2:])
  return jnp.swapaxes(x, 0, 1), jnp.swapaxes(batch["a_labels"], 0, 1)


def a_episode(tn: TwoNetworks, a_params, batch: dict):
  """A over a whole episode, its state carried from window to window (as
  when locked): ``(messages [T, B, M], loss [T, B], error [T, B])``."""
  xs, ys = _windows(tn, batch)
  batch_size = ys.shape[1]

  def window(a, xy):
    a, logits, message = a_window(tn, a_params, a, xy[0])
    loss, err = _xent(logits, xy[1])
    return a, (message, loss, err)

  return jax.lax.scan(window, tn.core_a.initial_state(batch_size),
                      (xs, ys))[1]


def b_outcome(tn: TwoNetworks, b_params, messages_TxBxM, labels):
  """B's per-example loss and error, ``[B]`` each, on its ``T`` messages."""
  logits = b_answer(tn, b_params, jnp.swapaxes(messages_TxBxM, 0, 1))
  return _xent(logits, labels)


def _b_tick(tn: TwoNetworks, b_params, b_state, message_BxM):
  """B's state after it reads one message."""
  return tn.core_b.apply(b_params, b_state, message_BxM)[0]


def b_states_before(tn: TwoNetworks, b_params, messages_TxBxM):
  """B's state as each message arrives (before it reads it), ``[T, B, H]``
  (the state ``M`` reads under ``sg_context="b_state"``)."""
  def tick(b, message):
    return _b_tick(tn, b_params, b, message), b
  return jax.lax.scan(tick, tn.core_b.initial_state(messages_TxBxM.shape[1]),
                      messages_TxBxM)[1]


def locked_objective(tn: TwoNetworks, a_params, b_params, batch: dict):
  """The joint system over one episode: ``(mean over the batch of A's
  summed losses + B's loss, (a_loss, a_err, b_loss, b_err))``, ``a_*``
  ``[T, B]``, ``b_*`` ``[B]``."""
  messages, a_loss, a_err = a_episode(tn, a_params, batch)
  b_loss, b_err = b_outcome(tn, b_params, messages, batch["b_labels"])
  return (a_loss.sum(0) + b_loss).mean(), (a_loss, a_err, b_loss, b_err)


def _locked_step(state, batch, tn, optimizers):
  """One update of A and B by backprop through the whole episode."""
  (a_grads, b_grads), metric = jax.grad(
      lambda a, b: locked_objective(tn, a, b, batch), argnums=(0, 1),
      has_aux=True)(state.a_params, state.b_params)
  a_params, a_opt = interface.apply_update(
      optimizers.stage, a_grads, state.a_opt_state, state.a_params)
  b_params, b_opt = interface.apply_update(
      optimizers.stage, b_grads, state.b_opt_state, state.b_params)
  state = state.replace(a_params=a_params, a_opt_state=a_opt,
                        b_params=b_params, b_opt_state=b_opt)
  return state, _metrics(*metric)


def a_objective(tn: TwoNetworks, a_params, a_start, x_BxTxD, y_B,
                synthetic=None):
  """A's objective for one window: its loss plus ``⟨stop_gradient(δ),
  message⟩``, ``δ = synthetic(message)`` the synthetic gradient of the
  message (per-example units; ``None``: no term, as for no_dni). Returns
  ``(mean over the batch, (a_end, message, loss [B], error [B]))``."""
  a_end, logits, message = a_window(tn, a_params, a_start, x_BxTxD)
  loss, err = _xent(logits, y_B)
  obj = loss
  if synthetic is not None:
    delta = jax.lax.stop_gradient(synthetic(message))
    obj = obj + jnp.sum(delta * message, -1)
  return obj.mean(), (a_end, message, loss, err)


def _slot(tn: TwoNetworks, sg_state, w):
  """Slot ``w``'s ``InterfaceState`` (the shared one for "shared")."""
  if tn.sg_slots == "shared":
    return sg_state
  return jax.tree_util.tree_map(lambda leaf: leaf[w], sg_state)


class Sent(NamedTuple):
  """What A's phase of an episode hands B's: ``[T, B, ...]`` per window.

  Attributes:
    messages: the messages A sent (behind ``stop_gradient``).
    contexts: what each message's ``M`` read beside it (``None`` if nothing).
    a_loss, a_err: A's per-example loss and error at each answer.
  """
  messages: jax.Array
  contexts: Any
  a_loss: jax.Array
  a_err: jax.Array


def a_phase(state: TwoNetworksState, batch: dict, *, tn: TwoNetworks,
            optimizers: Optimizers) -> tuple[TwoNetworksState, Sent]:
  """A's side of a decoupled episode: ``T`` windows, an update after each
  from A's loss (plus, for dni, the synthetic gradient on its message).

  It reads nothing of B's but, with ``sg_context="b_state"`` (or
  ``"b_state_label"``), B's state as
  each message arrives. On two devices it could run while B learns from the
  last episode (``b_phase``); A would then use the synthesizers (and, with
  B's state, B's parameters) of one episode before, which ``train_step``,
  running the phases in turn, does only with ``synth_delay=1``.
  """
  xs, ys = _windows(tn, batch)
  batch_size = ys.shape[1]
  dni = tn.method == "dni"
  sg = _interface(tn, optimizers, state.sg_scale) if dni else None
  sg_state = interface.state_of(state) if dni else None
  labels = batch["b_labels"]
  oracle = _oracle(tn, state, batch) if tn.oracle else jnp.zeros(tn.T)

  def window(carry, inputs):
    a_params, a_opt, a, b = carry  # b: B's state before this message
    x, y, w, true_grad = inputs
    synthetic, context = None, None
    if dni:
      slot, context = _slot(tn, sg_state, w), _context(tn, w, b, labels)
      synthetic = lambda message: sg.delta(sg.predict(  # pylint: disable=g-long-lambda
          slot, message, context, train=False).value)
      if tn.oracle:
        synthetic = lambda message: sg.delta(true_grad)  # noqa: E731
    grads, (a_end, message, loss, err) = jax.grad(
        a_objective, argnums=1, has_aux=True)(tn, a_params, a, x, y,
                                              synthetic)
    a_params, a_opt = interface.apply_update(optimizers.stage, grads, a_opt,
                                             a_params)
    message = jax.lax.stop_gradient(message)
    if tn.sg_context in READS_B_STATE:  # B ticks on the message
      b = _b_tick(tn, state.b_params, b, message)
    return (a_params, a_opt, jax.lax.stop_gradient(a_end), b), (
        message, context, loss, err)

  (a_params, a_opt, _, _), (messages, contexts, a_loss, a_err) = (
      jax.lax.scan(window, (state.a_params, state.a_opt_state,
                            tn.core_a.initial_state(batch_size),
                            tn.core_b.initial_state(batch_size)),
                   (xs, ys, jnp.arange(tn.T), oracle)))
  return (state.replace(a_params=a_params, a_opt_state=a_opt),
          Sent(messages, contexts, a_loss, a_err))


def message_grads(tn: TwoNetworks, b_params, messages_TxBxM, labels):
  """B's true gradient w.r.t. each message, in per-example units (the
  synthesizers' targets), ``[T, B, M]``, and B's ``(loss, error)``, ``[B]``
  each."""
  def b_mean(messages):
    loss, err = b_outcome(tn, b_params, messages, labels)
    return loss.mean(), (loss, err)

  grads, outcome = jax.grad(b_mean, has_aux=True)(messages_TxBxM)
  return messages_TxBxM.shape[1] * grads, outcome


def _oracle(tn: TwoNetworks, state: TwoNetworksState, batch: dict):
  """B's true gradient w.r.t. each message A sends (its state carried from
  window to window) from the episode's start parameters: ``[T, B, M]``."""
  messages = a_episode(tn, state.a_params, batch)[0]
  return jax.lax.stop_gradient(
      message_grads(tn, state.b_params, messages, batch["b_labels"])[0])


def b_phase(state: TwoNetworksState, batch: dict, sent: Sent, *,
            tn: TwoNetworks, optimizers: Optimizers
            ) -> tuple[TwoNetworksState, dict]:
  """B's side of a decoupled episode: one update from its answer after the
  ``T`` messages; for dni each ``M_w`` regresses onto B's gradient w.r.t.
  message ``w``. Returns the state and the episode's metrics."""
  batch_size = sent.messages.shape[1]

  def b_objective(b_params, messages_TxBxM):
    loss, err = b_outcome(tn, b_params, messages_TxBxM, batch["b_labels"])
    return loss.mean(), (loss, err)

  (b_grads, grads_of_messages), (b_loss, b_err) = jax.grad(
      b_objective, argnums=(0, 1), has_aux=True)(state.b_params,
                                                 sent.messages)
  b_params, b_opt = interface.apply_update(
      optimizers.stage, b_grads, state.b_opt_state, state.b_params)
  state = state.replace(b_params=b_params, b_opt_state=b_opt)
  metrics = _metrics(sent.a_loss, sent.a_err, b_loss, b_err)
  if tn.method == "dni":
    sg = _interface(tn, optimizers, state.sg_scale)
    targets = batch_size * grads_of_messages  # per-example, [T, B, M]
    sg_state, synth_loss = _regress(tn, sg, interface.state_of(state),
                                    sent.messages, sent.contexts, targets)
    state = interface.with_state(state, sg_state)
    metrics["synth_loss"] = synth_loss.mean()
    metrics["target_norm"] = jnp.linalg.norm(targets, axis=-1).mean()
  return state, metrics


def _decoupled_step(state, batch, tn, optimizers):
  """A updates after each of its ``T`` windows; then B updates, and each
  ``M_w`` regresses onto B's gradient w.r.t. message ``w``. A stale
  interface (``state.seen_by_a``): A reads B's side as it was ``d``
  episodes before."""
  if len(state.seen_by_a) != tn.synth_delay:
    raise ValueError(f"the state holds {len(state.seen_by_a)} episodes of "
                     f"B's side for A, synth_delay is {tn.synth_delay}: "
                     "build it with init_train_state of the same TwoNetworks")
  queue = state.seen_by_a + (b_side(tn, state),)  # d = 0: B's side now
  a_side, sent = a_phase(with_b_side(state, queue[0]), batch, tn=tn,
                         optimizers=optimizers)
  state = state.replace(a_params=a_side.a_params,
                        a_opt_state=a_side.a_opt_state)
  state, metrics = b_phase(state, batch, sent, tn=tn, optimizers=optimizers)
  return state.replace(seen_by_a=queue[1:]), metrics


def _regress(tn, sg, sg_state, messages_TxBxM, contexts, targets_TxBxM):
  """Each slot's ``M`` regresses onto its message's target: ``(state, loss
  per slot [T])``. "each": the slots' models update side by side (vmap);
  "shared": one model, one update on the ``T·B`` messages as one batch (its
  loss the mean of the slots')."""
  if tn.sg_slots == "each":
    return jax.vmap(lambda st, m, c, t: sg.regress(st, sg.predict(st, m, c),
                                                   t))(
        sg_state, messages_TxBxM, contexts, targets_TxBxM)
  slots, batch = messages_TxBxM.shape[:2]
  flat = lambda x: x.reshape((slots * batch,) + x.shape[2:])  # noqa: E731
  prediction = sg.predict(sg_state, flat(messages_TxBxM), flat(contexts))
  _, grads = interface.fit(prediction, flat(targets_TxBxM))
  error = prediction.value - flat(targets_TxBxM)
  losses = jnp.sum(jnp.square(error).reshape(slots, -1), -1) / batch
  return sg.update(sg_state, grads, prediction.model_state), losses


def _metrics(a_loss, a_err, b_loss, b_err) -> dict:
  """Means over A's answers and B's."""
  return {"a_loss": a_loss.mean(), "a_error": a_err.mean(),
          "b_loss": b_loss.mean(), "b_error": b_err.mean()}


def train_step(state: TwoNetworksState, batch: dict, *, tn: TwoNetworks,
               optimizers: Optimizers) -> tuple[TwoNetworksState, dict]:
  """One training step: one episode of ``T²`` digits per stream.

  Args:
    state: the current state.
    batch: ``inputs [B, T², D]`` (A's digits), ``a_labels [B, T]`` (odd
      digits in each of A's windows) and ``b_labels [B]`` (3s in the
      episode); ``dni_jax.data.digit_stream.episodes``.
    tn: the static parts.
    optimizers: ``stage`` for both networks, ``synth`` for the ``M``s.

  Returns:
    ``(new_state, metrics)``: ``a_loss``/``a_error`` per answer of A,
    ``b_loss``/``b_error`` per answer of B, and for dni ``synth_loss`` (per
    slot, averaged) and ``target_norm`` (the mean norm of a target).
  """
  step = _locked_step if tn.method == "locked" else _decoupled_step
  state, metrics = step(state, batch, tn, optimizers)
  return state.replace(step=state.step + 1), metrics


def evaluate(tn: TwoNetworks, a_params, b_params, batch: dict,
             sg_state: Any = None) -> dict:
  """A's and B's losses and errors on held-out episodes (no update), and
  ``b_majority_error``: B's error if it always named the commonest count.
  With the synthesizers' state (``interface.state_of``; dni), also how
  well they predict B's true gradients there (``synthesizer_fit``).
  """
  messages, a_loss, a_err = a_episode(tn, a_params, batch)
  labels = batch["b_labels"]
  if sg_state is None:
    (b_loss, b_err), fit = b_outcome(tn, b_params, messages, labels), {}
  else:
    targets, (b_loss, b_err) = message_grads(tn, b_params, messages, labels)
    fit = synthesizer_fit(tn, b_params, sg_state, messages, targets, labels)
  counts = jnp.bincount(labels, length=tn.episode + 1)
  return {**_metrics(a_loss, a_err, b_loss, b_err), **fit,
          "b_majority_error": 1.0 - counts.max() / labels.size}


def synthesizer_fit(tn: TwoNetworks, b_params, sg_state, messages_TxBxM,
                    targets_TxBxM, labels) -> dict:
  """How well each ``M_w`` predicts its target (B's true gradient of
  message ``w``, from ``message_grads``) over an episode's messages.

  Returns means over the slots of ``sg_cosine`` (the cosine between
  prediction and target, averaged over the episodes) and ``sg_r2`` (1 −
  the squared error over the target's variance about its mean over the
  episodes: 0 for the best constant, 1 for a perfect fit), and each slot's
  ``sg_r2_slot<w>``: the last message's target is a function of B's state,
  the message and the label, the earlier ones' depend on messages not yet
  sent, so the slots' fits differ.
  """
  sg = interface.Interface(tn.synthesizer, None, 1.0)

  def slot(b, inputs):
    w, message, target = inputs
    p = sg.predict(_slot(tn, sg_state, w), message,
                   _context(tn, w, b, labels), train=False).value
    norms = jnp.linalg.norm(p, axis=-1) * jnp.linalg.norm(target, axis=-1)
    cosine = jnp.mean(jnp.sum(p * target, -1) / jnp.maximum(norms, 1e-12))
    return _b_tick(tn, b_params, b, message), (cosine, r_squared(p, target))

  _, (cosine, r2) = jax.lax.scan(
      slot, tn.core_b.initial_state(labels.shape[0]),
      (jnp.arange(tn.T), messages_TxBxM, targets_TxBxM))
  return {"sg_cosine": cosine.mean(), "sg_r2": r2.mean(),
          **{f"sg_r2_slot{w}": r2[w] for w in range(tn.T)}}
