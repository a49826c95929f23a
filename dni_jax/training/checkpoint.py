"""Checkpoints of the train state with Orbax's ``CheckpointManager``.

Saves are synchronous: the training step donates the state's buffers, so a
save must finish before the next step reuses them. In a run of several
processes, each process keeps its own state (``ProcessLocalCheckpointer``).
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from dni_jax.errors import CheckpointError


class Checkpointer:
  """Keeps the last ``max_to_keep`` checkpoints of a run under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False,
            create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self._manager.wait_until_finished()

  def restore_or(self, state):
    """``(state, step)``: the latest checkpoint, or ``state`` at step 0.

    Args:
      state: a freshly initialised state; gives the tree structure, shapes
        and dtypes to restore into.
    """
    step = self.latest_step()
    if step is None:
      return state, 0
    return self.restore_at(step, state), step

  def restore_at(self, step: int, state):
    """The checkpoint of ``step`` (one of the kept ones), shaped as ``state``."""
    if step not in self._manager.all_steps():
      raise CheckpointError(
          f"no checkpoint of step {step} in {self.directory} (kept: "
          f"{sorted(self._manager.all_steps())}); the members of a sweep "
          "group were saved at different steps. Rerun with --overwrite to "
          "start the sweep over.")
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
    try:
      restored = self._manager.restore(
          step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except
      first_line = (str(e).strip().splitlines() or [""])[0][:300]
      raise CheckpointError(
          f"the checkpoint of step {step} in {self.directory} cannot be "
          f"restored into this run's state ({type(e).__name__}: "
          f"{first_line}). It was made by another config or version of the "
          "code, or is damaged; it is left as it is. Choose a new --workdir, "
          "or rerun with --overwrite to delete it and start over.") from e
    return restored

  def close(self) -> None:
    self._manager.close()


class ProcessLocalCheckpointer:
  """One process's own state in a run of several processes.

  Each process of a pipeline holds different pytrees (its devices' stages),
  which Orbax's multi-process checkpointing does not cover (it saves global
  arrays, coordinated across processes; seen here: host-local arrays are
  refused, and per-process managers lose tuple structure or wait at each
  other's barriers). So each process writes its leaves to
  ``directory/<step>.npz`` (written to a temporary name, then renamed), and
  restores them into the structure and devices of a fresh state. Same
  interface as ``Checkpointer``.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.max_to_keep = max_to_keep
    os.makedirs(self.directory, exist_ok=True)

  def _steps(self) -> list[int]:
    return sorted(int(f[:-4]) for f in os.listdir(self.directory)
                  if f.endswith(".npz") and f[:-4].isdigit())

  def latest_step(self) -> int | None:
    steps = self._steps()
    return steps[-1] if steps else None

  def save(self, step: int, state) -> None:
    leaves = jax.device_get(jax.tree_util.tree_leaves(state))
    tmp = os.path.join(self.directory, f".{step}.tmp.npz")
    np.savez(tmp, **{f"{i:05d}": np.asarray(x) for i, x in enumerate(leaves)})
    os.replace(tmp, os.path.join(self.directory, f"{step}.npz"))
    for old in self._steps()[:-self.max_to_keep]:
      os.remove(os.path.join(self.directory, f"{old}.npz"))

  def restore_or(self, state):
    step = self.latest_step()
    if step is None:
      return state, 0
    path = os.path.join(self.directory, f"{step}.npz")
    leaves, treedef = jax.tree_util.tree_flatten(state)
    try:
      with np.load(path) as data:
        restored = [data[f"{i:05d}"] for i in range(len(leaves))]
      for r, leaf in zip(restored, leaves):
        if r.shape != leaf.shape or r.dtype != leaf.dtype:
          raise ValueError(f"leaf of shape {r.shape} {r.dtype} where this "
                           f"run has {leaf.shape} {leaf.dtype}")
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"the checkpoint {path} cannot be restored into this run's state "
          f"({type(e).__name__}: {str(e)[:300]}). It was made by another "
          "config, or is damaged; it is left as it is. Choose a new "
          "--workdir, or rerun with --overwrite to start over.") from e
    return jax.tree_util.tree_unflatten(treedef, [
        jax.device_put(r, leaf.sharding) for r, leaf in zip(restored, leaves)
    ]), step

  def close(self) -> None:
    pass
