"""Run bookkeeping shared by every training loop.

A kind of training (feed-forward, sequence tasks, and later pipelined,
two-network or swept runs) describes itself as a ``Loop``: how to make its
initial state, one jitted step, an evaluation, and its own metrics. ``run``
does everything else, the same way for all of them:

- the workdir, ``config.json`` and Orbax checkpoints in ``checkpoints/``; a
  workdir made by another config is refused (``dni_jax.training.workdir``);
- a lock on the workdir (``files.WorkdirLock``): a second process is refused;
- exact resumption from the last intact checkpoint (``metrics.jsonl`` is cut
  back to the step resumed from, and the train averages' unwritten sums are
  saved with every checkpoint, so the file equals an uninterrupted run's); a
  finished run says so and returns its summary;
- metrics to ``metrics.jsonl`` and to TensorBoard event files;
- the host loop, which dispatches step ``n+1`` before reading step ``n``'s
  metrics;
- train-metric averages every ``config.log_every`` steps, with a progress
  line; an evaluation every ``config.eval_every`` steps; a checkpoint every
  ``config.checkpoint_every`` steps and at the end;
- a clean stop on NaN/Inf (in a metric, an evaluation, or the state before a
  save) that keeps the last good checkpoint, and on Ctrl-C (``RunInterrupted``,
  naming the step and the checkpoint a rerun resumes from);
- early stopping, when the loop asks for it after an evaluation;
- ``summary.json``, the loop's summary of the finished run.

The pieces are public so that a loop that does not fit ``run`` (e.g. several
runs advanced by one vmapped step) can reuse them: ``Recorder`` (metric
averages, progress line, ``metrics.jsonl``, the divergence error) and
``all_finite``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from dni_jax.errors import RunInterrupted
from dni_jax.errors import TrainingDivergedError
from dni_jax.training import branch as branch_lib
from dni_jax.training import files
from dni_jax.training import workdir as workdir_lib
from dni_jax.training.checkpoint import Checkpointer
from dni_jax.training.checkpoint import ProcessLocalCheckpointer
from dni_jax.training.metrics_log import MetricsLog
from dni_jax.training.metrics_log import read_metrics
from dni_jax.training.tensorboard import EventLog

Metrics = dict  # name -> scalar
State = Any  # a pytree


@dataclasses.dataclass(frozen=True)
class Loop:
  """What one kind of training supplies to ``run``.

  Attributes:
    init: ``() -> state``, a fresh initial state; also the template (tree
      structure, shapes, dtypes) that a checkpoint is restored into.
    step: ``(state, step) -> (state, metrics)``: one update, ``step`` being
      the number of updates done before it (the loop makes that step's batch
      from it). Jit it and donate the state; ``run`` reads the metrics one
      step late, so the device is never idle waiting for the host.
    summarize: ``(records, seconds) -> summary``, the run's final numbers
      from its ``metrics.jsonl`` records.
    evaluate: ``(state, step) -> {split: metrics}``, called every
      ``config.eval_every`` steps and at the end; ``None``: never.
    derive: ``(step, means) -> metrics`` added to each interval's train
      averages (e.g. bits per character from the loss).
    last_keys: train metrics logged at their last value, not their mean
      (e.g. a curriculum length).
    shown: train metrics on the progress line, where present.
    eval_shown: evaluation metrics printed at every evaluation, where
      present; ``()`` prints nothing.
    should_stop: ``(records) -> reason or None``, asked after every
      evaluation with every record so far; a reason ends the run early
      (after a checkpoint).
    multi_step: ``(state, step) -> (state, metrics)``: ``steps_per_call``
      updates in one call (e.g. a ``lax.scan`` of ``step``), each metric
      with a trailing axis of one entry per update; ``None``: one update
      per call. Used where a chunk of ``steps_per_call`` fits before the
      next log, evaluation, checkpoint or the end, so the state at every
      one of those is the same as with ``step`` alone.
    steps_per_call: the updates of one ``multi_step`` call.
    freeze: a vmapped group's loop (``dni_jax.training.sweep``):
      ``(member) -> None`` leaves that member's state as it is in every
      later step and skips it in ``evaluate`` (it stopped early); ``None``:
      a loop of one run.
  """
  init: Callable[[], State]
  step: Callable[[State, int], tuple[State, Metrics]]
  summarize: Callable[[list[dict], float], dict]
  evaluate: Callable[[State, int], dict[str, Metrics]] | None = None
  derive: Callable[[int, Metrics], Metrics] | None = None
  last_keys: tuple[str, ...] = ()
  shown: tuple[str, ...] = ("loss", "accuracy")
  eval_shown: tuple[str, ...] = ()
  should_stop: Callable[[list[dict]], str | None] | None = None
  multi_step: Callable[[State, int], tuple[State, Metrics]] | None = None
  steps_per_call: int = 1
  freeze: Callable[[int], None] | None = None


@jax.jit
def _finite_flags(state) -> jax.Array:
  """One bool per floating-point leaf: no NaN/Inf in it (compiled once)."""
  return jnp.array([jnp.all(jnp.isfinite(x))
                    for x in jax.tree_util.tree_leaves(state)
                    if jnp.issubdtype(x.dtype, jnp.inexact)] or [True])


def all_finite(state: State) -> bool:
  """Whether every floating-point leaf of ``state`` is free of NaN/Inf.

  A state spread over several devices (a pipeline's) is checked device by
  device.
  """
  leaves = jax.tree_util.tree_leaves(state)
  by_device = {}
  for leaf in leaves:
    devices = getattr(leaf, "devices", lambda: {None})()
    by_device.setdefault(next(iter(devices)) if len(devices) == 1 else None,
                         []).append(leaf)
  if len(by_device) <= 1:
    return bool(_finite_flags(state).all())
  return all(bool(_finite_flags(part).all()) for part in by_device.values())


def accumulate(sums: dict, counts: dict, values: dict,
               last_keys: tuple[str, ...]) -> None:
  """Adds one step's ``values`` to an interval's ``sums`` and ``counts``
  (a ``last_keys`` metric keeps its latest value). The values are floats,
  or a group's float64 arrays with one entry per member."""
  for k, v in values.items():
    sums[k] = v if k in last_keys else sums.get(k, 0.0) + v
    counts[k] = counts.get(k, 0) + 1


class Recorder:
  """The mutable bookkeeping of one run's host loop (never inside jit).

  Averages train metrics over an interval, writes them and evaluations to
  ``metrics.jsonl`` and TensorBoard, prints the progress line, and raises
  the divergence error that names the last good checkpoint.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               start_step: int, checkpointer: Checkpointer,
               loop: Loop):
    self.config, self.loop = config, loop
    self.checkpointer = checkpointer
    self.log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), start_step)
    self.events = EventLog(workdir, start_step)
    # Per-metric sums and counts: a metric may be absent at some steps
    # (e.g. while a pipeline fills).
    self.sums, self.counts, self.count = {}, {}, 0
    self.start_step, self.start_time = start_step, time.time()
    self.last_step = start_step  # the step being run, for messages

  def _prefix(self, step: int) -> str:
    return f"[{self.config.method}] step {step}"

  def record(self, step: int, metrics: Metrics) -> None:
    """Reads a step's metrics on the host; stops the run on NaN/Inf."""
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
      self.diverged(step, f"{bad[0]} = {values[bad[0]]}")
    accumulate(self.sums, self.counts, values, self.loop.last_keys)
    self.count += 1

  def diverged(self, step: int, what: str):
    """Raises ``TrainingDivergedError``, naming what was kept."""
    last = self.checkpointer.latest_step()
    if last is None:
      kept = ("no checkpoint had been saved yet, so a rerun starts from "
              "step 0")
    else:
      kept = (f"the last good checkpoint (step {last}) is kept in "
              f"{self.checkpointer.directory}, and a rerun with the same "
              "--workdir resumes from it")
    lower = float(f"{self.config.opt.learning_rate / 10:.2g}")
    raise TrainingDivergedError(
        f"training diverged: {what} at step {step} (method "
        f"{self.config.method}, opt.learning_rate "
        f"{self.config.opt.learning_rate}); {kept}. To train with a lower "
        f"learning rate, run the same command with "
        f"--config.opt.learning_rate={lower} (or a lower dni.sg_scale) and "
        "either --overwrite, which deletes this diverged run, or a new "
        "--workdir: a changed learning rate is another config, which this "
        "workdir refuses.")

  def _write(self, step: int, split: str, metrics: Metrics) -> None:
    self.log.write(step, split, metrics)
    self.events.write(step, split, metrics)

  def interrupted(self, step: int) -> RunInterrupted:
    """The Ctrl-C error: where the run stopped, what a rerun resumes."""
    last = self.checkpointer.latest_step()
    kept = (f"a rerun of the same command resumes from the checkpoint of "
            f"step {last}" if last is not None else
            "no checkpoint had been saved yet, so a rerun starts from step 0")
    return RunInterrupted(f"[{self.config.method}] interrupted at step "
                          f"{step}; {kept}.")

  def close(self) -> None:
    self.events.close()

  def flush_events(self) -> None:
    """Writes TensorBoard's buffer (at every checkpoint)."""
    self.events.flush()

  def interval_state(self) -> dict:
    """The train averages' unwritten sums, saved with a checkpoint so that a
    resumed run writes the averages an uninterrupted one would."""
    return {"sums": dict(self.sums), "counts": dict(self.counts),
            "count": self.count}

  def restore_interval(self, saved: dict | None) -> None:
    """Continues the interval saved with the checkpoint resumed from."""
    if saved:
      self.sums = {k: float(v) for k, v in saved["sums"].items()}
      self.counts = {k: int(v) for k, v in saved["counts"].items()}
      self.count = int(saved["count"])

  def flush_train(self, step: int, interval: tuple | None = None) -> None:
    """Writes the interval's train averages and prints the progress line.

    ``interval``: ``(sums, counts, count)`` gathered elsewhere (a vmapped
    group's share of this run), instead of what ``record`` gathered.
    """
    if interval is not None:
      self.sums, self.counts, self.count = interval
    if not self.count:
      return
    last_keys = self.loop.last_keys
    means = {k: v if k in last_keys else v / self.counts[k]
             for k, v in self.sums.items()}
    if self.loop.derive is not None:
      means.update(self.loop.derive(step, means))
    self._write(step, "train", means)
    done = step - self.start_step
    rate = done / max(time.time() - self.start_time, 1e-9)
    eta = (self.config.num_steps - step) / max(rate, 1e-9)
    shown = " ".join(f"{k} {means[k]:.4f}" for k in self.loop.shown
                     if k in means)
    print(f"{self._prefix(step)}/{self.config.num_steps} | {shown} | "
          f"{rate:.1f} steps/s | ETA "
          f"{time.strftime('%H:%M:%S', time.gmtime(eta))}", flush=True)
    self.sums, self.counts, self.count = {}, {}, 0

  def stop_reason(self, should_stop, step: int, state: State) -> str | None:
    """Asked after an evaluation: why the run stops early (``should_stop``
    of the records so far), or ``None``. A vmapped group's recorder stops
    its members one by one (``dni_jax.training.sweep``)."""
    del step, state  # the run's checkpoint at the stop is train_steps'
    return None if should_stop is None else should_stop(self.log.records)

  def write_eval(self, step: int, split: str, metrics: Metrics) -> None:
    """Logs one split's evaluation; stops the run on NaN/Inf."""
    for k, v in metrics.items():
      if not math.isfinite(float(v)):
        self.diverged(step, f"{split} {k} = {float(v)}")
    self._write(step, split, metrics)
    shown = " ".join(f"{k} {float(metrics[k]):.4f}"
                     for k in self.loop.eval_shown if k in metrics)
    if shown:
      print(f"{self._prefix(step)} | {split} {shown}", flush=True)


def finished(loop: Loop, config, workdir: str, step: int) -> dict | None:
  """The summary of a run already finished in ``workdir``, else ``None``."""
  records = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
             if r["step"] <= step]
  stopped = bool(step and loop.should_stop is not None and
                 loop.should_stop(records))
  if step < config.num_steps and not stopped:
    return None
  summary = workdir_lib.read_summary(workdir)
  if summary is None or summary.get("step") != step:
    summary = loop.summarize(records, None)  # killed before it was written
    summary["stopped_early"] = stopped
    workdir_lib.write_summary(workdir, summary)
  how = "stopped early" if stopped else "finished"
  print(f"[{config.method}] already {how} at step {step} (num_steps "
        f"{config.num_steps}) in {workdir}; nothing to train. Raise "
        "--config.num_steps to train on.", flush=True)
  return summary


def run(loop: Loop, config: ml_collections.ConfigDict, workdir: str,
        overwrite: bool = False,
        branch_from: tuple[str, int | None] | None = None) -> dict:
  """Trains ``loop`` for ``config.num_steps`` steps in ``workdir``.

  Resumes from the last checkpoint in ``workdir`` if there is one; a run
  already finished there is not trained again.

  Args:
    loop: what to train.
    config: the run's config (one method).
    workdir: the run's folder.
    overwrite: if ``workdir`` holds a run of another config, delete it and
      start over instead of refusing.
    branch_from: ``(run, step)``: start from that run's checkpoint of
      ``step`` (``None``: its newest) with this config's hyper-parameters
      (``dni_jax.training.branch``); once ``workdir`` holds the branch's
      checkpoint, the run resumes it.

  Returns:
    ``loop.summarize(records, seconds)`` plus ``stopped_early`` (whether
    ``loop.should_stop`` ended the run).
  """
  workdir_lib.check_writable(workdir)
  with files.WorkdirLock(workdir, f"training {config.method}"):
    return _run_locked(loop, config, workdir, overwrite, branch_from)


def _run_locked(loop: Loop, config, workdir: str, overwrite: bool,
                branch_from=None) -> dict:
  staged = branch_lib.prepare(loop, config, workdir, branch_from, overwrite)
  workdir_lib.prepare(workdir, config, overwrite)
  directory = os.path.join(workdir, "checkpoints")
  checkpointer = (ProcessLocalCheckpointer(directory)
                  if jax.process_count() > 1 else Checkpointer(directory))
  try:
    if staged is not None:
      branch_lib.write(staged, workdir, checkpointer)
    if isinstance(checkpointer, Checkpointer):
      checkpointer.set_aside_incomplete()
    done = finished(loop, config, workdir, checkpointer.latest_step() or 0)
    if done is None:
      state, start_step = checkpointer.restore_or(loop.init())
  except BaseException:
    checkpointer.close()
    raise
  if done is not None:
    checkpointer.close()
    return done
  if start_step:
    print(f"[{config.method}] resuming from step {start_step} in {workdir}")
  recorder = Recorder(config, workdir, start_step, checkpointer, loop)
  if start_step:
    recorder.restore_interval(checkpointer.extra(start_step))
  _, stop_reason = train_steps_closing(loop, config, state, start_step,
                                       recorder)
  summary = loop.summarize(recorder.log.records,
                           time.time() - recorder.start_time)
  summary["stopped_early"] = stop_reason is not None
  workdir_lib.write_summary(workdir, summary)
  return summary


def train_steps_closing(loop: Loop, config, state, start_step: int,
                        recorder: Recorder) -> tuple[State, str | None]:
  """``train_steps``, then the recorder and its checkpointer closed.

  Ctrl-C becomes ``RunInterrupted``, naming the step and the checkpoint a
  rerun resumes from.
  """
  try:
    return train_steps(loop, config, state, start_step, recorder)
  except KeyboardInterrupt as e:
    if isinstance(e, RunInterrupted):
      raise
    raise recorder.interrupted(recorder.last_step) from None
  finally:
    recorder.close()
    recorder.checkpointer.close()


def train_steps(loop: Loop, config, state, start_step: int,
           recorder: Recorder) -> tuple[State, str | None]:
  """The host loop; returns the final state and why it stopped early.

  ``recorder`` is a ``Recorder`` or anything with its interface (a sweep's
  vmapped group fans it out to its members).
  """
  checkpointer = recorder.checkpointer
  stop_reason, pending = None, None
  step = start_step
  while step < config.num_steps:
    recorder.last_step = step
    calls = _updates_this_call(loop, config, step)
    if step == start_step:
      print(f"[{config.method}] compiling the step and running step "
            f"{step + 1} ...", flush=True)
    if calls == 1:
      state, metrics = loop.step(state, step)
    else:
      state, metrics = loop.multi_step(state, step)
    if step == start_step:
      jax.block_until_ready(metrics)
      print(f"[{config.method}] first step done in "
            f"{time.time() - recorder.start_time:.1f} s", flush=True)
    if pending is not None:  # the device is already busy with this step
      _record(recorder, *pending)
    pending, step = (step, metrics, calls), step + calls
    done = step
    at = lambda every: done % every == 0 or done == config.num_steps
    evaluate = loop.evaluate is not None and at(config.eval_every)
    if not (at(config.log_every) or evaluate or at(config.checkpoint_every)):
      continue
    _record(recorder, *pending)
    pending = None
    if at(config.log_every):
      recorder.flush_train(done)
    if evaluate:
      for split, result in loop.evaluate(state, done).items():
        recorder.write_eval(done, split, result)
      stop_reason = recorder.stop_reason(loop.should_stop, done, state)
    if at(config.checkpoint_every) or stop_reason:
      if not all_finite(state):
        recorder.diverged(done, "a parameter or optimiser state is NaN/Inf")
      checkpointer.save(done, state, extra=recorder.interval_state())
      recorder.flush_events()
    if stop_reason:
      print(f"[{config.method}] early stop at step {done}: {stop_reason}",
            flush=True)
      break
  return state, stop_reason


def _updates_this_call(loop: Loop, config, step: int) -> int:
  """``loop.steps_per_call`` if a chunk from ``step`` ends at or before the
  next log, evaluation, checkpoint and the end; else 1."""
  n = loop.steps_per_call
  if loop.multi_step is None or n <= 1:
    return 1
  every = [config.log_every, config.checkpoint_every]
  if loop.evaluate is not None:
    every.append(config.eval_every)
  boundary = min([(step // e + 1) * e for e in every if e > 0] +
                 [config.num_steps])
  return n if step + n <= boundary else 1


def _record(recorder, first: int, metrics, updates: int) -> None:
  """Records the metrics of ``updates`` updates from step ``first``."""
  if updates == 1:
    recorder.record(first + 1, metrics)
    return
  host = jax.device_get(metrics)  # one transfer for the whole chunk
  for j in range(updates):
    recorder.record(first + j + 1, {k: v[..., j] for k, v in host.items()})
