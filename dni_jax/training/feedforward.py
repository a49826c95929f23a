"""The feed-forward loop: backprop, DNI or cDNI on an image or bit dataset.

One run trains ``config.method`` on ``config.data`` for ``config.num_steps``
steps of ``config.batch_size``, evaluating the composed network on the test
split every ``config.eval_every`` steps. The bookkeeping (metrics, progress,
checkpoints, resume, NaN stop) is ``dni_jax.training.run``'s.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dni_jax.core import gradient_sources
from dni_jax.core import step as step_lib
from dni_jax.core import stochastic
from dni_jax.core import train_state
from dni_jax.data import dataset as dataset_lib
from dni_jax.errors import ConfigError
from dni_jax.training import batching
from dni_jax.training import experiment
from dni_jax.training import report
from dni_jax.training import run as run_lib


def weighted_means(eval_fn, state, sized_batches) -> dict:
  """Example-weighted means of ``eval_fn``'s metrics over ``(n, batch)``s.

  The metrics may carry a leading member axis (a vmapped sweep group).
  """
  sums, count = {}, 0
  for n, batch in sized_batches:
    for k, v in eval_fn(state, batch).items():
      sums[k] = sums.get(k, 0.0) + v * n
    count += n
  return {k: np.asarray(v, np.float64) / count
          for k, v in jax.device_get(sums).items()}


def evaluate(eval_fn, state, dataset, batch_size: int) -> dict:
  """Example-weighted means of ``eval_fn``'s metrics over the whole split."""
  means = weighted_means(eval_fn, state, (
      (len(b["labels"]), b)
      for b in dataset_lib.eval_batches(dataset, batch_size)))
  return {k: float(v) for k, v in means.items()}


EVAL_SHOWN = ("loss", "accuracy", "exact_match")


def make_loop(config: ml_collections.ConfigDict) -> run_lib.Loop:
  """Data, network and optimisers of ``config``, as a ``run_lib.Loop``."""
  train, test = experiment.load_data(config)
  net = experiment.build_network(config, train)
  optimizers = experiment.build_optimizers(config)
  source = gradient_sources.get_source(config.method)
  try:
    step_fn = step_lib.make_train_step(net, optimizers, source,
                                       config.dni.track_alignment,
                                       experiment.update_probs(config),
                                       experiment.schedule_clock(config))
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
                      summarize=report.summarize, eval_shown=EVAL_SHOWN)


def make_batched_loop(configs: list[ml_collections.ConfigDict]
                      ) -> run_lib.Loop:
  """A vmapped group of runs (``dni_jax.training.sweep``) as one ``Loop``.

  The configs differ only in ``batching.VMAPPABLE`` fields. Each member trains
  on its own seed's batches (and, for generated data, its own seed's
  dataset); the state, the metrics and the evaluations carry a leading
  member axis, split over the local devices (``batching.Placement``).
  """
  config = configs[0]
  cache = {}
  for c in configs:
    key = c.seed if c.data.name == "binary_addition" else None
    if key not in cache:
      cache[key] = experiment.load_data(c)
  datasets = [cache[c.seed if c.data.name == "binary_addition" else None]
              for c in configs]
  train0 = datasets[0][0]
  source = gradient_sources.get_source(config.method)
  net = experiment.build_network(config, train0)
  place = batching.Placement(len(configs))
  # The update probabilities: the group's own where its members share them
  # (static, as in a single run), else each member's, traced (a population
  # over p, as the paper's Fig. 7).
  try:
    member_probs = np.asarray([stochastic.probabilities(
        experiment.update_probs(c), len(net.stages)) for c in configs],
                              np.float32)
  except ValueError as e:
    raise ConfigError(f"dni.stage_update_probs: {e}") from e
  shared_probs = bool((member_probs == member_probs[0]).all())

  # The training sets live on the devices: one copy on each when the
  # members share it, each member's with it when each seed has its own
  # (generated data). A step's batches are gathered there from the host's
  # per-member index arrays.
  shared = all(d[0] is train0 for d in datasets)
  if shared:
    inputs, labels = place.replicated((train0.inputs, train0.labels))
  else:
    inputs, labels = place.members((np.stack([d[0].inputs for d in datasets]),
                                    np.stack([d[0].labels for d in datasets])))

  optimizers = experiment.build_optimizers(config)

  def member_step(state, index, x, y, update_prob):
    # λ and the learning rates are the member's state's.
    batch = {"inputs": train0.normalize(x[index], jnp), "labels": y[index]}
    return step_lib.train_step(state, batch, net=net, optimizers=optimizers,
                               source=source,
                               track_alignment=config.dni.track_alignment,
                               update_prob=update_prob,
                               schedule_clock=experiment.schedule_clock(
                                   config))

  data_axis = None if shared else 0
  in_axes = (0, 0, data_axis, data_axis)
  if shared_probs:
    step_fn = jax.jit(jax.vmap(functools.partial(
        member_step, update_prob=experiment.update_probs(config)),
                               in_axes=in_axes), donate_argnums=0)
    step_args = ()
  else:
    step_fn = jax.jit(jax.vmap(member_step, in_axes=in_axes + (0,)),
                      donate_argnums=0)
    step_args = (place.members(member_probs),)
  eval_fn = jax.jit(jax.vmap(lambda s, b: step_lib.eval_step(s, b, net=net)))

  def init():
    states = []
    for c, (train, _) in zip(configs, datasets):
      example = dataset_lib.batch_at(train, 0, c.batch_size, c.seed)
      states.append(train_state.init_train_state(
          experiment.build_network(c, train), experiment.build_optimizers(c),
          source, jax.random.PRNGKey(c.seed), example,
          synth_delay=c.dni.synth_delay))
    return place.members(batching.stack(states))

  def step(state, i):
    index = np.stack([dataset_lib.batch_indices(len(train0), i, c.batch_size,
                                                c.seed) for c in configs])
    return step_fn(state, place.members(index), inputs, labels, *step_args)

  def evaluate_test(state, i):
    del i
    splits = (dataset_lib.eval_batches(test, config.eval_batch_size)
              for _, test in datasets)
    return {"test": weighted_means(eval_fn, state, (
        (len(batches[0]["labels"]), _stack_host(batches))
        for batches in zip(*splits)))}

  return run_lib.Loop(init=init, step=step, evaluate=evaluate_test,
                      summarize=report.summarize, eval_shown=EVAL_SHOWN)


def _stack_host(batches: list[dict]) -> dict:
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}
