"""Stochastic (asynchronous) updates (the paper's §3.3; docs/method.md).

At each step every stage, and independently its synthesizer, applies its
update only with probability ``p`` (one value, or one per stage); a stage
that does not update still runs forward. The coin of stage ``i`` at step
``n`` is a pure function of ``(rng, n, i)`` on a stream of its own, so a
resumed run flips the same coins. Backprop cannot update one layer without
the backward pass of all later ones; its honest counterpart is one coin for
the whole network.

With every ``p`` equal to 1 nothing is masked: the step is the ordinary one,
bit for bit.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

_STREAM = 0x75706461  # "upda": the coins' own stream off the state's key


def probabilities(update_prob: float | Sequence[float],
                  num_stages: int) -> tuple[float, ...]:
  """One probability per stage from one value or a per-stage sequence."""
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


def coin(rng: jax.Array, step: jax.Array, index: int, p: float) -> jax.Array:
  """Whether unit ``index`` updates at ``step`` (probability ``p``)."""
  key = jax.random.fold_in(jax.random.fold_in(
      jax.random.fold_in(rng, _STREAM), step), index)
  return jax.random.bernoulli(key, p)


def select(flag: jax.Array, new, old):
  """``new`` where ``flag``, else ``old`` (leaf by leaf)."""
  return jax.tree_util.tree_map(lambda n, o: jnp.where(flag, n, o), new, old)


# The units of a ``TrainState`` that a coin holds back, and the offset of
# their coins: stage ``i`` is unit ``i``, synthesizer ``b`` unit ``N + b``,
# input model ``b`` unit ``2N + b`` (N = the number of stages).
UNITS = (("stage_params", "stage_opt_state", 0),
         ("synth_params", "synth_opt_state", 1),
         ("input_params", "input_opt_state", 2))


def wrap(step, probs: Sequence[float], one_coin: bool = False):
  """A step whose units update only when their coins say so.

  ``step(state, batch) -> (new_state, metrics)`` is the ordinary step; the
  wrapped step runs it, then keeps the old parameters and optimiser state
  of every unit whose coin at ``state.step`` is tails (the forward pass and
  its BatchNorm statistics still happen). ``one_coin``: one coin, unit 0's,
  for every stage (backprop's honest counterpart). Adds ``update_rate``,
  the fraction of stages that updated.
  """
  num = len(probs)

  def wrapped(state, batch):
    new, metrics = step(state, batch)
    if one_coin:
      stage_flags = [coin(state.rng, state.step, 0, probs[0])] * num
    else:
      stage_flags = [coin(state.rng, state.step, i, p)
                     for i, p in enumerate(probs)]
    masked = {}
    for params, opt_state, kind in UNITS:
      flags = stage_flags if kind == 0 else [
          coin(state.rng, state.step, kind * num + b, probs[b])
          for b in range(len(getattr(new, params)))]
      for name in (params, opt_state):
        masked[name] = tuple(select(f, n, o) for f, n, o in zip(
            flags, getattr(new, name), getattr(state, name)))
    metrics["update_rate"] = jnp.mean(
        jnp.stack(stage_flags).astype(jnp.float32))
    return new.replace(**masked), metrics
  return wrapped
