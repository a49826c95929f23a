"""Stochastic (asynchronous) updates (the paper's §3.3; docs/method.md).

At each step every stage applies its update only with probability ``p``
(one value, or one per stage), independently of the others. The other units
follow the stage that makes their target: the synthesizer ``M_b`` at the
boundary after stage ``b`` regresses exactly when stage ``b+1`` does its
backward pass (that pass, or the loss for the last boundary, makes ``M_b``'s
target), and complete unlock's input model ``I_b ≈ h_b`` exactly when stage
``b`` runs (its output is ``I_b``'s target).

- The ordinary step: a stage whose coin is tails still runs forward (its
  BatchNorm statistics update); only its parameters and optimiser state,
  and those of the synthesizer below it, are held back.
- A unit held back keeps its optimiser state except the clock of its
  learning-rate schedule (``optax``'s ``ScaleByScheduleState``, and the
  count and hyper-parameter schedules of ``inject_hyperparams``' state),
  which advances with every step: a schedule's boundaries are global steps
  for every unit, as for the locked network (``schedule_clock="steps"``;
  with "updates" each unit's schedule counts its own updates). Adam's own
  count (its bias correction) counts the unit's updates only.
- Complete unlock (``busy=True``): a stage whose coin is tails is *busy*: it
  runs neither forward nor backward, so its parameters, optimiser state and
  mutable state stay as they were, and so do those of the synthesizer below
  it and of its own input model, which get no target that step, and of the
  synthesizer above it, which gets no input (it regresses at the stage's
  output; with ``synth_fit_at="input_model"`` it regresses at ``I(x)`` and
  is not held back).
  The wrapper runs the ordinary step and keeps the old values of these
  units, which is observationally the same as not running them: with
  neighbour targets no other unit reads a busy stage's output (tested with
  a busy stage's parameters set to NaN). (With ``real_chain`` targets the
  later input models' targets still pass through it.) The step's
  ``synth_loss/i`` and ``input_loss/i`` are reported for every unit, also
  for one held back, whose loss is then of work the step discards.

The coin of stage ``i`` at step ``n`` is a pure function of ``(rng, n, i)``
on a stream of its own, so a resumed run flips the same coins. Backprop
cannot update one layer without the backward pass of all later ones; its
honest counterpart is one coin for the whole network.

With every ``p`` equal to 1 nothing is masked: the step is the ordinary one,
bit for bit. A vmapped sweep whose members' ``p`` differ (a population over
``p``, as the paper's Fig. 7) passes each member's as traced values: every
member flips coins, and at ``p = 1`` they always come up heads.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

_STREAM = 0x75706461  # "upda": the coins' own stream off the state's key

# Each kind of unit's parameters, optimiser state and mutable state in a
# ``TrainState``, one entry per stage / boundary.
FIELDS = {
    "stage": ("stage_params", "stage_opt_state", "stage_state"),
    "synth": ("synth_params", "synth_opt_state", "synth_state"),
    "input": ("input_params", "input_opt_state", "input_state"),
}


def probabilities(update_prob: float | Sequence[float] | jax.Array,
                  num_stages: int) -> tuple:
  """One probability per stage from one value or a per-stage sequence.

  A ``jax.Array`` of shape ``[num_stages]`` (a member's values in a vmapped
  sweep whose members differ in them) gives its scalars; traced, they are
  not checked (each member's config was).
  """
  if isinstance(update_prob, jax.Array):
    if update_prob.shape != (num_stages,):
      raise ValueError(f"update_prob has shape {update_prob.shape} for "
                       f"{num_stages} stages; give one value per stage.")
    if not isinstance(update_prob, jax.core.Tracer) and not bool(
        ((update_prob >= 0) & (update_prob <= 1)).all()):
      raise ValueError(f"update_prob must lie in [0, 1], got {update_prob}")
    return tuple(update_prob[i] for i in range(num_stages))
  if isinstance(update_prob, (int, float)):
    probs = (float(update_prob),) * num_stages
  else:
    probs = tuple(float(p) for p in update_prob)
  if len(probs) != num_stages:
    raise ValueError(f"update_prob has {len(probs)} values for "
                     f"{num_stages} stages; give one, or one per stage.")
  if any(not 0.0 <= p <= 1.0 for p in probs):
    raise ValueError(f"update_prob must lie in [0, 1], got {probs}")
  return probs


def needs_coins(probs: Sequence) -> bool:
  """Whether a step with these probabilities flips coins: one is below 1,
  or traced (a vmapped sweep's members differ in them; a member at 1 then
  flips coins that always come up heads, and its step is the ordinary
  one's, bit for bit)."""
  return any(not isinstance(p, float) or p < 1.0 for p in probs)


def coin(rng: jax.Array, step: jax.Array, index: int, p) -> jax.Array:
  """Whether stage ``index`` updates at ``step`` (probability ``p``, a float
  or a traced scalar; heads always at ``p = 1``)."""
  key = jax.random.fold_in(jax.random.fold_in(
      jax.random.fold_in(rng, _STREAM), step), index)
  return jax.random.bernoulli(key, p)


def stage_coins(rng: jax.Array, step: jax.Array, probs: Sequence,
                one_coin: bool = False) -> tuple:
  """Every stage's coin at ``step``; ``one_coin``: stage 0's for all."""
  if one_coin:
    return (coin(rng, step, 0, probs[0]),) * len(probs)
  return tuple(coin(rng, step, i, p) for i, p in enumerate(probs))


def unit_flags(stage_flags: Sequence, busy: bool = False,
               synth_reads_output: bool = True) -> dict:
  """Each unit's flag from the stages' coins, keyed like ``FIELDS``.

  Stage ``i``: its own coin. Synthesizer ``b``: stage ``b+1``'s, whose
  backward pass makes its target; with ``busy`` and ``synth_reads_output``
  also stage ``b``'s, whose output is what it regresses at (a busy stage has
  none; with ``synth_fit_at="input_model"`` it regresses at ``I_b(x)``).
  Input model ``b``: stage ``b``'s, whose output is its target.
  """
  synth = tuple(stage_flags[1:])
  if busy and synth_reads_output:
    synth = tuple(jnp.logical_and(below, above)
                  for below, above in zip(stage_flags[:-1], synth))
  return {"stage": tuple(stage_flags), "synth": synth,
          "input": tuple(stage_flags[:-1])}


def select(flag: jax.Array, new, old):
  """``new`` where ``flag``, else ``old`` (leaf by leaf)."""
  return jax.tree_util.tree_map(lambda n, o: jnp.where(flag, n, o), new, old)


_CLOCKS = (optax.ScaleByScheduleState, optax.InjectHyperparamsState,
           optax.InjectStatefulHyperparamsState)


def advance_clocks(new, kept):
  """``kept``, an optimiser state held back, with ``new``'s schedule clocks.

  ``new`` is the state after an update and ``kept`` the same tree held back
  (partly or wholly); every ``ScaleByScheduleState``, and the count and
  hyper-parameter schedules' states of ``inject_hyperparams``' state, come
  from ``new``, everything else (the hyper-parameters' values, Adam's
  moments and count) from ``kept``. (Inside ``optax.MultiSteps`` a schedule
  advances on its emitting mini-steps only; not handled.)
  """
  def take(n, k):
    if isinstance(n, optax.ScaleByScheduleState):
      return n
    if isinstance(n, optax.InjectStatefulHyperparamsState):
      return k._replace(count=n.count,
                        hyperparams_states=n.hyperparams_states,
                        inner_state=advance_clocks(n.inner_state,
                                                   k.inner_state))
    if isinstance(n, optax.InjectHyperparamsState):
      return k._replace(count=n.count,
                        inner_state=advance_clocks(n.inner_state,
                                                   k.inner_state))
    return k
  return jax.tree_util.tree_map(
      take, new, kept, is_leaf=lambda x: isinstance(x, _CLOCKS))


def _masked(flags: Sequence, new: tuple, old: tuple) -> tuple:
  """Per unit, ``new`` where its flag is set, else ``old``."""
  if len(new) not in (0, len(flags)):
    raise ValueError(f"{len(new)} units for {len(flags)} coins")
  return tuple(select(f, n, o) for f, n, o in zip(flags, new, old))


CLOCKS = ("steps", "updates")


def check_clock(schedule_clock: str) -> None:
  """Refuses a ``schedule_clock`` that is not one of ``CLOCKS``."""
  if schedule_clock not in CLOCKS:
    raise ValueError(f"schedule_clock must be one of {CLOCKS}, got "
                     f"{schedule_clock!r}")


def wrap(step, probs: Sequence, one_coin: bool = False,
         busy: bool = False, schedule_clock: str = "steps",
         synth_reads_output: bool = True):
  """A step whose units update only when their coins say so.

  ``step(state, batch) -> (new_state, metrics)`` is the ordinary step; the
  wrapped step runs it, then keeps the old parameters and optimiser state
  of every unit whose flag (``unit_flags``) at ``state.step`` is tails.
  ``schedule_clock``: "steps", their learning-rate schedules' clocks still
  advance (``advance_clocks``), so every unit decays at the same global
  steps; "updates", each unit's schedule counts its own updates.
  ``one_coin``: one coin, stage 0's, for every stage (backprop's honest
  counterpart). ``busy``: complete unlock, where a stage whose coin is tails
  does not run at all: the mutable state of the units held back is kept
  too; ``synth_reads_output``: each synthesizer regresses at the output of
  the stage below it, so a busy stage holds it back (``unit_flags``). Adds
  ``update_rate``, the fraction of stages that updated.
  """
  check_clock(schedule_clock)

  def wrapped(state, batch):
    new, metrics = step(state, batch)
    coins = stage_coins(state.rng, state.step, probs, one_coin)
    flags = unit_flags(coins, busy, synth_reads_output)
    masked = {}
    for unit, names in FIELDS.items():
      for name in names if busy else names[:2]:
        masked[name] = _masked(flags[unit], getattr(new, name),
                               getattr(state, name))
      opt_name = names[1]
      if schedule_clock == "steps":
        masked[opt_name] = tuple(
            advance_clocks(n, k)
            for n, k in zip(getattr(new, opt_name), masked[opt_name]))
    metrics["update_rate"] = jnp.mean(jnp.stack(coins).astype(jnp.float32))
    return new.replace(**masked), metrics
  return wrapped
