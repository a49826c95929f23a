"""The two-timescale loop: networks A and B joined by a DNI (or locked).

One run trains ``config.method`` (dni, locked or bptt;
``dni_jax.core.two_timescale``) on the digit stream
(``dni_jax.data.digit_stream``) for ``config.num_steps`` steps of
``timescale.ticks`` B-ticks each, and evaluates both tasks on a held-out
stream every ``config.eval_every`` steps. Every record carries ``digits``,
the digits seen per stream so far times the streams.
"""

from __future__ import annotations

import functools

import jax
import ml_collections

from dni_jax.core import two_timescale as tt_lib
from dni_jax.data import digit_stream
from dni_jax.training import experiment
from dni_jax.training import run as run_lib

_EVAL_STREAM = 0x6576616C  # "eval": the held-out stream's key


def summarize(records: list[dict], seconds: float | None = None) -> dict:
  """Final train/test numbers of both tasks (``report.two_timescale_table``)."""
  train = [r for r in records if r["split"] == "train"]
  test = [r for r in records if r["split"] == "test"]
  return {
      "step": max((r["step"] for r in records), default=0),
      "train": train[-1] if train else {},
      "test": test[-1] if test else {},
      "best_test_b_error": min((r["b_error"] for r in test), default=None),
      "seconds": seconds,
  }


def make_loop(config: ml_collections.ConfigDict) -> run_lib.Loop:
  """Streams, networks and optimisers of ``config``, as a ``run_lib.Loop``."""
  train_stream, test_stream = experiment.load_digit_streams(config)
  tt = experiment.build_two_timescale(config)
  optimizers = experiment.build_optimizers(config)
  ts = config.timescale
  key = digit_stream.data_key(config.seed)
  eval_key = jax.random.fold_in(key, _EVAL_STREAM)

  @functools.partial(jax.jit, donate_argnums=0)
  def step_fn(state, images, labels):
    stream = digit_stream.DigitStream(images, labels)
    batch = digit_stream.window(stream, jax.random.fold_in(key, state.step),
                                config.batch_size, tt.k, tt.ticks)
    return tt_lib.train_step(state, batch, tt=tt, optimizers=optimizers)

  @jax.jit
  def eval_fn(a_params, b_params, images, labels):
    stream = digit_stream.DigitStream(images, labels)
    batch = digit_stream.window(stream, eval_key, config.eval_batch_size,
                                tt.k, ts.eval_ticks)
    return tt_lib.evaluate(tt, a_params, b_params, batch)

  digits_per_step = config.batch_size * tt.steps_per_update

  def init():
    return tt_lib.init_train_state(tt, optimizers,
                                   jax.random.PRNGKey(config.seed),
                                   config.batch_size, train_stream.input_size)

  def step(state, i):
    del i  # the batch is drawn on the device from the state's step
    return step_fn(state, train_stream.images, train_stream.labels)

  def evaluate(state, i):
    metrics = jax.device_get(eval_fn(state.a_params, state.b_params,
                                     test_stream.images, test_stream.labels))
    return {"test": {**{k: float(v) for k, v in metrics.items()},
                     "digits": i * digits_per_step}}

  return run_lib.Loop(
      init=init, step=step, evaluate=evaluate, summarize=summarize,
      derive=lambda i, means: {"digits": i * digits_per_step},
      shown=("a_error", "b_error", "synth_loss"),
      eval_shown=("a_error", "b_error"))
