"""The pipelined loop: a feed-forward config's stages on separate devices.

``config.parallel.num_devices`` > 0 runs the network as a pipeline over that
many devices (``dni_jax.parallel``): dni / cdni as the DNI pipeline (one
step = one tick: a micro-batch of ``batch_size`` enters, every device
updates), backprop as the backprop pipeline (one step = one global batch of
``batch_size`` in ``parallel.microbatches`` micro-batches, fill–drain, one
update). The devices may belong to several processes (``experiments.launch``).
Metrics, evaluation of the composed network, checkpoints (the in-flight
activations and targets included) and resume are the run bookkeeping's.
"""

from __future__ import annotations

import jax
import ml_collections

from dni_jax.core import gradient_sources
from dni_jax.data import dataset as dataset_lib
from dni_jax.parallel import distributed
from dni_jax.parallel import pipeline as pipeline_lib
from dni_jax.training import experiment
from dni_jax.training import report
from dni_jax.training import run as run_lib


def _split(batch: dict, parts: int) -> list[dict]:
  size = batch["labels"].shape[0] // parts
  return [{k: v[i * size:(i + 1) * size] for k, v in batch.items()}
          for i in range(parts)]


def _pack(state: dict) -> dict:
  """Device-keyed dicts → tuples in device order (a checkpointable tree)."""
  return {name: tuple(part[k] for k in sorted(part))
          for name, part in state.items()}


def _unpack(state: dict, local) -> dict:
  return {name: dict(zip(local, part)) for name, part in state.items()}


def make_loop(config: ml_collections.ConfigDict) -> run_lib.Loop:
  """The pipeline of ``config``, as a ``run_lib.Loop``."""
  train, test = experiment.load_data(config)
  net = experiment.build_network(config, train)
  optimizers = experiment.build_optimizers(config)
  source = gradient_sources.get_source(config.method)
  devices = distributed.pipeline_devices(config.parallel.num_devices)
  backprop = not source.uses_synthesizers
  micro = config.batch_size // (config.parallel.microbatches if backprop
                                else 1)
  example = dataset_lib.batch_at(train, 0, micro, config.seed)
  common = dict(net=net, optimizers=optimizers, source=source,
                devices=devices, example=example,
                rng=jax.random.PRNGKey(config.seed),
                stages_per_device=tuple(config.parallel.stages_per_device))
  if backprop:
    pipe = pipeline_lib.BackpropPipeline(
        num_microbatches=config.parallel.microbatches, **common)
  else:
    pipe = pipeline_lib.DNIPipeline(synth_delay=config.dni.synth_delay,
                                    **common)
  local = pipe.local

  def batch(m):
    return dataset_lib.batch_at(train, m, config.batch_size, config.seed)

  def step(state, i):
    state = _unpack(state, local)
    if backprop:
      state, metrics = pipe.step(state, _split(batch(i),
                                               config.parallel.microbatches))
    else:
      state, metrics = pipe.tick(state, i, batch)
    return _pack(state), metrics

  def evaluate(state, i):
    del i
    batches = list(dataset_lib.eval_batches(test, config.eval_batch_size))
    return {"test": pipe.evaluate_state(_unpack(state, local), batches)}

  return run_lib.Loop(init=lambda: _pack(pipe.init()), step=step,
                      evaluate=evaluate, summarize=report.summarize,
                      eval_shown=("loss", "accuracy", "exact_match"))
