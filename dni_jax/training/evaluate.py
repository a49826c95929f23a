"""A finished (or interrupted) run's latest checkpoint, evaluated again.

``evaluate_workdir(workdir)`` rebuilds each run in ``workdir`` from its own
``config.json`` (the data, the network, the loop), restores the latest
Orbax checkpoint into it and runs the loop's evaluation: the test split
(feed-forward and two-network runs), valid and test bits per character
(character corpora). Copy tasks have no held-out split; their result is the
last train record logged up to the checkpoint. A comparison workdir (one
``<method>/`` folder per method) or a sweep's (one folder per member) gives
one result per folder. Nothing in the workdir is written.
``evaluate_online(run_dir)`` scores a character run's held-out text while
training on it (dynamic evaluation). ``restore_run(workdir)`` restores one
recurrent run for the tools that measure it (``experiments.synth_fit``,
``experiments.sg_alignment``, ``evaluate_online``).

  python -m experiments.evaluate <workdir>
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp

from dni_jax.core import tbptt
from dni_jax.data import char_corpus
from dni_jax.errors import CheckpointError
from dni_jax.errors import ConfigError
from dni_jax.errors import WorkdirError
from dni_jax.training import experiment
from dni_jax.training import families
from dni_jax.training import recurrent
from dni_jax.training import workdir as workdir_lib
from dni_jax.training import checkpoint as checkpoint_lib
from dni_jax.training.metrics_log import read_metrics


def run_dirs(workdir: str) -> dict[str, str]:
  """``{name: folder}`` of the runs in ``workdir``.

  ``workdir`` itself if it holds a run (named by its method), else each
  subfolder that holds one (a comparison's methods, a sweep's members).

  Raises:
    WorkdirError: ``workdir`` is missing, not a folder, or holds no run.
  """
  if not os.path.exists(workdir):
    raise WorkdirError(
        f"{workdir} does not exist; give the --workdir of a run that "
        "experiments.main (or experiments.sweep) trained, e.g. "
        "python -m experiments.evaluate /tmp/dni_jax/binary_addition.")
  if not os.path.isdir(workdir):
    raise WorkdirError(f"{workdir} is a file, not a run's folder; give the "
                       "--workdir a run was trained into.")
  config_file = workdir_lib.CONFIG_FILE
  if os.path.exists(os.path.join(workdir, config_file)):
    return {str(workdir_lib.read_config(workdir).method): workdir}
  found = {name: os.path.join(workdir, name)
           for name in sorted(os.listdir(workdir))
           if os.path.isfile(os.path.join(workdir, name, config_file))}
  if not found:
    raise WorkdirError(
        f"{workdir} is not a run: it has no {config_file}, and none of its "
        f"folders has one (a comparison keeps each method in "
        f"<workdir>/<method>/). Give the --workdir that experiments.main or "
        "experiments.sweep trained into.")
  return found


def evaluate_run(run_dir: str, data_dir: str | None = None) -> dict:
  """The evaluation of the latest checkpoint of the run in ``run_dir``.

  ``data_dir``: read the data from this folder instead of the run's
  ``data.dir`` (another copy of the dataset, or other text in the same
  files, e.g. a slice of the training split saved as the held-out ones).

  Returns:
    ``{"method", "step", "checkpoints", "splits": {split: metrics}}``,
    ``checkpoints`` being the folder restored from. A run whose loop has no
    evaluation (Copy tasks) has ``{"train": metrics}`` in ``splits``: its
    last train record up to the checkpoint's step.

  Raises:
    WorkdirError: no readable ``config.json``.
    CheckpointError: no checkpoint yet, or one that does not fit the config.
    ConfigError: the recorded config is no longer usable here (e.g. its
      data.dir is missing).
  """
  config = workdir_lib.read_config(run_dir)
  if data_dir:
    config.data.dir = data_dir
  directory = os.path.join(run_dir, "checkpoints")
  no_checkpoint = (
      f"{run_dir} holds a run ({workdir_lib.CONFIG_FILE}) but no checkpoint "
      f"yet: the first is saved at step "
      f"{min(config.checkpoint_every, config.num_steps)}. Train it on (rerun "
      "the command that started it; it resumes), then evaluate.")
  if workdir_lib.checkpoint_step(run_dir) is None:
    raise CheckpointError(no_checkpoint)
  if any(name.endswith(".npz") for name in os.listdir(directory)):
    raise CheckpointError(
        f"{directory} holds one process's share of a run of several "
        "processes (<step>.npz); evaluate it with the processes that "
        "trained it (experiments.launch), not on its own.")
  families.validate(config)
  loop = families.family_of(config).loop.make_loop(config)
  state, step = checkpoint_lib.restore_newest_complete(
      directory, loop.init(), no_checkpoint)
  if loop.evaluate is not None:
    splits = {split: {k: float(v) for k, v in metrics.items()}
              for split, metrics in loop.evaluate(state, step).items()}
  else:
    records = [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl"))
               if r["split"] == "train" and r["step"] <= step]
    splits = {"train": {k: v for k, v in records[-1].items()
                        if k not in ("step", "split")} if records else {}}
  return {"method": str(config.method), "step": step,
          "checkpoints": os.path.abspath(directory), "splits": splits}


def evaluate_workdir(workdir: str,
                     data_dir: str | None = None) -> dict[str, dict]:
  """``{name: evaluate_run(folder, data_dir)}`` of every run in ``workdir``.

  ``workdir`` is a run's folder (one entry, named by its method), or a
  comparison's or sweep's (one entry per method or member folder).
  """
  return {name: evaluate_run(path, data_dir)
          for name, path in run_dirs(str(workdir)).items()}


def restore_run(workdir: str, synthesizer: bool = True,
                data_dir: str | None = None):
  """A recurrent run's ``(config, task, data, rdni, optimizers, state,
  step)`` at its newest complete checkpoint, for tools that read a run
  (``experiments.synth_fit``, ``experiments.sg_alignment``): nothing is
  written. ``synthesizer``: refuse a run without one (bptt). ``data_dir``:
  read the data from this folder instead of the run's ``data.dir``.

  Raises:
    ConfigError: the folder holds no recurrent run (of dni or dni_aux, with
      ``synthesizer``).
    CheckpointError: it holds no complete checkpoint.
  """
  config = workdir_lib.read_one_run_config(workdir)
  if data_dir:
    config.data.dir = data_dir
  families.validate(config)
  methods = ("dni", "dni_aux") if synthesizer else tbptt.METHODS
  if (families.family_of(config).name != "recurrent" or
      str(config.method) not in methods):
    raise ConfigError(
        f"{workdir} is a {config.method} run of {config.data.name}, which "
        f"has no recurrent {'synthesizer' if synthesizer else 'core'}; give "
        f"the folder of a recurrent {' or '.join(methods)} run (Copy, Repeat "
        "Copy, PTB; a sweep's: one member's folder, e.g. <workdir>/seed=0).")
  task, data, _ = experiment.build_task(config)
  rdni = experiment.build_recurrent(config, task)
  optimizers = experiment.build_optimizers(config)
  state = tbptt.init_train_state(
      rdni, optimizers, jax.random.PRNGKey(config.seed), config.batch_size,
      recurrent.example_input(task, config.batch_size), task.init_state())
  state, step = checkpoint_lib.restore_newest_complete(
      os.path.join(workdir, "checkpoints"), state,
      f"{workdir} holds no complete checkpoint yet (or one of a run of "
      "several processes).")
  return config, task, data, rdni, optimizers, state, step


def evaluate_online(run_dir: str, splits=("valid", "test"),
                    data_dir: str | None = None) -> dict:
  """A character run's held-out splits scored while it trains on them.

  Dynamic evaluation (Krause et al. 2018) with the run's own update rule:
  each split, from the newest checkpoint (parameters, optimiser and
  synthesizer states as saved), is cut into ``config.batch_size`` streams
  from the zero state and run through the run's training step window by
  window; each window is scored by the parameters before its own update
  (as the training stream's logged ``bpc``). The optimiser's own step
  count, and so any learning-rate decay, carries on from the checkpoint;
  λ is the one the run trained with at the checkpoint's step (a warm-up,
  ``dni.sg_warmup``, does not start again).
  ``static_bpc`` scores the same characters of the same streams with the
  checkpoint's parameters held fixed, so the two differ only by the
  updates (it differs from the run's logged valid and test bpc, which cut
  the text into ``config.eval_batch_size`` streams). Nothing is written.

  Returns:
    ``{"method", "step", "checkpoints", "splits": {split: {"online_bpc",
    "static_bpc", "windows", "streams"}}}``.

  Raises:
    WorkdirError: ``run_dir`` holds several runs (give one of them).
    ConfigError: not a run of a character corpus.
    CheckpointError: no complete checkpoint.
  """
  config = workdir_lib.read_one_run_config(run_dir)
  if (config.data.name in experiment.COPY_TASKS or
      families.family_of(config).name != "recurrent"):
    raise ConfigError(
        f"{run_dir} is a run of {config.data.name}, which has no held-out "
        "text to score online; give a run of a character corpus (ptb_char, "
        "tiny_shakespeare), or drop --online.")
  config, _, _, rdni, optimizers, saved, step = restore_run(
      run_dir, synthesizer=False, data_dir=data_dir)
  if rdni.sg_warmup:
    # Each split's windows count from 0 (the task reads the step), so a
    # warm-up would start again: keep the λ of the checkpoint's step.
    saved = saved.replace(sg_scale=tbptt.warmed_scale(rdni, saved))
    rdni = dataclasses.replace(rdni, sg_warmup=0)
  corpus = experiment.load_corpus(config)
  results = {}
  for split in splits:
    rows = char_corpus.streams(corpus.splits[split], config.batch_size)
    task = char_corpus.CharStreamTask(config.batch_size, config.unroll,
                                      corpus.vocab_size, rows.shape[1])
    windows = (rows.shape[1] - 1) // config.unroll
    step_fn = tbptt.make_train_step(rdni, optimizers, task)
    # A copy per split: the step donates its state.
    state = jax.tree_util.tree_map(jnp.copy, saved).replace(
        step=jnp.zeros_like(saved.step),
        carry=rdni.core.initial_state(config.batch_size))
    data = jnp.asarray(rows)
    losses = []  # on the device: no host round trip per window
    for _ in range(windows):
      state, metrics = step_fn(state, data)
      losses.append(metrics["loss"])
    nats = float(jnp.sum(jnp.stack(losses)))
    static = recurrent.score_rows(
        rdni.core, saved.params, rows[:, :windows * config.unroll + 1])
    results[split] = {
        "online_bpc": char_corpus.bits_per_char(nats / windows),
        "static_bpc": static["bpc"], "windows": windows,
        "streams": config.batch_size}
  return {"method": str(config.method), "step": step,
          "checkpoints": os.path.abspath(os.path.join(run_dir, "checkpoints")),
          "splits": results}
