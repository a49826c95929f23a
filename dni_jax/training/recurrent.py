"""The training loop of the sequence tasks (recurrent DNI, docs/method.md).

One run trains ``config.method`` (bptt, dni or dni_aux) for
``config.num_steps`` windows of ``config.unroll`` steps, with the run
bookkeeping every loop shares (``dni_jax.training.run``): ``metrics.jsonl``,
a progress line, Orbax checkpoints, exact resumption, a clean stop on NaN.

- Copy / Repeat Copy log ``length`` (the current curriculum length; Repeat
  Copy also ``repeats``, the current ``R_max``), ``max_length_solved``,
  ``max_task_length_solved`` (the paper's ``T_task``) and ``bits_per_seq``
  (wrong bits per episode).
- Character corpora log ``bpc`` (train), and at every evaluation ``bpc`` on
  the valid and test splits; the run stops early when the valid BPC has not
  improved for ``config.patience`` evaluations. Every record carries
  ``chars``, the training characters seen per stream times the streams.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dni_jax.core import recurrent
from dni_jax.core import tbptt
from dni_jax.data import char_corpus
from dni_jax.training import batching
from dni_jax.training import experiment
from dni_jax.training import run as run_lib


def example_input(task, batch_size: int) -> jax.Array:
  if task.vocab_size is not None:
    return jnp.zeros((batch_size,), jnp.int32)
  return jnp.zeros((batch_size, task.input_size), jnp.float32)


@functools.partial(jax.jit, static_argnums=0)
def _eval_chunk(core, params, state, inputs, targets, mask):
  end, _, logits = recurrent.unroll(core, params, state, inputs)
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return end, jnp.sum(xent * mask)


def evaluate_lm(core, params, tokens: np.ndarray,
                num_streams: int, chunk: int = 500) -> dict:
  """Bits per character of ``tokens``, cut into ``num_streams`` streams.

  ``core`` is any recurrent core (``dni_jax.core.recurrent``'s protocol).

  Each stream starts from the zero state and carries it to its end; every
  character after a stream's first is predicted once.
  """
  num_streams = max(1, min(num_streams, len(tokens) // 2))
  return score_rows(core, params, char_corpus.streams(tokens, num_streams),
                    chunk)


def score_rows(core, params, rows: np.ndarray, chunk: int = 500) -> dict:
  """Bits per character of ``rows`` ``[streams, L]``, each row a stream
  from the zero state; every character after a row's first is predicted
  once."""
  num_streams = rows.shape[0]
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
      out["xent_bits_per_seq"] = means["xent_bits"] / means["episodes"]
    if means.get("scored_bits"):
      out["xent_bits_per_bit"] = means["xent_bits"] / means["scored_bits"]
    if task.vocab_size is not None:
      out["bpc"] = char_corpus.bits_per_char(means["loss"])
    return out
  return derive


def early_stopping(records: list[dict], patience: int) -> tuple[float, int]:
  """``(best valid bpc, evaluations since it)`` from logged records."""
  best, since = math.inf, 0
  for r in records:
    if r["split"] == "valid":
      if r["bpc"] < best:
        best, since = r["bpc"], 0
      else:
        since += 1
  return best, since


def should_stop(config: ml_collections.ConfigDict):
  """``Loop.should_stop`` of a run: valid bpc not improved for
  ``config.patience`` evaluations (``None``: patience 0, never)."""
  patience = config.patience
  if not patience:
    return None

  def stop(records):
    best, since = early_stopping(records, patience)
    if since >= patience:
      return (f"valid bpc has not improved on {best:.4f} for {since} "
              "evaluations")
    return None
  return stop


def make_evaluate(core, corpus, config: ml_collections.ConfigDict):
  """``(state, step) -> {valid, test: {loss, bpc, chars}}`` of a corpus."""
  chars_per_step = config.batch_size * config.unroll

  def evaluate(state, i):
    results = {}
    for split in ("valid", "test"):
      results[split] = evaluate_lm(core, state.params, corpus.splits[split],
                                   config.eval_batch_size)
      results[split]["chars"] = i * chars_per_step
    return results
  return evaluate


def make_loop(config: ml_collections.ConfigDict) -> run_lib.Loop:
  """Task, core and optimisers of ``config``, as a ``run_lib.Loop``."""
  task, data, corpus = experiment.build_task(config)
  rdni = experiment.build_recurrent(config, task)
  optimizers = experiment.build_optimizers(config)
  step_fn = tbptt.make_train_step(rdni, optimizers, task)
  windows = config.windows_per_call
  multi_fn = (tbptt.make_multi_step(rdni, optimizers, task, windows)
              if windows > 1 else None)

  def init():
    return tbptt.init_train_state(
        rdni, optimizers, jax.random.PRNGKey(config.seed), config.batch_size,
        example_input(task, config.batch_size), task.init_state())

  def step(state, i):
    del i  # the window is made on the device from the state's step
    return step_fn(state, data)

  def multi_step(state, i):
    del i
    return multi_fn(state, data)

  evaluate = make_evaluate(rdni.core, corpus, config)
  is_lm = corpus is not None
  return run_lib.Loop(
      init=init, step=step, evaluate=evaluate if is_lm else None,
      should_stop=should_stop(config) if is_lm else None,
      multi_step=multi_step if multi_fn else None, steps_per_call=windows,
      **_reporting(config, task))


def _reporting(config, task) -> dict:
  """The ``Loop`` fields of what a sequence run logs, shows and sums up."""
  return dict(summarize=summarize, derive=_derive(config, task),
              last_keys=("length", "repeats", "max_length_solved",
                         "max_task_length_solved"),
              shown=("loss", "bpc", "bits_per_seq", "length", "synth_loss"),
              eval_shown=("bpc",))


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
      "max_task_length_solved": last.get("max_task_length_solved"),
      "best_valid_bpc": best["bpc"] if best else None,
      "test_bpc_at_best_valid": (test[best["step"]]["bpc"]
                                 if best and best["step"] in test else None),
      "best_step": best["step"] if best else None,
      "seconds": seconds,
  }


def make_batched_loop(configs: list[ml_collections.ConfigDict]
                      ) -> run_lib.Loop:
  """A vmapped group of runs (``dni_jax.training.sweep``) as one ``Loop``.

  The configs differ only in ``batching.VMAPPABLE`` fields; a generated task
  (Copy, Repeat Copy) draws each member's episodes from its own seed. With
  early stopping (``patience``) a member stops where its own run would:
  from then on the group's step leaves its state as it is (``Loop.freeze``)
  and its evaluations are skipped, and the group ends when every member
  has stopped or at ``num_steps``. The member axis is split over the local
  devices (``batching.Placement``).
  """
  config = configs[0]
  task, data, corpus = experiment.build_task(config)
  place = batching.Placement(len(configs))
  seeds = place.members(batching.seeds(configs))
  data = place.replicated(data)
  seeded = hasattr(task, "seed")

  def member_task(seed):
    return dataclasses.replace(task, seed=seed) if seeded else task

  def member_step(seed, state, data, windows=1):
    # λ and the learning rates are the member's state's.
    member = member_task(seed)
    rdni = experiment.build_recurrent(config, member)
    optimizers = experiment.build_optimizers(config)
    if windows > 1:
      return tbptt.multi_task_step(state, data, rdni=rdni,
                                   optimizers=optimizers, task=member,
                                   windows=windows)
    return tbptt.task_step(state, data, rdni=rdni, optimizers=optimizers,
                           task=member)

  def group_step(seeds, state, data, running=None, windows=1):
    new, metrics = jax.vmap(
        functools.partial(member_step, windows=windows),
        in_axes=(0, 0, None))(seeds, state, data)
    if running is not None:  # members stopped early keep their state
      new = jax.tree_util.tree_map(
          lambda n, o: jnp.where(
              running.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, state)
    return new, metrics

  step_fn = jax.jit(group_step, donate_argnums=1)
  windows = config.windows_per_call
  multi_fn = jax.jit(functools.partial(group_step, windows=windows),
                     donate_argnums=1)
  rdni = experiment.build_recurrent(config, task)
  is_lm = corpus is not None
  stops = should_stop(config) if is_lm else None
  # Which members still train, on the host and (a mask for the step) on
  # the devices; without early stopping the step takes no mask.
  running = np.ones(len(configs), bool)
  mask = [place.members(jnp.asarray(running))] if stops else []

  def freeze(member):
    running[member] = False
    mask[:] = [place.members(jnp.asarray(running))]

  def init():
    return place.members(batching.stack([tbptt.init_train_state(
        experiment.build_recurrent(c, task), experiment.build_optimizers(c),
        jax.random.PRNGKey(c.seed),
        c.batch_size, example_input(task, c.batch_size),
        member_task(c.seed).init_state()) for c in configs]))

  def step(state, i):
    del i
    return step_fn(seeds, state, data, *mask)

  def multi_step(state, i):
    del i
    return multi_fn(seeds, state, data, *mask)

  evaluate_member = make_evaluate(rdni.core, corpus, config)

  def evaluate(state, i):
    """Each running member's evaluation; NaN for a stopped one (not
    logged: the group's recorder skips it)."""
    per_member = {m: evaluate_member(batching.unstack(state, m), i)
                  for m in np.flatnonzero(running)}
    first = next(iter(per_member.values()))
    return {split: {k: np.array([per_member[m][split][k] if m in per_member
                                 else np.nan for m in range(len(configs))])
                    for k in first[split]} for split in first}

  return run_lib.Loop(init=init, step=step,
                      evaluate=evaluate if is_lm else None,
                      should_stop=stops, freeze=freeze,
                      multi_step=multi_step if windows > 1 else None,
                      steps_per_call=windows, **_reporting(config, task))
