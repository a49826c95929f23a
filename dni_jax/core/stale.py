"""A stale interface's history: the synthesizers of the last ``d`` steps.

``TrainState.synth_history`` (delay ``d`` > 0) is a dict of two trees
shaped as ``synth_params``:

- ``ring``: every leaf stacked ``d`` times on a leading axis. After step
  ``s`` slot ``s % d`` holds the synthesizers of step ``s`` (as they were
  before its update), so the ring holds those of the last ``d`` steps (the
  initial ones before step 0).
- ``oldest``: a copy of the slot the next step ``s`` reads, the
  synthesizers of step ``s - d``: the stages take their synthetic
  gradients from it.

Each step writes one slot and copies one out, so a step costs the same at
every ``d`` (a queue shifted by one each step copies all ``d``). The copy
is taken *after* the write, from the written ring: XLA updates the ring in
place only if nothing reads it before the write (a slot read before it made
XLA copy the whole ring, twice, every step).

The layout before the ring, a tuple of ``d`` copies oldest first, is still
read from checkpoints (``from_queue``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np


def init(synth_params, d: int):
  """The history at step 0: ``d`` copies of ``synth_params`` (``()`` for
  ``d = 0`` or a network without synthesizer parameters)."""
  if not d or not jax.tree_util.tree_leaves(synth_params):
    return ()
  return {"ring": jax.tree_util.tree_map(
              lambda x: jnp.repeat(jnp.asarray(x)[None], d, axis=0),
              synth_params),
          # a copy: a donated state may not hold one buffer twice
          "oldest": jax.tree_util.tree_map(jnp.copy, synth_params)}


def delay(history) -> int:
  """``d``: the number of slots (0 for ``()``)."""
  leaves = jax.tree_util.tree_leaves(history["ring"] if history else ())
  return leaves[0].shape[0] if leaves else 0


def oldest(history):
  """The synthesizers of ``d`` steps before: those the stages use now."""
  return history["oldest"]


def push(history, step, synth_params):
  """``history`` after ``step``: ``synth_params`` (the synthesizers of
  ``step``, before its update) in slot ``step % d``, and the copy of the
  slot step ``step + 1`` reads."""
  d = delay(history)
  ring = jax.tree_util.tree_map(
      lambda h, p: lax.dynamic_update_index_in_dim(h, p.astype(h.dtype),
                                                   step % d, 0),
      history["ring"], synth_params)
  return {"ring": ring, "oldest": jax.tree_util.tree_map(
      lambda h: lax.dynamic_index_in_dim(h, (step + 1) % d, keepdims=False),
      ring)}


def select(history, boundaries: slice):
  """The history of the synthesizers of ``boundaries`` (a device's)."""
  if not history:
    return ()
  part = {k: v[boundaries] for k, v in history.items()}
  return part if jax.tree_util.tree_leaves(part) else ()


def from_queue(queue: tuple, step):
  """The history of a queue (``d`` copies of the synthesizers, oldest
  first, the layout of checkpoints before the ring) before ``step`` (a
  scalar: checkpoints hold one run's state, a sweep's members apart)."""
  if not jax.tree_util.tree_leaves(queue):
    return ()
  shift = int(np.asarray(step)) % len(queue)
  ring = jax.tree_util.tree_map(
      lambda *slots: jnp.roll(jnp.stack(slots), shift, axis=0), *queue)
  return {"ring": ring,
          "oldest": jax.tree_util.tree_map(jnp.copy, queue[0])}


def to_queue(history, step) -> tuple:
  """The inverse of ``from_queue``: the ``d`` slots oldest first."""
  d = delay(history)
  if not d:
    return ()
  shift = int(np.asarray(step)) % d
  rolled = jax.tree_util.tree_map(lambda h: jnp.roll(h, -shift, axis=0),
                                  history["ring"])
  return tuple(jax.tree_util.tree_map(lambda h, i=i: h[i], rolled)
               for i in range(d))
