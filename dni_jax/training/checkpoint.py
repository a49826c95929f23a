"""Checkpoints of the train state with Orbax's ``CheckpointManager``.

Saves are synchronous: the training step donates the state's buffers, so a
save must finish before the next step reuses them.
"""

from __future__ import annotations

import os

import jax
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
    return restored, step

  def close(self) -> None:
    self._manager.close()
