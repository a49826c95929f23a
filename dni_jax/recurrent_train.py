"""The training loop of the sequence tasks (recurrent DNI, REFERENCE.md §3).

One run trains ``config.method`` (bptt, dni or dni_aux) for
``config.num_steps`` windows of ``config.unroll`` steps, with the same
bookkeeping as the feed-forward loop (``dni_jax.train``): ``metrics.jsonl``,
a progress line, Orbax checkpoints, exact resumption, a clean stop on NaN.

- Copy / Repeat Copy log ``length`` (the current curriculum length),
  ``max_length_solved`` and ``bits_per_seq`` (wrong bits per episode).
- Character corpora log ``bpc`` (train), and at every evaluation ``bpc`` on
  the valid and test splits; the run stops early when the valid BPC has not
  improved for ``config.patience`` evaluations. Every record carries
  ``chars``, the training characters seen per stream times the streams.
"""

from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dni_jax import experiment
from dni_jax import rnn
from dni_jax import synthesizers
from dni_jax import tbptt
from dni_jax.checkpoint import Checkpointer
from dni_jax.data import char_corpus
from dni_jax.data import copy_tasks
from dni_jax.metrics_log import read_metrics

COPY_TASKS = ("copy", "repeat_copy")


def load_corpus(config: ml_collections.ConfigDict) -> char_corpus.Corpus:
  if config.data.name == "ptb_char":
    return char_corpus.load_ptb_char(config.data.dir)
  return char_corpus.load_tiny_shakespeare(config.data.tfds_data_dir or None,
                                           config.data.download)


def build_task(config: ml_collections.ConfigDict):
  """``(task, data, corpus)``: the task, its device arrays, the corpus (LM)."""
  if config.data.name in COPY_TASKS:
    d = config.data
    task = copy_tasks.CopyTask(
        config.batch_size, config.unroll, repeat=d.name == "repeat_copy",
        num_bits=d.num_bits, max_repeats=d.max_repeats,
        start_length=d.start_length, threshold=d.threshold,
        check_every=d.check_every, seed=config.seed)
    return task, {}, None
  corpus = load_corpus(config)
  train_streams = char_corpus.streams(corpus.splits["train"],
                                      config.batch_size)
  task = char_corpus.CharStreamTask(config.batch_size, config.unroll,
                                    corpus.vocab_size, train_streams.shape[1])
  return task, jnp.asarray(train_streams), corpus


def build(config: ml_collections.ConfigDict, task) -> tbptt.RecurrentDNI:
  core = rnn.RecurrentCore(config.model.kind, config.model.width,
                           task.num_outputs, task.vocab_size)
  d = config.dni
  synth = (synthesizers.MLPSynthesizer(tuple(d.hidden), d.use_batch_norm)
           if d.synthesizer == "mlp" else synthesizers.LinearSynthesizer())
  return tbptt.build(config.method, core, task.loss, synth, d.sg_scale,
                     d.aux_weight)


def example_input(task, batch_size: int) -> jax.Array:
  if task.vocab_size is not None:
    return jnp.zeros((batch_size,), jnp.int32)
  return jnp.zeros((batch_size, task.input_size), jnp.float32)


@functools.partial(jax.jit, static_argnums=0)
def _eval_chunk(core, params, state, inputs, targets, mask):
  end, _, logits = rnn.unroll(core, params, state, inputs)
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return end, jnp.sum(xent * mask)


def evaluate_lm(core: rnn.RecurrentCore, params, tokens: np.ndarray,
                num_streams: int, chunk: int = 500) -> dict:
  """Bits per character of ``tokens``, cut into ``num_streams`` streams.

  Each stream starts from the zero state and carries it to its end; every
  character after a stream's first is predicted once.
  """
  num_streams = max(1, min(num_streams, len(tokens) // 2))
  rows = char_corpus.streams(tokens, num_streams)
  inputs, targets = rows[:, :-1], rows[:, 1:]
  length = inputs.shape[1]
  padded = -(-length // chunk) * chunk
  pad = ((0, 0), (0, padded - length))
  inputs, targets = np.pad(inputs, pad), np.pad(targets, pad)
  mask = np.pad(np.ones((num_streams, length), np.float32), pad)
  state = core.initial_state(num_streams)
  total = 0.0
  for start in range(0, padded, chunk):
    sl = slice(start, start + chunk)
    state, nats = _eval_chunk(core, params, state, inputs[:, sl],
                              targets[:, sl], mask[:, sl])
    total += float(nats)
  nats = total / (num_streams * length)
  return {"loss": nats, "bpc": char_corpus.bits_per_char(nats)}


def _derive(config, task):
  chars_per_step = config.batch_size * config.unroll

  def derive(step, means):
    out = {"chars": step * chars_per_step}
    if means.get("episodes"):  # copy tasks, once an episode has ended
      out["bits_per_seq"] = means["bit_errors"] / means["episodes"]
    if task.vocab_size is not None:
      out["bpc"] = char_corpus.bits_per_char(means["loss"])
    return out
  return derive


def _early_stopping(records: list[dict], patience: int) -> tuple[float, int]:
  """``(best valid bpc, evaluations since it)`` from logged records."""
  best, since = math.inf, 0
  for r in records:
    if r["split"] == "valid":
      if r["bpc"] < best:
        best, since = r["bpc"], 0
      else:
        since += 1
  return best, since


def train_one(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains one recurrent method; returns its summary."""
  from dni_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  os.makedirs(workdir, exist_ok=True)
  task, data, corpus = build_task(config)
  rdni = build(config, task)
  optimizers = experiment.build_optimizers(config)
  state = tbptt.init_train_state(
      rdni, optimizers, jax.random.PRNGKey(config.seed), config.batch_size,
      example_input(task, config.batch_size), task.init_state())
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  state, start_step = checkpointer.restore_or(state)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  if start_step:
    print(f"[{config.method}] resuming from step {start_step} in {workdir}")
  is_lm = corpus is not None
  run = train_lib._Run(  # pylint: disable=protected-access
      config, workdir, start_step, checkpointer,
      last_keys=("length", "max_length_solved"),
      derive=_derive(config, task),
      shown=("loss", "bpc", "bits_per_seq", "length", "synth_loss"))
  best, since = _early_stopping(read_metrics(run.log.path), config.patience)
  step_fn = tbptt.make_train_step(rdni, optimizers, task)
  chars_per_step = config.batch_size * config.unroll
  stopped_early = False
  pending = None
  for step in range(start_step, config.num_steps):
    state, metrics = step_fn(state, data)
    if pending is not None:  # the device is already busy with this step
      run.record(*pending)
    pending, done = (step + 1, metrics), step + 1
    at = lambda every: done % every == 0 or done == config.num_steps
    if not (at(config.log_every) or (is_lm and at(config.eval_every)) or
            at(config.checkpoint_every)):
      continue
    run.record(*pending)
    pending = None
    if at(config.log_every):
      run.flush_train(done)
    if is_lm and at(config.eval_every):
      for split in ("valid", "test"):
        result = evaluate_lm(rdni.core, state.params, corpus.splits[split],
                             config.eval_batch_size)
        result["chars"] = done * chars_per_step
        run.log.write(done, split, result)
        print(f"[{config.method}] step {done} | {split} bpc "
              f"{result['bpc']:.4f}", flush=True)
        if split == "valid":
          if not math.isfinite(result["bpc"]):
            run.diverged(done, f"valid bpc = {result['bpc']}")
          if result["bpc"] < best:
            best, since = result["bpc"], 0
          else:
            since += 1
    if at(config.checkpoint_every) or (
        config.patience and since >= config.patience):
      if not train_lib._all_finite(state):  # pylint: disable=protected-access
        run.diverged(done, "a parameter or optimiser state is NaN/Inf")
      checkpointer.save(done, state)
    if config.patience and since >= config.patience:
      print(f"[{config.method}] early stop at step {done}: valid bpc has not "
            f"improved on {best:.4f} for {since} evaluations", flush=True)
      stopped_early = True
      break
  checkpointer.close()
  summary = summarize(read_metrics(run.log.path),
                      seconds=time.time() - run.start_time)
  summary["stopped_early"] = stopped_early
  return summary


def summarize(records: list[dict], seconds: float | None = None) -> dict:
  """Final numbers of a recurrent run (see ``report.recurrent_table``)."""
  train = [r for r in records if r["split"] == "train"]
  valid = [r for r in records if r["split"] == "valid"]
  test = {r["step"]: r for r in records if r["split"] == "test"}
  best = min(valid, key=lambda r: r["bpc"]) if valid else None
  last = train[-1] if train else {}
  return {
      "step": max((r["step"] for r in records), default=0),
      "chars": last.get("chars"),
      "train": last,
      "max_length_solved": last.get("max_length_solved"),
      "best_valid_bpc": best["bpc"] if best else None,
      "test_bpc_at_best_valid": (test[best["step"]]["bpc"]
                                 if best and best["step"] in test else None),
      "best_step": best["step"] if best else None,
      "seconds": seconds,
  }
