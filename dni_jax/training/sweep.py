"""Sweeps: a config's members, vmapped where they can share one program.

A config may define ``get_sweep()``: a list of dotted overrides, e.g.
``[{"seed": s} for s in range(3)]`` or ``{"opt.learning_rate": 1e-4,
"dni.sg_scale": 0.5}`` (as big_vision and the Flax examples do). Each
member runs into ``<workdir>/<member name>/`` with the usual
``config.json``, ``metrics.jsonl``, TensorBoard events and checkpoints, so a
member folder is an ordinary run: ``experiments.main`` resumes it,
``experiments.summarize`` aggregates it.

Members whose configs differ only in ``batching.VMAPPABLE`` fields (the seed and
scalar hyper-parameters) form one *group*, trained as one batched state
under ``jax.vmap``: one compiled step (λ and the learning rates are each
member's state's, docs/method.md), each member on the data its own run
would see (its own seed's batches, or its own generated stream). Members
that change a shape or a static choice run one group after another. A group
of one member is the plain run (``run_lib.run``), bit for bit. Under early
stopping each member stops where its own run would: its checkpoint is saved
there, its state is frozen in the group's step (``run.Loop.freeze``; its
slot is still computed, masked, so a group costs its last member's steps)
and nothing more is logged for it; the group ends when every member has
stopped, and a rerun treats a stopped member as finished. With several
local devices a group's members are split over them
(``batching.Placement``).

The batched step is the single run's step, vmapped; XLA may pick other
kernels for the batched matmuls, so a member's numbers equal its single
run's to float rounding (tests/test_sweep.py says how close), not bit for
bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time

import jax
import ml_collections
import numpy as np

from dni_jax.errors import ConfigError
from dni_jax.errors import WorkdirError
from dni_jax.training import batching
from dni_jax.training import branch as branch_lib
from dni_jax.training import checkpoint as checkpoint_lib
from dni_jax.training import files
from dni_jax.training import families
from dni_jax.training import run as run_lib
from dni_jax.training import workdir as workdir_lib
from dni_jax.training.checkpoint import Checkpointer
from dni_jax.training.metrics_log import read_metrics

@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a sweep: its folder name, overrides and resolved config."""
  name: str
  overrides: dict
  config: ml_collections.ConfigDict


def _name(overrides: dict) -> str:
  text = ",".join(f"{k}={v}" for k, v in overrides.items()) or "base"
  return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def _set(config: ml_collections.ConfigDict, key: str, value) -> None:
  node = config
  *parents, leaf = key.split(".")
  for i, part in enumerate(parents):
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise ConfigError(f"sweep override {key!r}: the config has no field "
                        f"{'.'.join(parents[:i + 1])!r}; fix the name in "
                        "get_sweep() (--print_config lists every field).")
    node = node[part]
  if leaf not in node:
    raise ConfigError(f"sweep override {key!r}: the config has no field "
                      f"{key!r}; fix the name in get_sweep() "
                      "(--print_config lists every field).")
  try:
    node[leaf] = value
  except (TypeError, ValueError) as e:
    raise ConfigError(f"sweep override {key}={value!r} has the wrong type "
                      f"for the field ({type(node[leaf]).__name__} "
                      f"expected): {e}") from None


def members(config: ml_collections.ConfigDict, sweep) -> list[Member]:
  """The sweep's members, each validated; every error before any work.

  Args:
    config: the base config (command-line overrides applied).
    sweep: ``get_sweep()``'s list of ``{dotted field: value}``; an entry may
      name its folder with ``"name"``.

  Raises:
    ConfigError: an unknown field, a value of the wrong type, a bad value,
      a sweep that is not a list of dicts, or two members with one name.
  """
  if not isinstance(sweep, (list, tuple)) or not sweep or not all(
      isinstance(m, dict) for m in sweep):
    raise ConfigError("get_sweep() must return a non-empty list of dicts "
                      "of dotted overrides, e.g. [{'seed': 0}, {'seed': 1}]")
  out, names = [], {}
  for i, overrides in enumerate(sweep):
    overrides = dict(overrides)
    name = str(overrides.pop("name", "")) or _name(overrides)
    member = ml_collections.ConfigDict(config.to_dict())
    for key, value in overrides.items():
      _set(member, key, value)
    if len(families.methods(member)) != 1:
      raise ConfigError(f"sweep member {name!r} names several methods "
                        f"({member.method!r}); a sweep member is one run: "
                        "set --config.method to one method.")
    try:
      families.validate(member)
    except ConfigError as e:
      raise ConfigError(f"sweep member {name!r}: {e}") from None
    if name in names:
      raise ConfigError(f"sweep members {names[name]} and {i} are both "
                        f"named {name!r}; give them distinct overrides or "
                        "'name' entries.")
    names[name] = i
    out.append(Member(name, overrides, member))
  return out


def _static_part(config: ml_collections.ConfigDict) -> dict:
  fields = workdir_lib.config_fields(config)
  return {k: v for k, v in fields.items() if k not in batching.VMAPPABLE}


def vmappable(config: ml_collections.ConfigDict) -> bool:
  """Whether this kind of run trains as a member of a vmapped group (where
  it can, and where that pays on this backend: ``families``)."""
  return families.family_of(config).vmappable(config)


def groups(sweep_members: list[Member]) -> list[list[Member]]:
  """Members split into vmapped groups (static fields equal), in order."""
  out: list[list[Member]] = []
  for member in sweep_members:
    for group in out:
      if (vmappable(member.config) and
          _static_part(group[0].config) == _static_part(member.config)):
        group.append(member)
        break
    else:
      out.append([member])
  return out


class _GroupRecorder:
  """``run_lib.Recorder``'s interface over the members of a group."""

  def __init__(self, recorders: list[run_lib.Recorder],
               checkpointer: "_GroupCheckpointer", name: str):
    self.recorders, self.name = recorders, name
    self.checkpointer = checkpointer
    # Members stopped early: frozen in the step, no longer logged or saved.
    self.stopped = checkpointer.stopped
    self.start_time = time.time()
    self.last_step = recorders[0].last_step
    # The interval's sums, one entry per member: a step is read and added
    # for the whole group at once, and each member's recorder gets its
    # share when the interval is written.
    self.sums, self.counts, self.count = {}, {}, 0

  def record(self, step, metrics):
    host = {k: np.asarray(v, np.float64)
            for k, v in jax.device_get(metrics).items()}
    if host:
      bad = ~np.isfinite(np.stack(list(host.values()), axis=-1))  # [M, keys]
      bad[self.stopped] = False
      if bad.any():
        i = int(np.argmax(bad.any(axis=1)))
        k = list(host)[int(np.argmax(bad[i]))]
        self.recorders[i].diverged(step, f"{k} = {float(host[k][i])}")
    run_lib.accumulate(self.sums, self.counts, host,
                       self.recorders[0].loop.last_keys)
    self.count += 1

  def _running(self):
    return [(i, r) for i, r in enumerate(self.recorders)
            if not self.stopped[i]]

  def flush_train(self, step):
    for i, r in self._running():
      r.flush_train(step, ({k: float(v[i]) for k, v in self.sums.items()},
                           dict(self.counts), self.count))
    self.sums, self.counts, self.count = {}, {}, 0

  def write_eval(self, step, split, metrics):
    for i, r in self._running():
      r.write_eval(step, split, {k: v[i] for k, v in metrics.items()})

  def stop_reason(self, should_stop, step, state):
    """Stops each member whose records say so, as its own run would stop
    there: its checkpoint of ``step`` is saved, its state is frozen in
    the group's step (``Loop.freeze``) and nothing more is logged for it.
    The group stops when every member has."""
    if should_stop is None:
      return None
    for i, r in self._running():
      reason = should_stop(r.log.records)
      if reason is None:
        continue
      member = batching.unstack(state, i)
      if not run_lib.all_finite(member):
        r.diverged(step, "a parameter or optimiser state is NaN/Inf")
      self.checkpointer.checkpointers[i].save(
          step, member, extra=self.interval_state()[i])
      r.flush_events()
      self.stopped[i] = True
      r.loop.freeze(i)
      print(f"[{r.config.method}] early stop at step {step}: {reason}",
            flush=True)
    if all(self.stopped):
      return "every member of the group has stopped early"
    return None

  def diverged(self, step, what):
    self.recorders[0].diverged(step, f"{what} (in the vmapped group {self.name})")

  def interrupted(self, step):
    return self.recorders[0].interrupted(step)

  def close(self):
    for r in self.recorders:
      r.close()

  def flush_events(self):
    for r in self.recorders:
      r.flush_events()

  def interval_state(self) -> list[dict]:
    """Each member's unwritten train sums (saved with its checkpoint)."""
    return [{"sums": {k: float(v[i]) for k, v in self.sums.items()},
             "counts": dict(self.counts), "count": self.count}
            for i in range(len(self.recorders))]

  def restore_interval(self, saved: list) -> None:
    if saved and all(saved):
      self.sums = {k: np.array([m["sums"][k] for m in saved], np.float64)
                   for k in saved[0]["sums"]}
      self.counts = {k: int(v) for k, v in saved[0]["counts"].items()}
      self.count = int(saved[0]["count"])


class _GroupCheckpointer:
  """Saves each member's slice of the batched state in its own folder."""

  def __init__(self, checkpointers):
    self.checkpointers = checkpointers
    self.stopped = [False] * len(checkpointers)  # saved at their stop

  def save(self, step, state, extra=None):
    for i, c in enumerate(self.checkpointers):
      if not self.stopped[i]:
        c.save(step, batching.unstack(state, i),
               extra=None if extra is None else extra[i])

  def latest_step(self):
    steps = [c.latest_step() for c, s in zip(self.checkpointers,
                                             self.stopped) if not s]
    return None if None in steps else min(steps, default=None)

  def close(self):
    for c in self.checkpointers:
      c.close()

  @property
  def directory(self):
    return os.path.dirname(os.path.dirname(self.checkpointers[0].directory))


def run_group(group: list[Member], workdir: str, overwrite: bool = False):
  """Trains a vmapped group; returns ``{member name: summary}``.

  Each member's folder is prepared like a single run's (its config.json
  identity, refusal of another config or of a branch stopped before its
  first checkpoint). A group whose members have all finished is not
  trained again; otherwise every member resumes from the last step that
  all of them have a checkpoint of (refused where that is before the step
  a member was branched at). A group that mixes finished and unfinished
  members, or whose members trained apart and hold no step in common, is
  refused before anything is written: ``run_sweep`` splits it into the
  groups it resumes in (``trained_apart``).
  """
  dirs = [os.path.join(workdir, m.name) for m in group]
  with contextlib.ExitStack() as locks:
    for d, m in zip(dirs, group):
      workdir_lib.check_writable(d)
      locks.enter_context(files.WorkdirLock(d, f"sweep member {m.name}"))
    return _run_group_locked(group, dirs, overwrite)


def _check_branches(group: list[Member], dirs: list[str],
                    steps: list[list[int]]) -> None:
  """Refuses, writing nothing, a vmapped group that would resume before the
  step a member was branched at (``--branch_from`` into a member's folder):
  the group resumes from the newest step every member holds, which would
  set the branch's own checkpoints aside and train the member from there
  under its ``branch.json``. ``steps``: each member's, as
  ``_held_steps`` reads them (empty where ``overwrite`` deletes the run).
  """
  if all(s and s[-1] >= m.config.num_steps for s, m in zip(steps, group)):
    return  # every member has finished: nothing is trained
  start = checkpoint_lib.common_step(steps) or 0
  for m, d, own in zip(group, dirs, steps):
    mine = branch_lib.record(d)
    if mine is None or not own or start in own:
      continue  # a branch holds no step before its own
    common = (f"the newest step every member of its vmapped group holds is "
              f"{start}" if start else "the members of its vmapped group "
              "hold no checkpoint step in common")
    raise WorkdirError(
        f"sweep member {m.name} ({d}) holds a branch of "
        f"{mine.get('source')} from step {mine.get('step')}, but {common}, "
        "so the group would start that member over from there and set the "
        "branch's checkpoints aside. Nothing was changed (--overwrite "
        "does not delete a run of the member's own config). To keep the "
        "branch, branch the group's other members at the same step too "
        "(the group then resumes from there); to train that member from "
        f"scratch with the group, move {d} out of the sweep's --workdir.")


def _held_steps(group: list[Member], dirs: list[str],
                overwrite: bool) -> list[list[int]]:
  """Each member's complete checkpoint steps, read without moving anything;
  none for a member whose run ``overwrite`` deletes or whose branch stopped
  before its first checkpoint (``branch.check_unfinished`` refuses that
  first, whichever member holds it)."""
  kept = [not branch_lib.check_unfinished(d, overwrite)
          and not workdir_lib.overwritten(d, m.config, overwrite)
          for m, d in zip(group, dirs)]
  return [branch_lib.complete_steps(d) if k else []
          for d, k in zip(dirs, kept)]


def _stopped_early(group: list[Member], dirs: list[str],
                   steps: list[list[int]]) -> list[bool]:
  """Whether each member's run, as it stands at its newest checkpoint step
  (``steps``), stopped early (its family's ``should_stop``)."""
  out = []
  for m, d, own in zip(group, dirs, steps):
    rule = families.family_of(m.config).should_stop(m.config)
    records = [r for r in read_metrics(os.path.join(d, "metrics.jsonl"))
               if r["step"] <= own[-1]] if own and rule else []
    out.append(bool(records) and rule(records) is not None)
  return out


def trained_apart(steps: list[list[int]], checkpoint_every: int,
                  num_steps: list[int],
                  stopped: list[bool] | None = None) -> list[list[int]]:
  """The members of a vmapped group (their checkpoint ``steps``) as the
  groups they resume in; indices into ``steps``.

  Finished members (newest step ≥ their ``num_steps``, or ``stopped``
  early there) are not trained again: they form a group of their own. The unfinished ones resume
  together from the newest step they all hold, as they ran (a group killed
  between its members' first saves starts over, losing at most one
  interval); where they hold none and one holds more than its first
  checkpoint, they trained apart (as separate runs, or the sweep gained
  members), and a common start from step 0
  would discard what each trained: they are grouped by their newest step,
  each group resuming from there."""
  stopped = stopped or [False] * len(steps)
  done = [i for i, s in enumerate(steps)
          if s and (s[-1] >= num_steps[i] or stopped[i])]
  todo = [i for i in range(len(steps)) if i not in done]
  parts = [done] if done else []
  held = [steps[i] for i in todo]
  if todo and (checkpoint_lib.common_step(held) or not any(
      len(s) > 1 or (s and s[-1] > checkpoint_every) for s in held)):
    parts.append(todo)
  elif todo:
    by_step = {}
    for i in todo:
      by_step.setdefault(steps[i][-1] if steps[i] else 0, []).append(i)
    parts.extend(by_step.values())
  return sorted(parts)


def _common_start(checkpointers, names) -> int:
  """The newest step every member holds; later ones are set aside."""
  steps = [c.all_steps() for c in checkpointers]
  start = checkpoint_lib.common_step(steps) or 0
  for c, name, own in zip(checkpointers, names, steps):
    moved = c.set_aside_after(start)
    if moved:
      print(f"[sweep] {name}: resuming from step {start}, the newest step "
            f"every member of its group holds (its own: {own}); set aside "
            f"in {c.directory}: {', '.join(moved)}", flush=True)
  return start


def _run_group_locked(group, dirs, overwrite):
  configs = [m.config for m in group]
  # Read again under the members' locks, not taken from run_sweep's plan:
  # another process may have trained these members since (and run_group
  # is also called on its own).
  held = _held_steps(group, dirs, overwrite)
  stopped = _stopped_early(group, dirs, held)
  if len(trained_apart(held, configs[0].checkpoint_every,
                       [c.num_steps for c in configs], stopped)) > 1:
    raise WorkdirError(
        "the members of this vmapped group cannot resume together ("
        + "; ".join(f"{m.name}: {s or 'none'}" for m, s in zip(group, held))
        + "): some have finished, or they hold no checkpoint step in "
        "common, and training them together would train a finished one "
        "again or start each over from step 0. run_sweep "
        "(experiments.sweep) resumes each part from its own newest step; "
        "nothing was changed.")
  _check_branches(group, dirs, held)  # every member before any write
  for d, c in zip(dirs, configs):
    branch_lib.clear_unfinished(d, overwrite)
    workdir_lib.prepare(d, c, overwrite)
  checkpointers = _GroupCheckpointer(
      [Checkpointer(os.path.join(d, "checkpoints")) for d in dirs])
  try:
    loop = families.family_of(configs[0]).loop.make_batched_loop(configs)
    for c in checkpointers.checkpointers:
      c.set_aside_incomplete()
    steps = [c.latest_step() or 0 for c in checkpointers.checkpointers]
    if all(s >= c.num_steps or gone
           for s, c, gone in zip(steps, configs, stopped)):
      summaries = {m.name: run_lib.finished(loop, c, d, s)
                   for m, c, d, s in zip(group, configs, dirs, steps)}
      checkpointers.close()
      return summaries
    start_step = _common_start(checkpointers.checkpointers,
                               [m.name for m in group])
    state = loop.init()
    if start_step:
      state = batching.Placement(len(group)).members(batching.stack([
          ckpt.restore_at(start_step, batching.unstack(state, i))
          for i, ckpt in enumerate(checkpointers.checkpointers)]))
      print(f"[sweep] resuming {len(group)} members from step {start_step}")
  except BaseException:
    checkpointers.close()
    raise
  recorders = []
  for m, d, ckpt in zip(group, dirs, checkpointers.checkpointers):
    shown = ml_collections.ConfigDict(m.config.to_dict())
    shown.method = f"{m.config.method} {m.name}"  # the progress lines' prefix
    recorders.append(run_lib.Recorder(shown, d, start_step, ckpt, loop))
  name = (f"{group[0].name} … {group[-1].name}" if len(group) > 1
          else group[0].name)
  recorder = _GroupRecorder(recorders, checkpointers, name)
  if start_step:
    recorder.restore_interval([c.extra(start_step)
                               for c in checkpointers.checkpointers])
  config = ml_collections.ConfigDict(configs[0].to_dict())
  config.method = f"{configs[0].method} ×{len(group)}"
  run_lib.train_steps_closing(loop, config, state, start_step, recorder)
  seconds = time.time() - recorder.start_time
  summaries = {}
  for m, d, r, stopped in zip(group, dirs, recorders, recorder.stopped):
    summary = loop.summarize(r.log.records, seconds)
    summary["stopped_early"] = stopped
    workdir_lib.write_summary(d, summary)
    summaries[m.name] = summary
  return summaries


def plan(sweep_groups: list[list[Member]], workdir: str) -> str:
  """What a sweep is about to run: its members by group, and the budget."""
  vmapped = [g for g in sweep_groups if len(g) > 1]
  count = sum(len(g) for g in sweep_groups)
  steps = sum(g[0].config.num_steps for g in sweep_groups)
  member_steps = sum(m.config.num_steps for g in sweep_groups for m in g)
  lines = [f"[sweep] {count} member{'s' * (count != 1)} into {workdir}, as "
           f"{len(sweep_groups)} group{'s' * (len(sweep_groups) != 1)} run "
           f"one after another ({len(vmapped)} vmapped, "
           f"{len(sweep_groups) - len(vmapped)} single run"
           f"{'s' * (len(sweep_groups) - len(vmapped) != 1)}):"]
  for i, group in enumerate(sweep_groups):
    c = group[0].config
    kind = (f"vmapped group of {len(group)}" if len(group) > 1
            else "single run" if vmappable(c)
            else "single run (this kind of run is not vmapped here)")
    lines.append(f"[sweep]   {i + 1}. {kind}, {c.num_steps} steps of batch "
                 f"{c.batch_size}: " + "; ".join(m.name for m in group))
  lines.append(f"[sweep] budget: {steps} steps of the groups in all "
               f"({member_steps} member steps); finished members are not "
               "trained again.")
  return "\n".join(lines)


def run_sweep(config: ml_collections.ConfigDict, sweep, workdir: str,
              overwrite: bool = False) -> dict[str, dict]:
  """Every member of ``sweep`` into ``workdir/<name>``; their summaries.

  Validates every member before any work; then runs the groups one after
  another (a one-member group as the plain run).
  """
  sweep_members = members(config, sweep)
  workdir_lib.check_writable(workdir)
  if workdir_lib.has_run(workdir):
    raise ConfigError(f"--workdir={workdir} holds a single run; a sweep "
                      "writes each member into <workdir>/<member>: choose a "
                      "new --workdir.")
  for m in sweep_members:  # every member's folder, before any trains
    branch_lib.check_unfinished(os.path.join(workdir, m.name), overwrite)
    workdir_lib.check(os.path.join(workdir, m.name), m.config, overwrite)
  sweep_groups = [part for group in groups(sweep_members)
                  for part in _resume_groups(group, workdir, overwrite)]
  for group in sweep_groups:
    if len(group) > 1:
      dirs = [os.path.join(workdir, m.name) for m in group]
      _check_branches(group, dirs, _held_steps(group, dirs, overwrite))
  print(plan(sweep_groups, workdir), flush=True)
  with files.WorkdirLock(workdir, "a sweep"):
    return _run_groups(sweep_groups, workdir, overwrite)


def _resume_groups(group: list[Member], workdir: str,
                   overwrite: bool) -> list[list[Member]]:
  """``group`` as the groups it resumes in (``trained_apart``)."""
  if len(group) == 1:
    return [group]
  dirs = [os.path.join(workdir, m.name) for m in group]
  held = _held_steps(group, dirs, overwrite)
  parts = trained_apart(held, group[0].config.checkpoint_every,
                        [m.config.num_steps for m in group],
                        _stopped_early(group, dirs, held))
  if len(parts) == 1:
    return [group]
  print(f"[sweep] the members {', '.join(m.name for m in group)} resume "
        "as " + " | ".join(", ".join(group[i].name for i in part)
                           for part in parts)
        + ": finished or early-stopped ones are not trained again, and "
        "members that trained apart (no checkpoint step in common) each "
        "resume from their own newest step, vmapped with those that share "
        "it", flush=True)
  return [[group[i] for i in part] for part in parts]


def _run_groups(sweep_groups, workdir, overwrite):
  summaries = {}
  for group in sweep_groups:
    names = ", ".join(m.name for m in group)
    print(f"[sweep] {'vmapped group' if len(group) > 1 else 'run'}: {names}",
          flush=True)
    if len(group) == 1:
      m = group[0]
      loop = families.family_of(m.config).loop.make_loop(m.config)
      summaries[m.name] = run_lib.run(loop, m.config,
                                      os.path.join(workdir, m.name), overwrite)
    else:
      summaries.update(run_group(group, workdir, overwrite))
  return summaries
