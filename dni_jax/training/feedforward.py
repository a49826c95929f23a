"""The feed-forward loop: backprop, DNI or cDNI on an image or bit dataset.

One run trains ``config.method`` on ``config.data`` for ``config.num_steps``
steps of ``config.batch_size``, evaluating the composed network on the test
split every ``config.eval_every`` steps. The bookkeeping (metrics, progress,
checkpoints, resume, NaN stop) is ``dni_jax.training.run``'s.
"""

from __future__ import annotations

import jax
import ml_collections

from dni_jax.core import gradient_sources
from dni_jax.core import step as step_lib
from dni_jax.core import train_state
from dni_jax.data import dataset as dataset_lib
from dni_jax.errors import ConfigError
from dni_jax.training import experiment
from dni_jax.training import report
from dni_jax.training import run as run_lib


def evaluate(eval_fn, state, dataset, batch_size: int) -> dict:
  """Example-weighted means of ``eval_fn``'s metrics over the whole split."""
  sums, count = {}, 0
  for batch in dataset_lib.eval_batches(dataset, batch_size):
    n = len(batch["labels"])
    for k, v in eval_fn(state, batch).items():
      sums[k] = sums.get(k, 0.0) + v * n
    count += n
  return {k: float(v) / count for k, v in jax.device_get(sums).items()}


def make_loop(config: ml_collections.ConfigDict) -> run_lib.Loop:
  """Data, network and optimisers of ``config``, as a ``run_lib.Loop``."""
  train, test = experiment.load_data(config)
  net = experiment.build_network(config, train)
  optimizers = experiment.build_optimizers(config)
  source = gradient_sources.get_source(config.method)
  try:
    step_fn = step_lib.make_train_step(net, optimizers, source,
                                       config.dni.track_alignment,
                                       experiment.update_probs(config))
  except ValueError as e:
    raise ConfigError(f"dni.stage_update_probs: {e}") from e
  eval_fn = step_lib.make_eval_step(net)

  def init():
    example = dataset_lib.batch_at(train, 0, config.batch_size, config.seed)
    return train_state.init_train_state(
        net, optimizers, source, jax.random.PRNGKey(config.seed), example,
        synth_delay=config.dni.synth_delay)

  def step(state, i):
    return step_fn(state, dataset_lib.batch_at(train, i, config.batch_size,
                                               config.seed))

  def evaluate_test(state, i):
    del i
    return {"test": evaluate(eval_fn, state, test, config.eval_batch_size)}

  return run_lib.Loop(init=init, step=step, evaluate=evaluate_test,
                      summarize=report.summarize,
                      eval_shown=("loss", "accuracy", "exact_match"))
