"""The training loop: ``train_and_evaluate(config, workdir)``.

One run trains ``config.method`` on ``config.data`` for ``config.num_steps``
steps: periodic evaluation on the test split, ``metrics.jsonl``, a progress
line, Orbax checkpoints, exact resumption from the last checkpoint, and a clean
stop on NaN/Inf that keeps the last good checkpoint. ``config.method`` may name
several methods, comma-separated: each then runs in ``workdir/<method>`` and a
comparison table is printed at the end.
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections

from dni_jax import experiment
from dni_jax import gradient_sources
from dni_jax import report
from dni_jax import step as step_lib
from dni_jax import train_state
from dni_jax.checkpoint import Checkpointer
from dni_jax.data import dataset as dataset_lib
from dni_jax.errors import TrainingDivergedError
from dni_jax.metrics_log import MetricsLog
from dni_jax.metrics_log import read_metrics


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, dict]:
  """Trains every method named in ``config.method``; returns their summaries."""
  experiment.validate(config)
  names = experiment.methods(config)
  recurrent = experiment.is_recurrent(config)
  if recurrent:
    from dni_jax import recurrent_train  # pylint: disable=g-import-not-at-top
  summaries = {}
  for name in names:
    run_config = ml_collections.ConfigDict(config.to_dict())
    run_config.method = name
    run_dir = workdir if len(names) == 1 else os.path.join(workdir, name)
    run = recurrent_train.train_one if recurrent else train_one
    summaries[name] = run(run_config, run_dir)
  if len(names) > 1:
    table = (report.recurrent_table if recurrent
             else report.comparison_table)(summaries)
    print(f"\n{config.data.name}: comparison after {config.num_steps} steps "
          f"(workdir {workdir})\n" + table, flush=True)
  return summaries


@jax.jit
def _finite_flags(state) -> jax.Array:
  """One bool per floating-point leaf: no NaN/Inf in it (compiled once)."""
  return jnp.array([jnp.all(jnp.isfinite(x))
                    for x in jax.tree_util.tree_leaves(state)
                    if jnp.issubdtype(x.dtype, jnp.inexact)] or [True])


def _all_finite(state) -> bool:
  return bool(_finite_flags(state).all())


def evaluate(eval_fn, state, dataset, batch_size: int) -> dict:
  """Example-weighted means of ``eval_fn``'s metrics over the whole split."""
  sums, count = {}, 0
  for batch in dataset_lib.eval_batches(dataset, batch_size):
    n = len(batch["labels"])
    for k, v in eval_fn(state, batch).items():
      sums[k] = sums.get(k, 0.0) + v * n
    count += n
  return {k: float(v) / count for k, v in jax.device_get(sums).items()}


class _Run:
  """The mutable bookkeeping of one run's host loop (never inside jit)."""

  def __init__(self, config, workdir, start_step, checkpointer,
               last_keys=(), derive=None, shown=("loss", "accuracy")):
    """Args beyond the obvious: ``last_keys``, metrics logged at their last
    value instead of their mean (e.g. a curriculum length); ``derive``, a
    function adding metrics to the interval's means (e.g. bits per
    character); ``shown``, the metrics on the progress line."""
    self.config, self.workdir = config, workdir
    self.checkpointer = checkpointer
    self.log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), start_step)
    self.sums, self.count = {}, 0
    self.last_keys, self.derive, self.shown = set(last_keys), derive, shown
    self.start_step, self.start_time = start_step, time.time()

  def record(self, step: int, metrics) -> None:
    """Reads a step's metrics on the host; stops the run on NaN/Inf."""
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
      self.diverged(step, f"{bad[0]} = {values[bad[0]]}")
    for k, v in values.items():
      self.sums[k] = v if k in self.last_keys else self.sums.get(k, 0.0) + v
    self.count += 1

  def diverged(self, step: int, what: str):
    last = self.checkpointer.latest_step()
    kept = (f"the last good checkpoint (step {last}) is kept in "
            f"{self.checkpointer.directory}" if last is not None
            else "no checkpoint had been saved yet")
    raise TrainingDivergedError(
        f"training diverged: {what} at step {step} (method "
        f"{self.config.method}, opt.learning_rate "
        f"{self.config.opt.learning_rate}); {kept}. Lower "
        "--config.opt.learning_rate (or dni.sg_scale) and run again: with the "
        "same --workdir it resumes from that checkpoint.")

  def flush_train(self, step: int) -> None:
    if not self.count:
      return
    means = {k: v if k in self.last_keys else v / self.count
             for k, v in self.sums.items()}
    if self.derive is not None:
      means.update(self.derive(step, means))
    self.log.write(step, "train", means)
    done = step - self.start_step
    rate = done / max(time.time() - self.start_time, 1e-9)
    eta = (self.config.num_steps - step) / max(rate, 1e-9)
    shown = " ".join(f"{k} {means[k]:.4f}" for k in self.shown if k in means)
    print(f"[{self.config.method}] step {step}/{self.config.num_steps} | "
          f"{shown} | {rate:.1f} steps/s | ETA "
          f"{time.strftime('%H:%M:%S', time.gmtime(eta))}", flush=True)
    self.sums, self.count = {}, 0


def _setup(config, workdir):
  """Data, network, optimisers and the (restored) state of one run."""
  train, test = experiment.load_data(config)
  net = experiment.build_network(config, train)
  optimizers = experiment.build_optimizers(config)
  source = gradient_sources.get_source(config.method)
  example = dataset_lib.batch_at(train, 0, config.batch_size, config.seed)
  state = train_state.init_train_state(
      net, optimizers, source, jax.random.PRNGKey(config.seed), example)
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  state, start_step = checkpointer.restore_or(state)
  return train, test, net, optimizers, source, state, checkpointer, start_step


def train_one(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains one method; returns its summary (see ``report.summarize``)."""
  os.makedirs(workdir, exist_ok=True)
  (train, test, net, optimizers, source, state, checkpointer,
   start_step) = _setup(config, workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  if start_step:
    print(f"[{config.method}] resuming from step {start_step} in {workdir}")
  run = _Run(config, workdir, start_step, checkpointer)
  step_fn = step_lib.make_train_step(net, optimizers, source,
                                     config.dni.track_alignment)
  eval_fn = step_lib.make_eval_step(net)
  pending = None
  for step in range(start_step, config.num_steps):
    state, metrics = step_fn(state, dataset_lib.batch_at(
        train, step, config.batch_size, config.seed))
    if pending is not None:  # the device is already busy with this step
      run.record(*pending)
    pending, done = (step + 1, metrics), step + 1
    at = lambda every: done % every == 0 or done == config.num_steps
    if at(config.log_every) or at(config.eval_every) or \
        at(config.checkpoint_every):
      run.record(*pending)
      pending = None
      if at(config.log_every):
        run.flush_train(done)
      if at(config.eval_every):
        run.log.write(done, "test", evaluate(eval_fn, state, test,
                                             config.eval_batch_size))
      if at(config.checkpoint_every):
        if not _all_finite(state):
          run.diverged(done, "a parameter or optimiser state is NaN/Inf")
        checkpointer.save(done, state)
  checkpointer.close()
  return report.summarize(read_metrics(run.log.path),
                          seconds=time.time() - run.start_time)
