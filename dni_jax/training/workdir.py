"""A run's workdir remembers the config that made it, and refuses another.

``config.json`` in the workdir is the resolved config of the run. Rerunning
into the same workdir resumes only if the new config agrees on every field
that shapes the training trajectory; the fields of ``RESUMABLE`` (the step
budget, the logging and evaluation cadence, where the data lies) may change.
A mismatch is refused before anything is written, naming the fields, unless
``overwrite`` asks to start that workdir over.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

import ml_collections

from dni_jax.errors import WorkdirError
from dni_jax.training import files

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
# Files and folders a run writes (and TensorBoard's event files, ``EVENTS``);
# --overwrite removes exactly these.
BRANCH_FILE = "branch.json"  # a run started from another's checkpoint
RUN_FILES = (CONFIG_FILE, SUMMARY_FILE, "metrics.jsonl", "checkpoints",
             BRANCH_FILE)
EVENTS = "events.out.tfevents.*"
# Fields that may differ when a run is resumed or extended.
RESUMABLE = ("num_steps", "log_every", "eval_every", "checkpoint_every",
             "eval_batch_size", "patience", "data.dir", "data.tfds_data_dir",
             "data.download",
             # the same updates, grouped into calls differently (a scan over
             # windows may round differently from separate calls)
             "windows_per_call")


def flatten(tree: dict, prefix: str = "") -> dict:
  """A nested dict (a config's JSON) as ``{"a.b": value}``."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def config_fields(config: ml_collections.ConfigDict) -> dict:
  """Every field of ``config`` as ``{"a.b": value}``, as JSON reads it back."""
  return flatten(json.loads(config.to_json_best_effort()))


# Fields added to the configs after runs were made without them, with the
# value that behaves as the code did before (``ANY``: the field only matters
# to a method that did not exist then), or a function of the old flattened
# config giving it. A run whose config.json lacks such a field resumes under
# a config that has it at that value.
ANY = object()
ADDED_FIELDS = {
    "dni.update_prob": 1.0,
    "dni.stage_update_probs": [],
    "dni.synth_delay": 0,
    # Before it, a unit held back by stochastic updates held its schedule's
    # clock too. (Briefly the code advanced the clock before the field
    # existed: a stochastic run made then needs "schedule_clock": "steps"
    # added to its config.json.)
    "dni.schedule_clock": lambda old: "updates" if _stochastic(old) else ANY,
    "dni.input_model": ANY,
    "dni.input_hidden": ANY,
    "dni.input_pool": False,
    # Before it, the input models regressed onto the real chain (the field
    # means nothing to the other methods).
    "dni.input_targets": lambda old: (
        "real_chain" if str(old.get("method", "")).endswith("_unlocked")
        else ANY),
    "dni.synth_fit_at": "output",
    # Before it, the synthetic gradient sat on the LSTM's whole state.
    "dni.sg_state": "ch",
    "dni.bootstrap": "scaled",
    "dni.target_decay": 0.0,
    "dni.synth_steps": 1,
    "dni.sg_shuffle": False,
    "dni.sg_shuffle_target": True,
    "dni.sg_warmup": 0,
    "model.forget_bias": 0.0,
    "model.peepholes": False,
    "two_networks.oracle": False,
    "data.error_measure": "wrong_bits",
}
# What a reader fills in for a field of ``ANY`` above that an older run
# lacks (the defaults of configs/base.py; the run's methods never read it,
# but building them does).
READ_DEFAULTS = {
    "dni.input_model": "mlp",
    "dni.input_hidden": (1024,),
    "dni.input_targets": "neighbour",
    "dni.schedule_clock": "steps",
}
# Not added above: data.start_repeats. A copy-task run made before it had
# another curriculum and task state; its absence counts as a difference, so
# such a run is refused, not resumed into a state it cannot restore.


def _unlocked(flat: dict) -> bool:
  return "_unlocked" in str(flat.get("method", ""))


def _stochastic(flat: dict) -> bool:
  probs = flat.get("dni.stage_update_probs") or [flat.get("dni.update_prob",
                                                          1.0)]
  return any(float(p) < 1.0 for p in probs)


def _hidden_synthesizer(flat: dict) -> bool:
  return flat.get("dni.synthesizer", "linear") != "linear"


# Fields only some runs read, with the test of a flattened config that says
# whether its run reads them: a difference in them between two configs
# neither of whose runs reads them leaves a run resumable (so does a change
# of their default).
READ_ONLY_BY = (
    # the input models of complete unlock
    (("dni.input_model", "dni.input_hidden", "dni.input_pool",
      "dni.input_targets", "dni.synth_fit_at"), _unlocked),
    # a synthesizer's hidden layers (the linear synthesizer has none)
    (("dni.hidden", "dni.use_batch_norm"), _hidden_synthesizer),
    # the schedule's clock under stochastic updates
    (("dni.schedule_clock",), _stochastic),
)


def differing_fields(old: dict, new: dict) -> list[str]:
  """Fields that differ between two flattened configs, minus ``RESUMABLE``
  and minus the fields of ``READ_ONLY_BY`` that neither run reads.

  A field of ``ADDED_FIELDS`` missing from ``old`` counts as its neutral
  value there.
  """
  keys = sorted(set(old) | set(new))
  for fields, reads in READ_ONLY_BY:
    if not (reads(old) or reads(new)):
      keys = [k for k in keys if k not in fields]

  return [k for k in keys
          if k not in RESUMABLE and _old_value(old, new, k) != new.get(
              k, "<absent>")]


def _old_value(old: dict, new: dict, k: str):
  """``old``'s value of ``k``; a field of ``ADDED_FIELDS`` it lacks at its
  neutral value (``new``'s where any value behaves alike)."""
  if k not in old and k in ADDED_FIELDS:
    neutral = ADDED_FIELDS[k]
    if callable(neutral):
      neutral = neutral(old)
    return new.get(k, "<absent>") if neutral is ANY else neutral
  return old.get(k, "<absent>")


def _describe(fields: list[str], old: dict, new: dict) -> str:
  shown = [f"{k}: {_old_value(old, new, k)!r} -> {new.get(k, '<absent>')!r}"
           for k in fields[:6]]
  more = f" and {len(fields) - 6} more" if len(fields) > 6 else ""
  return "; ".join(shown) + more


def _run_paths(workdir: str) -> list[str]:
  return ([p for p in (os.path.join(workdir, f) for f in RUN_FILES)
           if os.path.exists(p)] + glob.glob(os.path.join(workdir, EVENTS)))


def checkpoint_step(workdir: str) -> int | None:
  """The step of the latest checkpoint in ``workdir``, read from the folder
  names (Orbax's ``<step>/``, or ``<step>.npz`` of several processes)."""
  folder = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(folder):
    return None
  steps = [int(name.split(".")[0]) for name in os.listdir(folder)
           if name.split(".")[0].isdigit() and
           (name.isdigit() or name.endswith(".npz"))]
  return max(steps, default=None)


def _announce_clear(workdir: str, why: str) -> None:
  """Prints what ``--overwrite`` is about to delete, before deleting it."""
  step = checkpoint_step(workdir)
  at = (f"its checkpoint of step {step}" if step is not None
        else "no checkpoint yet")
  print(f"--overwrite: deleting the run in {workdir} ({why}; {at}) and "
        "starting over there.", flush=True)


def nested_runs(workdir: str) -> list[str]:
  """Folders of ``workdir`` that hold runs of their own (a comparison's
  methods, a sweep's members); a pipeline's ``process_<i>`` not counted."""
  try:
    names = sorted(os.listdir(workdir))
  except OSError:
    return []
  return [n for n in names if not re.fullmatch(r"process_\d+", n) and
          os.path.isfile(os.path.join(workdir, n, CONFIG_FILE))]


def overwrite_run(workdir: str, why: str) -> None:
  """``--overwrite``: says what it deletes, then deletes the run's files."""
  _announce_clear(workdir, why)
  clear(workdir)


def has_run(workdir: str) -> bool:
  """Whether ``workdir`` holds files of a run (``branch.json`` alone, a
  branch's first file, does not count: it names what is to be made)."""
  return any(os.path.basename(p) != BRANCH_FILE for p in _run_paths(workdir))


def clear(workdir: str) -> None:
  """Removes a run's files from ``workdir``, nothing else."""
  for path in _run_paths(workdir):
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


def check_writable(workdir: str) -> None:
  """Creates ``workdir`` if needed; a clear error if it cannot be used."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir} is a file, not a folder; choose "
                       "a folder (it is created if missing).")
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, ".write_test")
    with open(probe, "w") as f:
      f.write("")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(
        f"cannot write to --workdir={workdir} ({e.strerror or e}); choose a "
        "folder you can write to.") from e


def difference(path: str, config) -> tuple[list[str], str]:
  """The fields in which ``config`` differs from the run's ``config.json``
  at ``path``, and their description."""
  new = config_fields(config)
  try:
    with open(path) as f:
      old = flatten(json.load(f))
  except (OSError, ValueError) as e:
    reason = f"unreadable {CONFIG_FILE} ({e})"
    return [reason], reason
  fields = differing_fields(old, new)
  return fields, _describe(fields, old, new)


def check(workdir: str, config: ml_collections.ConfigDict,
          overwrite: bool = False) -> None:
  """Raises the ``WorkdirError`` that ``prepare`` would, writing nothing
  (a sweep checks every member's folder before any member trains)."""
  if not os.path.isdir(workdir):
    if os.path.exists(workdir):
      check_writable(workdir)  # a file in the way: its error
    return
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path):
    if overwrite:
      return
    fields, what = difference(path, config)
    if fields:
      raise WorkdirError(
          f"--workdir={workdir} holds a run made by another config ({what}). "
          "Its checkpoints and metrics are left as they are. Choose a new "
          "--workdir for this config, or rerun with --overwrite to delete "
          f"that run and start over there. (Fields that may change on "
          f"resume: {', '.join(RESUMABLE)}.)")
  elif nested_runs(workdir):
    runs = nested_runs(workdir)
    raise WorkdirError(
        f"--workdir={workdir} holds the runs of a comparison or a sweep in "
        f"its folders ({', '.join(runs[:6])}{' ...' if len(runs) > 6 else ''}"
        "); a single run written beside them would mix with them, and "
        "--overwrite does not delete them. Choose a new --workdir, or "
        f"{workdir}/<name> to resume one of them.")
  elif has_run(workdir) and not overwrite:
    raise WorkdirError(
        f"--workdir={workdir} holds checkpoints or metrics but no "
        f"{CONFIG_FILE}, so the config that made them is unknown; they are "
        "left as they are. Choose a new --workdir, or rerun with "
        "--overwrite to delete them and start over there.")


def overwritten(workdir: str, config: ml_collections.ConfigDict,
                overwrite: bool) -> str | None:
  """Why ``prepare(workdir, config, overwrite)`` deletes the run in
  ``workdir`` (another config's, or one whose config is unknown), or
  ``None`` where it keeps it."""
  if not overwrite:
    return None
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path):
    fields, what = difference(path, config)
    return "made by another config: " + what if fields else None
  return f"no {CONFIG_FILE}, config unknown" if has_run(workdir) else None


def prepare(workdir: str, config: ml_collections.ConfigDict,
            overwrite: bool = False) -> None:
  """Checks that ``config`` may train in ``workdir``; writes ``config.json``.

  Args:
    workdir: the run's folder (created if missing).
    config: the run's resolved config (one method).
    overwrite: start over: remove the files of a previous run made by
      another config instead of refusing.

  Raises:
    WorkdirError: ``workdir`` is unusable, or holds a run of another config
      (and ``overwrite`` is false). Nothing is changed on disk then.
  """
  check_writable(workdir)
  check(workdir, config, overwrite)
  path = os.path.join(workdir, CONFIG_FILE)
  why = overwritten(workdir, config, overwrite)
  if why:
    overwrite_run(workdir, why)
  text = config.to_json_best_effort(indent=2)
  try:
    with open(path) as f:
      unchanged = f.read() == text
  except OSError:
    unchanged = False
  if not unchanged:  # atomic: a kill never leaves it empty or half written
    files.write_atomic(path, text)


def _tuples(tree):
  """JSON's lists back to the tuples the configs hold."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was made by, from its ``config.json``.

  Raises:
    WorkdirError: ``workdir`` has no readable ``config.json``.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      tree = _tuples(json.load(f))
  except (OSError, ValueError) as e:
    raise WorkdirError(
        f"cannot read the run's config {path} ({e}); it is written when a "
        "run starts, so this folder is not a run, or the file is damaged."
    ) from e
  return ml_collections.ConfigDict(with_added_fields(tree))


def read_one_run_config(workdir: str) -> ml_collections.ConfigDict:
  """``read_config`` for a tool that reads one run: a sweep's or a
  comparison's folder (several runs, no config of its own) is refused,
  naming a member to give instead.

  Raises:
    WorkdirError: ``workdir`` holds several runs, or no readable config.
  """
  nested = nested_runs(workdir)
  if not os.path.isfile(os.path.join(workdir, CONFIG_FILE)) and nested:
    raise WorkdirError(
        f"{workdir} holds several runs ({', '.join(nested[:6])}); give one "
        f"of them, e.g. {os.path.join(workdir, nested[0])}.")
  return read_config(workdir)


def with_added_fields(tree: dict) -> dict:
  """``tree`` (a config saved before some of ``ADDED_FIELDS`` existed) with
  each missing one at the value that behaves as the code did then, so that
  a reader (``experiments.evaluate``) rebuilds the run as it trained
  (fields that only matter to methods the run lacks: ``READ_DEFAULTS``)."""
  flat = flatten(tree)
  for key, neutral in ADDED_FIELDS.items():
    if key in flat:
      continue
    if callable(neutral):
      neutral = neutral(flat)
    parent, name = key.rsplit(".", 1)
    node = tree
    for part in parent.split("."):
      node = node.get(part) if isinstance(node, dict) else None
    if neutral is ANY:
      neutral = READ_DEFAULTS.get(key, ANY)
    if neutral is not ANY and isinstance(node, dict):
      node[name] = tuple(neutral) if isinstance(neutral, list) else neutral
  return tree


def read_summary(workdir: str) -> dict | None:
  """The summary a finished run left in ``workdir``, if any."""
  path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def write_summary(workdir: str, summary: dict) -> None:
  files.write_atomic(os.path.join(workdir, SUMMARY_FILE),
                     json.dumps(summary, indent=2))
