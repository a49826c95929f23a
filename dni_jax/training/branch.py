"""A new run that starts from another run's checkpoint, under a changed config.

``python -m experiments.main --config=... --workdir=<new> --branch_from=<run>``
(``--branch_step=<step>``: one of the run's kept checkpoints; default its
newest complete one). The new run begins as a resume of ``<run>`` at that
step would, with the new config's hyper-parameters: its parameters,
optimiser moments and step counts, carried state and task state (e.g. a
curriculum's length) and random state are the source's (so its seed may not
change); the hyper-parameters a train state holds (λ, the learning rates)
are the new config's, and every other field acts through the code as on
any resume. So a change of λ, a learning rate,
the synthesizer's steps or a curriculum's threshold from a given point of
training is a run of its own, with its own ``config.json``, while the
source run is only read. Fields that change the state's shapes (a width, a
method, a target network) cannot branch: the checkpoint does not restore
into them, and the error names the fields that differ.

The new workdir gets the source's ``metrics.jsonl`` records up to the step
(so curves and tables read one history), a checkpoint of the branched state
at that step, and ``branch.json`` naming the source, the step and the fields
changed (other than those a resume may change, such as ``num_steps``).
Rerunning the same command resumes the branch; a branch stopped before its
checkpoint was complete is made again. TensorBoard's events start at the
branch's step.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax

from dni_jax.errors import CheckpointError
from dni_jax.errors import ConfigError
from dni_jax.errors import WorkdirError
from dni_jax.training import checkpoint as checkpoint_lib
from dni_jax.training import files
from dni_jax.training import workdir as workdir_lib
from dni_jax.training.metrics_log import read_metrics

BRANCH_FILE = workdir_lib.BRANCH_FILE


@dataclasses.dataclass(frozen=True)
class Staged:
  """A branch read from its source, not yet written anywhere."""
  source: str
  step: int
  state: Any
  extra: dict | None
  records: list[dict]
  changed: list[str]


def record(workdir: str) -> dict | None:
  """The ``branch.json`` of ``workdir``, or ``None``."""
  try:
    with open(os.path.join(workdir, BRANCH_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _same(a: str, b: str) -> bool:
  return os.path.realpath(a) == os.path.realpath(b)


def complete_steps(workdir: str) -> list[int]:
  """The steps of ``workdir/checkpoints`` whose save ended."""
  return checkpoint_lib.finished_steps(os.path.join(workdir, "checkpoints"))


def needed(workdir: str, config, source: str, step: int | None,
           overwrite: bool) -> bool:
  """Whether ``workdir`` is to be branched from ``source`` now.

  No: it holds a complete checkpoint of that branch, at ``step`` if one is
  given (the run resumes, or with ``overwrite`` and another config is
  branched again). Yes: it holds no run, or a branch from ``source`` cut
  short before its checkpoint, or any run with ``overwrite``. Otherwise a
  ``WorkdirError``, and nothing is written.
  """
  if _same(workdir, source):
    raise WorkdirError(
        f"--branch_from={source} is --workdir itself; a branch is a new run "
        "in a new --workdir (the source is only read).")
  mine = record(workdir)
  ours = mine is not None and _same(mine.get("source", ""), source)
  if ours and complete_steps(workdir):
    other_step = step is not None and step != mine.get("step")
    if overwrite:
      other_config = bool(workdir_lib.difference(
          os.path.join(workdir, workdir_lib.CONFIG_FILE), config)[0])
      return other_step or other_config
    if other_step:
      raise WorkdirError(
          f"--workdir={workdir} holds the branch of {source} at step "
          f"{mine.get('step')}, not at --branch_step={step}; it is left as "
          "it is. Rerun without --branch_step to resume it, or choose a new "
          "--workdir for the branch at that step.")
    return False
  if ours:  # stopped before its checkpoint: made again
    return True
  if not workdir_lib.has_run(workdir) or overwrite:
    workdir_lib.check(workdir, config, overwrite)  # e.g. a sweep's folder
    return True
  from_what = (f"a branch of {mine.get('source')}" if mine
               else "a run of its own")
  raise WorkdirError(
      f"--workdir={workdir} already holds {from_what}, and --branch_from="
      f"{source} starts a new one. It is left as it is. Choose a new "
      "--workdir for the branch, or rerun with --overwrite to delete that "
      "run and branch there.")


def _stopped(workdir: str) -> bool:
  """Whether ``workdir`` holds a branch without a complete checkpoint."""
  return record(workdir) is not None and not complete_steps(workdir)


def check_unfinished(workdir: str, overwrite: bool) -> bool:
  """Whether ``workdir`` holds a branch stopped before its first checkpoint
  was complete (only its ``branch.json`` names what it is). Without
  ``overwrite`` that is a ``WorkdirError``, and nothing is written: a run
  trained from scratch there would be called a branch by that
  ``branch.json``."""
  if not _stopped(workdir):
    return False
  mine = record(workdir)
  if not overwrite:
    raise WorkdirError(
        f"--workdir={workdir} holds a branch of {mine.get('source')} at "
        f"step {mine.get('step')} that was stopped before its first "
        "checkpoint was saved. Rerun the branch's command (python -m "
        f"experiments.main --config=<the branch's config> --workdir="
        f"{workdir} --branch_from={mine.get('source')} --branch_step="
        f"{mine.get('step')}) to make it again, or --overwrite to start "
        "over from scratch there.")
  return True


def clear_unfinished(workdir: str, overwrite: bool) -> None:
  """A run that is not a branch, before ``workdir_lib.prepare``: refuses
  a branch stopped before its first checkpoint (``check_unfinished``) or,
  with ``overwrite``, deletes it."""
  if check_unfinished(workdir, overwrite):
    workdir_lib.overwrite_run(workdir, "a branch stopped before its first "
                              "checkpoint")


def prepare(loop, config, workdir: str, branch_from, overwrite: bool):
  """Before ``workdir_lib.prepare``: the branch to write into ``workdir``
  (claimed there by ``branch.json``), or ``None`` where there is none to
  make. ``branch_from``: ``(source, step)`` or ``None`` (then
  ``clear_unfinished``).
  """
  if not branch_from:
    clear_unfinished(workdir, overwrite)
    return None
  if not needed(workdir, config, *branch_from, overwrite):
    return None
  staged = stage(loop, config, *branch_from)  # writes nothing
  if workdir_lib.has_run(workdir):
    if overwrite and not _stopped(workdir):
      workdir_lib.overwrite_run(workdir, f"replaced by a branch of "
                                f"{branch_from[0]}")
    else:  # a branch stopped before its checkpoint: made again
      workdir_lib.clear(workdir)
  claim(staged, workdir)
  return staged


def stage(loop, config, source: str, step: int | None) -> Staged:
  """Reads ``source``'s checkpoint into ``loop``'s state with ``config``'s
  hyper-parameters; writes nothing.

  Raises:
    WorkdirError: ``source`` is not one run's folder.
    CheckpointError: no such checkpoint, or it does not restore into the
      state ``config`` makes (the error names the fields that differ).
  """
  if not os.path.isfile(os.path.join(source, workdir_lib.CONFIG_FILE)):
    raise WorkdirError(
        f"--branch_from={source} is not a run: it has no "
        f"{workdir_lib.CONFIG_FILE}. Give the --workdir of one run (a "
        "comparison's or a sweep's runs are its folders, e.g. "
        f"{source}/<method> or {source}/seed=0).")
  changed, _ = workdir_lib.difference(
      os.path.join(source, workdir_lib.CONFIG_FILE), config)
  fresh = loop.init()
  directory = os.path.join(source, "checkpoints")
  missing = (f"--branch_from={source} holds no complete checkpoint to "
             "branch from; train it further first (a checkpoint is saved "
             "every config.checkpoint_every steps).")
  if "seed" in changed:
    raise ConfigError(
        "--branch_from keeps the source's seed (its random state is in the "
        "checkpoint), and this config changes seed; give the source's seed, "
        "or start a new run for another seed.")
  try:
    state, step = checkpoint_lib.restore_newest_complete(
        directory, fresh, missing, step=step)
  except CheckpointError as e:
    if str(e) == missing or "no complete checkpoint of step" in str(e):
      raise
    if ("cannot be restored into this run's state" not in str(e)
        or not changed):  # the same config: the checkpoint is damaged
      raise CheckpointError(
          f"--branch_from={source}: {e} To branch from another of its "
          "checkpoints, give --branch_step=<step> (its checkpoints: "
          f"{complete_steps(source)}). Nothing was written.") from e
    cause = e.__cause__
    detail = (str(cause).strip().splitlines() or [""])[0][:300]
    raise CheckpointError(
        f"--branch_from={source}: its checkpoint does not restore into the "
        f"state this config makes ({type(cause).__name__}: {detail}). A "
        "branch may change what the code reads (λ, learning rates, the "
        "synthesizer's steps, the data's settings), not the state's shapes; "
        "this config differs from the source's in "
        f"{', '.join(changed) or 'no field'}. Nothing was written.") from e
  extra = checkpoint_lib.saved_extra(directory, step)
  records = [r for r in read_metrics(os.path.join(source, "metrics.jsonl"))
             if r["step"] <= step]
  return Staged(source, step,
                checkpoint_lib.with_hyperparameters(state, fresh), extra,
                records, changed)


def claim(staged: Staged, workdir: str) -> None:
  """Writes ``branch.json``, before anything else of the branch: a kill
  from here until its checkpoint is complete leaves a branch that the same
  command makes again."""
  files.write_atomic(os.path.join(workdir, BRANCH_FILE), json.dumps(
      {"source": os.path.abspath(staged.source), "step": staged.step,
       "changed": staged.changed}, indent=2))


def write(staged: Staged, workdir: str, checkpointer) -> None:
  """The branch's metrics, then its checkpoint (after ``claim``)."""
  files.write_atomic(os.path.join(workdir, "metrics.jsonl"),
                     "".join(json.dumps(r) + "\n" for r in staged.records))
  checkpointer.save(staged.step, jax.device_put(staged.state),
                    extra=staged.extra)
  print(f"branched from {staged.source} at step {staged.step}"
        + (f" (changed: {', '.join(staged.changed)})" if staged.changed
           else " (same config)"), flush=True)
