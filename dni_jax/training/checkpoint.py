"""Checkpoints of the train state with Orbax's ``CheckpointManager``.

Saves are synchronous: the training step donates the state's buffers, so a
save must finish before the next step reuses them. In a run of several
processes, each process keeps its own state (``ProcessLocalCheckpointer``).

Every checkpoint carries a digest of its arrays (sha256 per leaf, written
atomically after the arrays), checked on restore. A checkpoint that fails
its check, or cannot be read, while an older kept one restores intact is
moved aside to ``<step>.damaged`` (nothing is deleted) and the run resumes
from the older one, saying so in one line. A save killed between Orbax's
atomic commit and the digest leaves a marker (``.<step>.saving``): the run
that next opens the directory moves that step aside to
``<step>.incomplete`` and saves it again (``set_aside_incomplete``), the
final step too. A checkpoint saved before digests existed restores
unverified.

A checkpoint of the older layout, from before the hyper-parameters (λ, the
learning rates) lived in the train state, restores too: its arrays fill the
state and the hyper-parameters come from the run's config, which the
workdir's check has already found equal to the one that saved it
(``legacy_layout``, ``upgrade``). So does a stale interface's history
saved as a queue (``d`` copies oldest first, before it was a ring:
``queue_layout``, ``dni_jax.core.stale``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp

from dni_jax.core import stale
from dni_jax.errors import CheckpointError
from dni_jax.training.files import signals_deferred
from dni_jax.training.files import sync_dir as _sync_dir
from dni_jax.training.files import write_atomic

DIGEST_FILE = "dni_digest.json"


_INJECTED = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def _injected(x) -> bool:
  return isinstance(x, _INJECTED)


def _has_scale(x) -> bool:
  """A train state (any family's, or a pipeline device's) with λ in it."""
  return dataclasses.is_dataclass(x) and any(
      f.name == "sg_scale" for f in dataclasses.fields(x))


def _older(tree, injected, scale):
  """``tree`` with each ``inject_hyperparams`` state replaced by
  ``injected(it)`` and each train state's ``sg_scale`` by ``scale``, at any
  depth."""
  def one(x):
    if _injected(x):
      return injected(x)
    if _has_scale(x):
      fields = {f.name: (scale if f.name == "sg_scale" else
                         _older(getattr(x, f.name), injected, scale))
                for f in dataclasses.fields(x)}
      return x.replace(**fields)
    return x
  return jax.tree_util.tree_map(
      one, tree, is_leaf=lambda x: _injected(x) or _has_scale(x))


def legacy_layout(state):
  """``state`` as checkpoints held it before its hyper-parameters lived in
  it: each optimiser state without optax's ``inject_hyperparams`` wrapper,
  and no ``sg_scale`` (``None``) in any train state within it."""
  return _older(state, lambda x: legacy_layout(x.inner_state), None)


def _added(state) -> list[bool]:
  """Per leaf of ``state``: whether ``legacy_layout`` lacks it."""
  def mask(tree):  # a copy of ``tree``: True at the hyper-parameters
    return _older(tree, lambda x: jax.tree_util.tree_map(
        lambda _: True, x)._replace(inner_state=mask(x.inner_state)), True)
  return [bool(m) for m in jax.tree_util.tree_leaves(
      mask(jax.tree_util.tree_map(lambda _: False, state)))]


def upgrade(state, legacy_leaves):
  """``state`` with the leaves that ``legacy_layout(state)`` keeps replaced,
  in order, by ``legacy_leaves`` (a checkpoint of the older layout); the
  hyper-parameters stay ``state``'s."""
  leaves, treedef = jax.tree_util.tree_flatten(state)
  added = _added(state)
  if len(legacy_leaves) != added.count(False):
    raise ValueError(f"the checkpoint holds {len(legacy_leaves)} arrays, "
                     f"the older layout of this state has "
                     f"{added.count(False)}")
  old = iter(legacy_leaves)
  return jax.tree_util.tree_unflatten(
      treedef, [leaf if new else next(old) for leaf, new in zip(leaves, added)])


def _train_states(tree) -> list:
  """Every train state in ``tree``, at any depth."""
  return [x for x in jax.tree_util.tree_leaves(tree, is_leaf=_has_scale)
          if _has_scale(x)]


def _delay_of(tree) -> int:
  """The stale interface's delay ``d`` in ``tree`` (0: none)."""
  return max((stale.delay(getattr(x, "synth_history", ()))
              for x in _train_states(tree)), default=0)


def queue_layout(state):
  """``state`` as checkpoints held it before a stale interface's history
  was a ring: in each train state ``d`` copies, oldest first; ``d`` empty
  ones in a pipeline device's state without synthesizers."""
  d = _delay_of(state)

  def one(x):
    if not (_has_scale(x) and hasattr(x, "synth_history")):
      return x
    if x.synth_history:
      return x.replace(synth_history=stale.to_queue(x.synth_history, x.step))
    return x.replace(synth_history=((),) * d)
  return jax.tree_util.tree_map(one, state, is_leaf=_has_scale)


def from_queue_layout(state):
  """Inverse of ``queue_layout``: each history read as the ring."""
  def one(x):
    if _has_scale(x) and getattr(x, "synth_history", ()):
      return x.replace(synth_history=stale.from_queue(x.synth_history,
                                                      x.step))
    return x
  return jax.tree_util.tree_map(one, state, is_leaf=_has_scale)


# Fields a train state gained after its checkpoints were first written,
# saved only when set (not None or ()): a checkpoint of a run without them
# has no such key.
_SAVED_WHEN_SET = ("synth_target_params", "seen_by_a")


def _unset(value) -> bool:
  return value is None or (isinstance(value, tuple) and not value)


def _saved_fields(tree, with_scale):
  return [f.name for f in dataclasses.fields(tree)
          if (with_scale or f.name != "sg_scale")
          and not (f.name in _SAVED_WHEN_SET
                   and _unset(getattr(tree, f.name)))]


def _orbax_form(tree, with_scale: bool = False):
  """``tree`` with each train state as a dict of its fields, less the
  unset ``_SAVED_WHEN_SET`` and, unless ``with_scale``, ``sg_scale``: Orbax
  matches a dataclass by its fields, so a checkpoint written before a field
  existed restores into the dict that lacks it (a checkpoint of the older
  layout has no ``sg_scale``). Checkpoints are saved in this form, with
  ``sg_scale``."""
  if _has_scale(tree):
    return {name: _orbax_form(getattr(tree, name), with_scale)
            for name in _saved_fields(tree, with_scale)}
  if isinstance(tree, dict):
    return {k: _orbax_form(v, with_scale) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
    return type(tree)(_orbax_form(v, with_scale) for v in tree)
  return tree


def _from_orbax_form(template, restored, with_scale: bool = False):
  """Inverse of ``_orbax_form``, shaped as ``template``."""
  if _has_scale(template):
    return template.replace(**{
        name: _from_orbax_form(getattr(template, name), restored[name],
                               with_scale)
        for name in _saved_fields(template, with_scale)})
  if isinstance(template, dict):
    return {k: _from_orbax_form(v, restored[k], with_scale)
            for k, v in template.items()}
  if isinstance(template, (list, tuple)) and not hasattr(template, "_fields"):
    return type(template)(_from_orbax_form(t, r, with_scale)
                          for t, r in zip(template, restored))
  return restored


def _leaf_names(state) -> list[str]:
  paths, _ = jax.tree_util.tree_flatten_with_path(state)
  return [jax.tree_util.keystr(path) for path, _ in paths]


def digest(leaves) -> list[str]:
  """sha256 of each leaf's dtype, shape and bytes (host arrays)."""
  out = []
  for leaf in leaves:
    array = np.ascontiguousarray(np.asarray(leaf))
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    out.append(h.hexdigest())
  return out


def _mismatch(names, stored, restored_leaves) -> str | None:
  """Which leaves differ from the stored digest, or ``None``."""
  got = digest(restored_leaves)
  if len(stored) != len(got):
    return (f"the digest lists {len(stored)} arrays, the checkpoint holds "
            f"{len(got)}")
  bad = [n for n, a, b in zip(names, stored, got) if a != b]
  if not bad:
    return None
  return (f"{len(bad)} of {len(got)} arrays differ from the digest written "
          f"with them (first: {bad[0]})")


def _move_aside(path: str, suffix: str = "damaged") -> str:
  """Renames ``path`` to ``<path>.<suffix>`` (numbered if taken); returns
  the new path. Nothing a run saved is deleted."""
  target, n = f"{path}.{suffix}", 1
  while os.path.exists(target):
    n += 1
    target = f"{path}.{suffix}{n}"
  os.replace(path, target)
  return target


def _newest_intact(checkpointer, state, name, reload):
  """``(state, step)`` of the newest checkpoint that restores intact.

  Newer damaged ones are moved aside (``name(step)`` is a step's file or
  folder; ``reload`` refreshes what the checkpointer knows of them), with
  one line; if none restores, the newest's error is raised, nothing moved.
  """
  steps = checkpointer.all_steps()
  if not steps:
    return state, 0
  damaged, first_error = [], None
  for step in reversed(steps):
    try:
      restored = checkpointer.restore_at(step, state)
    except CheckpointError as e:
      first_error = first_error or e
      damaged.append((step, str(e.__cause__ or e)[:200]))
      continue
    if damaged:
      aside = [_move_aside(os.path.join(checkpointer.directory, name(s)))
               for s, _ in damaged]
      for s, _ in damaged:  # an interrupted save's marker goes with it
        marker = saving_marker(checkpointer.directory, s)
        if os.path.exists(marker):
          os.remove(marker)
      reload()
      _say_fallback(checkpointer.directory, damaged, step, aside)
    return restored, step
  raise first_error


def _say_fallback(directory, damaged, step, aside) -> None:
  what = "; ".join(f"step {s}: {why}" for s, why in damaged)
  print(f"warning: damaged checkpoint in {directory} ({what}); moved aside "
        f"to {', '.join(os.path.basename(a) for a in aside)} and resuming "
        f"from step {step}, the newest intact one.", file=sys.stderr,
        flush=True)


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

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def complete_steps(self) -> list[int]:
    """The kept steps whose save ended (no interrupted-save marker)."""
    return [s for s in self.all_steps() if not os.path.exists(
        self._marker(s))]

  def _marker(self, step: int) -> str:
    return saving_marker(self.directory, step)

  def save(self, step: int, state, extra: dict | None = None) -> None:
    """Saves ``state`` as ``step``; ``extra`` (JSON) is kept beside it.

    A marker file stands beside the step from before Orbax's save until its
    digest is written: a kill in between leaves a checkpoint that the next
    training run moves aside (``set_aside_incomplete``) and restore refuses
    as incomplete (its ``extra`` is missing), not one trusted as intact.
    """
    main = jax.process_index() == 0
    with signals_deferred():  # Ctrl-C / SIGTERM wait for the save to end
      if main:
        write_atomic(self._marker(step), "")
      self._manager.save(step, args=ocp.args.StandardSave(
          _orbax_form(state, with_scale=True)), force=True)
      self._manager.wait_until_finished()
      if main:
        write_atomic(os.path.join(self.directory, str(step), DIGEST_FILE),
                     json.dumps({"step": int(step), "leaves": digest(
                         jax.device_get(jax.tree_util.tree_leaves(state))),
                                 "extra": extra}))
        os.remove(self._marker(step))

  def set_aside_incomplete(self) -> list[str]:
    """Moves aside the steps whose save was killed before its digest.

    For the run that writes this directory (it holds the workdir's lock),
    before it decides where to resume or whether it has finished: a save of
    the final step killed between Orbax's commit and the digest would
    otherwise read as a finished run whose checkpoint has no digest and no
    train sums. Each such step goes to ``<step>.incomplete`` (nothing is
    deleted), with one line saying so; the run then resumes from the
    newest complete one and saves that step again. Returns the new names.
    """
    moved = []
    for step in self.all_steps():
      if not os.path.exists(self._marker(step)):
        continue
      folder = os.path.join(self.directory, str(step))
      if not os.path.exists(os.path.join(folder, DIGEST_FILE)):
        moved.append(os.path.basename(_move_aside(folder, "incomplete")))
      os.remove(self._marker(step))  # with its digest the save had ended
    if moved:
      self._manager.reload()
      print(f"warning: a save in {self.directory} was interrupted before "
            f"its digest was written; moved aside to {', '.join(moved)}; "
            "the run resumes from the newest complete checkpoint and saves "
            "that step again.", file=sys.stderr, flush=True)
    return moved

  def extra(self, step: int) -> dict | None:
    """The ``extra`` saved with ``step``, or ``None``."""
    return saved_extra(self.directory, step)

  def set_aside_after(self, step: int) -> list[str]:
    """Moves the checkpoints past ``step`` aside to ``<step>.ahead``.

    For a run that resumes from an older step than its newest (a sweep
    group resuming from the step all its members hold): the steps past it
    will be saved again, and nothing is deleted. Returns the new names.
    """
    moved = []
    for s in self.all_steps():
      if s > step:
        moved.append(os.path.basename(
            _move_aside(os.path.join(self.directory, str(s)), "ahead")))
    if moved:
      self._manager.reload()
    return moved

  def restore_or(self, state):
    """``(state, step)``: the latest intact checkpoint, or ``state`` at 0.

    A newer checkpoint that is damaged (fails its digest or cannot be
    read) while an older one restores intact is moved aside, with one line
    saying so. If none restores, the newest's error is raised and nothing
    is moved.

    Args:
      state: a freshly initialised state; gives the tree structure, shapes
        and dtypes to restore into.
    """
    return _newest_intact(self, state, lambda s: str(s),
                          self._manager.reload)

  def restore_at(self, step: int, state):
    """The checkpoint of ``step`` (one of the kept ones), shaped as ``state``.

    Checked against its digest where it has one.
    """
    if step not in self._manager.all_steps():
      raise CheckpointError(
          f"no checkpoint of step {step} in {self.directory} (kept: "
          f"{sorted(self._manager.all_steps())}).")
    template, restored, convert = state, None, None
    try:
      restored = self._restore(step, state)
    except Exception as e:  # pylint: disable=broad-except
      leaves = jax.tree_util.tree_leaves
      older = [  # (the layout, its restore, back to this state's layout)
          (lambda: legacy_layout(state), self._restore_legacy,
           lambda r: upgrade(state, leaves(r)))]
      if _delay_of(state):  # a history saved as a queue, in either layout
        older += [
            (lambda: queue_layout(state), self._restore, from_queue_layout),
            (lambda: legacy_layout(queue_layout(state)), self._restore_legacy,
             lambda r: from_queue_layout(upgrade(queue_layout(state),
                                                 leaves(r))))]
      for layout_of, read, back in older:
        try:  # a checkpoint of an older layout
          layout = layout_of()
          if (jax.tree_util.tree_structure(layout)
              == jax.tree_util.tree_structure(state)):
            continue  # this state has nothing that layout lacks
          template, restored, convert = layout, read(step, layout), back
          break
        except Exception:  # pylint: disable=broad-except
          pass
      if restored is None:
        first_line = (str(e).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(
            f"the checkpoint of step {step} in {self.directory} cannot be "
            f"restored into this run's state ({type(e).__name__}: "
            f"{first_line}). It was made by another config or version of "
            "the code, or is damaged; it is left as it is. Choose a new "
            "--workdir, or rerun with --overwrite to delete it and start "
            "over.") from e
    if os.path.exists(self._marker(step)):
      raise CheckpointError(
          f"the save of step {step} in {self.directory} was interrupted "
          "before its digest was written; it is incomplete.") from ValueError(
              "incomplete save (interrupted before its digest)")
    path = os.path.join(self.directory, str(step), DIGEST_FILE)
    if os.path.exists(path):
      try:
        with open(path) as f:
          stored = json.load(f)["leaves"]
      except (OSError, ValueError, KeyError, TypeError) as e:
        stored, bad = None, f"its digest file is unreadable ({e})"
      else:
        bad = _mismatch(_leaf_names(template), stored,
                        jax.device_get(jax.tree_util.tree_leaves(restored)))
      if bad:
        raise CheckpointError(
            f"the checkpoint of step {step} in {self.directory} is damaged: "
            f"{bad}. It is left as it is; delete that step's folder to "
            "resume from an older checkpoint, or choose a new --workdir."
        ) from ValueError(bad)
    if convert is not None:
      restored = convert(restored)
    return restored

  def _restore_form(self, step: int, form):
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, form)
    return self._manager.restore(step,
                                 args=ocp.args.StandardRestore(abstract))

  def _restore(self, step: int, template):
    """The checkpoint of ``step`` (``_orbax_form`` with ``sg_scale``),
    shaped as ``template``."""
    return _from_orbax_form(template, self._restore_form(
        step, _orbax_form(template, with_scale=True)), with_scale=True)

  def _restore_legacy(self, step: int, legacy):
    """``_restore`` into ``legacy_layout(state)`` (``_orbax_form``)."""
    return _from_orbax_form(legacy,
                            self._restore_form(step, _orbax_form(legacy)))

  def close(self) -> None:
    self._manager.close()


def saving_marker(directory: str, step: int) -> str:
  """The file that stands beside ``step`` while its save has not ended."""
  return os.path.join(directory, f".{step}.saving")


def finished_steps(directory: str) -> list[int]:
  """The steps in ``directory`` whose save ended (digest written, no
  marker), read from the files alone: no Orbax manager, nothing created."""
  try:
    names = os.listdir(directory)
  except OSError:
    return []
  return sorted(int(n) for n in names if n.isdigit()
                and os.path.exists(os.path.join(directory, n, DIGEST_FILE))
                and not os.path.exists(saving_marker(directory, int(n))))


def saved_extra(directory: str, step: int) -> dict | None:
  """The ``extra`` saved with ``step`` in ``directory``, or ``None``."""
  try:
    with open(os.path.join(directory, str(step), DIGEST_FILE)) as f:
      return json.load(f).get("extra")
  except (OSError, ValueError, AttributeError):
    return None


def restore_newest_complete(directory: str, state, missing: str,
                            step: int | None = None):
  """``(state, step)``: the newest checkpoint in ``directory`` whose save
  ended (or the one of ``step``), restored into ``state``'s structure, for
  tools that only read a run (evaluation, measurements, a branch). Nothing
  is created, moved or written; a checkpoint being saved now is passed over.

  Raises:
    CheckpointError: ``missing`` when ``directory`` holds no complete
      checkpoint; one naming the kept steps when ``step`` is not one of
      them; the restore's own error when the checkpoint does not restore.
  """
  if not os.path.isdir(directory):
    raise CheckpointError(missing)
  checkpointer = Checkpointer(directory)
  try:
    steps = checkpointer.complete_steps()
    if not steps:
      raise CheckpointError(missing)
    if step is None:
      step = steps[-1]
    elif step not in steps:
      raise CheckpointError(
          f"no complete checkpoint of step {step} in {directory}; its "
          f"complete checkpoints are of steps {steps} (a run keeps its "
          "newest two).")
    return checkpointer.restore_at(step, state), step
  finally:
    checkpointer.close()


def with_hyperparameters(state, fresh):
  """``state`` with the hyper-parameters of ``fresh``, a state of the same
  structure initialised from another config: each ``inject_hyperparams``
  state's ``hyperparams`` (the learning rates) and each train state's
  ``sg_scale`` (λ). Everything else, the optimisers' step counts included
  (a schedule reads its rate from them), stays ``state``'s."""
  def one(x, f):
    if _injected(x):
      return x._replace(hyperparams=f.hyperparams,
                        inner_state=with_hyperparameters(x.inner_state,
                                                         f.inner_state))
    if _has_scale(x):
      return x.replace(**{
          name: (f.sg_scale if name == "sg_scale" else
                 with_hyperparameters(getattr(x, name), getattr(f, name)))
          for name in (fl.name for fl in dataclasses.fields(x))})
    return x
  return jax.tree_util.tree_map(
      one, state, fresh, is_leaf=lambda x: _injected(x) or _has_scale(x))


def common_step(steps_per_process: list[list[int]]) -> int | None:
  """The newest step in every process's list, or ``None``."""
  common = set.intersection(*map(set, steps_per_process)) if (
      steps_per_process) else set()
  return max(common) if common else None


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

  def __init__(self, directory: str, max_to_keep: int = 2,
               agree: bool | None = None):
    self.directory = os.path.abspath(directory)
    self.max_to_keep = max_to_keep
    os.makedirs(self.directory, exist_ok=True)
    if agree if agree is not None else jax.process_count() > 1:
      self._agree()

  def _intact(self, step: int) -> bool:
    """Whether ``<step>.npz`` reads back equal to its stored digest."""
    try:
      with np.load(os.path.join(self.directory, f"{step}.npz")) as data:
        names = sorted(k for k in data.files if k.isdigit())
        stored = (json.loads(str(data["digest"])) if "digest" in data.files
                  else None)
        return stored is None or stored == digest([data[k] for k in names])
    except Exception:  # pylint: disable=broad-except
      return False

  def _agree(self) -> None:
    """Every process keeps the newest step that all of them hold intact.

    A collective: every process of the run constructs its checkpointer at
    the same point. Steps past the agreed one (a save that only some
    processes finished) are moved aside to ``<step>.npz.ahead``, damaged
    ones to ``<step>.npz.damaged``; nothing is deleted.
    """
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    steps = self._steps()
    intact = [s for s in steps if self._intact(s)]
    padded = np.full((16,), -1, np.int64)
    padded[:len(intact[-16:])] = intact[-16:]
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    per_process = [[int(s) for s in row if s >= 0] for row in gathered]
    agreed = common_step(per_process)
    if agreed is None and any(per_process):
      raise CheckpointError(
          f"the processes of this run hold no common intact checkpoint "
          f"(intact steps per process: {per_process}) under "
          f"{self.directory} and its siblings; they are left as they are. "
          "Choose a new --workdir, or rerun with --overwrite to start over.")
    moved = []
    for step in steps:
      if agreed is not None and step <= agreed and step in intact:
        continue
      moved.append(os.path.basename(_move_aside(
          os.path.join(self.directory, f"{step}.npz"),
          "ahead" if step in intact else "damaged")))
    if moved:
      print(f"warning: process {jax.process_index()}: resuming from step "
            f"{agreed}, the newest checkpoint every process holds intact "
            f"(per process: {per_process}); moved aside in {self.directory}: "
            f"{', '.join(moved)}.", file=sys.stderr, flush=True)

  def _steps(self) -> list[int]:
    return sorted(int(f[:-4]) for f in os.listdir(self.directory)
                  if f.endswith(".npz") and f[:-4].isdigit())

  def latest_step(self) -> int | None:
    steps = self._steps()
    return steps[-1] if steps else None

  def all_steps(self) -> list[int]:
    return self._steps()

  def save(self, step: int, state, extra: dict | None = None) -> None:
    with signals_deferred():  # Ctrl-C / SIGTERM wait for the save to end
      self._save(step, state, extra)

  def _save(self, step: int, state, extra: dict | None) -> None:
    leaves = [np.asarray(x) for x in
              jax.device_get(jax.tree_util.tree_leaves(state))]
    tmp = os.path.join(self.directory, f".{step}.tmp.npz")
    with open(tmp, "wb") as f:
      np.savez(f, digest=np.array(json.dumps(digest(leaves))),
               extra=np.array(json.dumps(extra)),
               **{f"{i:05d}": x for i, x in enumerate(leaves)})
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, os.path.join(self.directory, f"{step}.npz"))
    _sync_dir(self.directory)
    for old in self._steps()[:-self.max_to_keep]:
      os.remove(os.path.join(self.directory, f"{old}.npz"))

  def extra(self, step: int) -> dict | None:
    try:
      with np.load(os.path.join(self.directory, f"{step}.npz")) as data:
        return (json.loads(str(data["extra"])) if "extra" in data.files
                else None)
    except Exception:  # pylint: disable=broad-except
      return None

  def restore_at(self, step: int, state):
    """The checkpoint of ``step``, checked against its digest."""
    path = os.path.join(self.directory, f"{step}.npz")
    template = state
    try:
      with np.load(path) as data:
        count = sum(k.isdigit() for k in data.files)
        legacy = legacy_layout(state)
        if (count != len(jax.tree_util.tree_leaves(state))
            and count == len(jax.tree_util.tree_leaves(legacy))):
          template = legacy  # a checkpoint of the older layout
        leaves = jax.tree_util.tree_leaves(template)
        restored = [data[f"{i:05d}"] for i in range(len(leaves))]
        stored = (json.loads(str(data["digest"])) if "digest" in data.files
                  else None)
      for r, leaf in zip(restored, leaves):
        if r.shape != leaf.shape or r.dtype != leaf.dtype:
          raise ValueError(f"leaf of shape {r.shape} {r.dtype} where this "
                           f"run has {leaf.shape} {leaf.dtype}")
      bad = (None if stored is None else
             _mismatch(_leaf_names(template), stored, restored))
      if bad:
        raise ValueError(f"damaged: {bad}")
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"the checkpoint {path} cannot be restored into this run's state "
          f"({type(e).__name__}: {str(e)[:300]}). It was made by another "
          "config, or is damaged; it is left as it is. Delete it to resume "
          "from an older checkpoint, or choose a new --workdir.") from e
    restored = [jax.device_put(r, leaf.sharding)
                for r, leaf in zip(restored, leaves)]
    if template is not state:
      return upgrade(state, restored)
    return jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(state), restored)

  def restore_or(self, state):
    """As ``Checkpointer.restore_or``: the newest intact checkpoint."""
    return _newest_intact(self, state, lambda s: f"{s}.npz", lambda: None)

  def close(self) -> None:
    pass
