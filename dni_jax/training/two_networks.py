"""The two-network loop: A and B, locked, joined by DNI, or decoupled.

One run trains ``config.method`` (locked, dni or no_dni;
``dni_jax.core.two_networks``) on episodes of ``T²`` digits
(``dni_jax.data.digit_stream``), one episode per stream per step, and
evaluates both networks on held-out episodes every ``config.eval_every``
steps. Every record counts, beside the step, the time steps of A
(``time_steps``: the step times ``T²``) and the updates of each network
(``a_updates``: ``T`` per step when decoupled, 1 when locked;
``b_updates``: 1 per step).
"""

from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np

from dni_jax.core import interface
from dni_jax.core import two_networks as tn_lib
from dni_jax.data import digit_stream
from dni_jax.training import batching
from dni_jax.training import experiment
from dni_jax.training import run as run_lib

_EVAL_STREAM = 0x6576616C  # "eval": the held-out episodes' key


def summarize(records: list[dict], seconds: float | None = None) -> dict:
  """Final train/test numbers of both networks (``report.two_networks_table``)."""
  train = [r for r in records if r["split"] == "train"]
  test = [r for r in records if r["split"] == "test"]
  return {
      "step": max((r["step"] for r in records), default=0),
      "train": train[-1] if train else {},
      "test": test[-1] if test else {},
      "best_test_b_error": min((r["b_error"] for r in test), default=None),
      "seconds": seconds,
  }


def _counts(tn: tn_lib.TwoNetworks, i: int) -> dict:
  return {"time_steps": i * tn.episode, "a_updates": i * tn.a_updates_per_step,
          "b_updates": i}


def _eval_key():
  return jax.random.fold_in(digit_stream.data_key(0), _EVAL_STREAM)


def _reporting(tn: tn_lib.TwoNetworks) -> dict:
  return dict(summarize=summarize,
              derive=lambda i, means: _counts(tn, i),
              shown=("a_error", "b_error", "synth_loss"),
              eval_shown=("a_error", "b_error"))


def _make_eval(config, tn):
  """``(state, images, labels) -> metrics`` on the held-out episodes: the
  same ``eval_batch_size`` episodes for every seed (for dni, with how well
  the synthesizers fit B's gradients there)."""

  @jax.jit
  def eval_fn(state, images, labels):
    batch = digit_stream.episodes(digit_stream.DigitStream(images, labels),
                                  _eval_key(), config.eval_batch_size, tn.T)
    sg_state = (interface.state_of(state) if tn.synthesizer is not None
                else None)
    return tn_lib.evaluate(tn, state.a_params, state.b_params, batch,
                           sg_state)
  return eval_fn


def _member_step(config, state, images, labels, seed):
  """One step of one run: its episode drawn on the device from
  ``(seed, step)`` (λ and the learning rates are the state's)."""
  tn = experiment.build_two_networks(config)
  optimizers = experiment.build_optimizers(config)
  batch = digit_stream.episodes(
      digit_stream.DigitStream(images, labels),
      jax.random.fold_in(digit_stream.data_key(seed), state.step),
      config.batch_size, tn.T)
  return tn_lib.train_step(state, batch, tn=tn, optimizers=optimizers)


def _init(config, input_size):
  """The initial state of ``config``'s run: its own λ and learning rates."""
  return tn_lib.init_train_state(experiment.build_two_networks(config),
                                 experiment.build_optimizers(config),
                                 jax.random.PRNGKey(config.seed),
                                 config.batch_size, input_size)


def make_loop(config: ml_collections.ConfigDict) -> run_lib.Loop:
  """Digits, networks and optimisers of ``config``, as a ``run_lib.Loop``."""
  train_stream, test_stream = experiment.load_digit_streams(config)
  tn = experiment.build_two_networks(config)
  step_fn = jax.jit(functools.partial(_member_step, config,
                                      seed=config.seed), donate_argnums=0)
  eval_fn = _make_eval(config, tn)

  def step(state, i):
    del i  # the batch is drawn on the device from the state's step
    return step_fn(state, train_stream.images, train_stream.labels)

  def evaluate(state, i):
    metrics = jax.device_get(eval_fn(state, test_stream.images,
                                     test_stream.labels))
    return {"test": {**{k: float(v) for k, v in metrics.items()},
                     **_counts(tn, i)}}

  return run_lib.Loop(init=lambda: _init(config, train_stream.input_size),
                      step=step, evaluate=evaluate, **_reporting(tn))


def make_batched_loop(configs: list[ml_collections.ConfigDict]
                      ) -> run_lib.Loop:
  """A vmapped group of runs (``dni_jax.training.sweep``) as one ``Loop``:
  the configs differ only in ``batching.VMAPPABLE`` fields (the seed draws
  a member's parameters and episodes)."""
  config = configs[0]
  train_stream, test_stream = experiment.load_digit_streams(config)
  tn = experiment.build_two_networks(config)
  place = batching.Placement(len(configs))
  seeds = place.members(batching.seeds(configs))
  images, labels = place.replicated((train_stream.images,
                                     train_stream.labels))

  def member_step(seed, state, images, labels):
    return _member_step(config, state, images, labels, seed)

  step_fn = jax.jit(jax.vmap(member_step, in_axes=(0, 0, None, None)),
                    donate_argnums=1)
  eval_fn = jax.jit(jax.vmap(_make_eval(config, tn),
                             in_axes=(0, None, None)))

  def init():
    return place.members(batching.stack([
        _init(c, train_stream.input_size) for c in configs]))

  def step(state, i):
    del i
    return step_fn(seeds, state, images, labels)

  def evaluate(state, i):
    metrics = jax.device_get(eval_fn(state, test_stream.images,
                                     test_stream.labels))
    counts = {k: np.full(len(configs), v) for k, v in _counts(tn, i).items()}
    return {"test": {**{k: np.asarray(v) for k, v in metrics.items()},
                     **counts}}

  return run_lib.Loop(init=init, step=step, evaluate=evaluate,
                      **_reporting(tn))
