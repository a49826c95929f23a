"""``train_and_evaluate(config, workdir)``: the entry point of every run.

Validates the config, then trains each method named in ``config.method``
with the loop of its task family: ``feedforward`` (images, binary addition),
``pipelined`` (stages on several devices), ``recurrent`` (sequence tasks) or
``two_networks`` (two networks at two timescales). Several comma-separated methods each run
in ``workdir/<method>`` and a comparison table is printed at the end; a
single method prints the same table with one row.
"""

from __future__ import annotations

import os

import jax
import ml_collections

from dni_jax.errors import ConfigError
from dni_jax.errors import WorkdirError
from dni_jax.training import files
from dni_jax.training import families
from dni_jax.training import run as run_lib
from dni_jax.training import workdir as workdir_lib


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       overwrite: bool = False, branch_from: str | None = None,
                       branch_step: int | None = None) -> dict[str, dict]:
  """Trains every method named in ``config.method``; returns their summaries.

  Prints a table of the results at the end: one row for a single method,
  one row per method for a comparison.

  Args:
    config: the experiment's config.
    workdir: the run's folder; a comparison puts each method in
      ``workdir/<method>``. Rerunning into it resumes (or extends
      ``num_steps``); a workdir made by another config is refused.
    overwrite: delete a run made by another config instead of refusing.
    branch_from, branch_step: start a new run in ``workdir`` from the
      checkpoint of ``branch_step`` (default the newest) of the run in
      ``branch_from``, with this config's hyper-parameters
      (``dni_jax.training.branch``).
  """
  families.validate(config)
  names = families.methods(config)
  family = families.family_of(config)
  if branch_from is not None and (len(names) > 1 or jax.process_count() > 1
                                  or config.parallel.num_devices):
    what = (f"compares {len(names)} methods" if len(names) > 1 else
            "runs on several devices or processes")
    raise ConfigError(
        f"--branch_from starts one run from another's checkpoint, and this "
        f"config {what}. Give one method (--config.method=<name>) and "
        "parallel.num_devices=0, in one process.")
  if len(names) > 1:
    workdir_lib.check_writable(workdir)
    if workdir_lib.has_run(workdir):
      if not overwrite:
        raise WorkdirError(
            f"--workdir={workdir} holds a single-method run, and a "
            f"comparison of {len(names)} methods writes each into "
            f"{workdir}/<method>; choose a new --workdir for the comparison, "
            "or rerun with --overwrite to delete that run.")
      with files.WorkdirLock(workdir, "--overwrite"):
        workdir_lib.overwrite_run(
            workdir, f"a single-method run, where a comparison of "
            f"{len(names)} methods goes")
  summaries = {}
  for name in names:
    run_config = ml_collections.ConfigDict(config.to_dict())
    run_config.method = name
    run_dir = workdir if len(names) == 1 else os.path.join(workdir, name)
    if config.parallel.num_devices and jax.process_index() > 0:
      # Process 0 keeps the run's logs; each other process its own state.
      run_dir = os.path.join(run_dir, f"process_{jax.process_index()}")
    summaries[name] = run_lib.run(
        family.loop.make_loop(run_config), run_config, run_dir, overwrite,
        None if branch_from is None else (branch_from, branch_step))
  table = family.table(summaries)
  what = "comparison" if len(names) > 1 else "result"
  print(f"\n{config.data.name}: {what} after {config.num_steps} steps "
        f"(workdir {workdir})\n" + table, flush=True)
  return summaries
