"""Tiny networks and batches shared by the tests, and an independent oracle.

``monolithic_loss`` composes the stages as one ordinary function, without any
of dni_jax's staging, so that tests compare the library against plain
``jax.grad``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import dni_jax as dni
from dni_jax.core import stochastic

NUM_CLASSES = 5


def batch(kind: str = "fcn", size: int = 8, seed: int = 0) -> dict:
  shape = (size, 6, 6, 1) if kind == "fcn" else (size, 8, 8, 2)
  x = jax.random.normal(jax.random.PRNGKey(seed), shape)
  y = jnp.arange(size) % NUM_CLASSES
  return {"inputs": x, "labels": y}


def stages(kind: str = "fcn", depth: int = 3):
  if kind == "fcn":
    return dni.fcn_stages(depth, width=16, num_classes=NUM_CLASSES)
  return dni.cnn_stages(depth, features=4, num_classes=NUM_CLASSES)


def synthesizer(kind: str = "fcn"):
  if kind == "fcn":
    return dni.LinearSynthesizer()
  return dni.ConvSynthesizer(hidden_features=(4,), kernel_size=(3, 3))


def network(kind: str = "fcn", depth: int = 3, **kwargs):
  return dni.decouple(stages(kind, depth), synthesizer(kind), **kwargs)


def optimizers(lr: float = 1e-2):
  return dni.Optimizers(stage=optax.adam(lr), synth=optax.adam(lr))


def init(net, method="dni", seed=0, kind="fcn", opt=None):
  source = dni.get_source(method) if isinstance(method, str) else method
  return dni.init_train_state(net, opt or optimizers(), source,
                              jax.random.PRNGKey(seed), batch(kind))


def coin_steps(step, state, p, num_stages, steps, kind="fcn"):
  """Runs ``step`` on ``steps`` batches from ``state``; yields, per step,
  ``(state_before, state_after, metrics, heads)``, ``heads`` each stage's
  stochastic-update coin at that step (probability ``p``)."""
  for seed in range(steps):
    new, metrics = step(state, batch(kind, seed=seed))
    heads = [bool(stochastic.coin(state.rng, state.step, i, p))
             for i in range(num_stages)]
    yield state, new, metrics, heads
    state = new


def moved(new, old) -> bool:
  """Whether any leaf of ``new`` differs from ``old``."""
  return not all(np.array_equal(n, o) for n, o in zip(
      jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old)))


def randomize(tree, seed=1, scale=0.1):
  """Replaces every leaf by noise (e.g. to move synthesizers off zero)."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [scale * jax.random.normal(k, l.shape, l.dtype)
                for k, l in zip(keys, leaves)])


def monolithic_loss(net, stage_params, stage_state, batch_, *,
                    from_stage=0, h=None):
  """The task loss of stages ``from_stage…N-1`` as one plain function."""
  h = batch_["inputs"] if h is None else h
  for stage, params, state in zip(net.stages[from_stage:],
                                  stage_params[from_stage:],
                                  stage_state[from_stage:]):
    variables = {"params": params, **state}
    if state:
      h, _ = stage.apply(variables, h, train=True, mutable=list(state))
    else:
      h = stage.apply(variables, h, train=True)
  return net.loss_fn(h, batch_["labels"])


def hidden_states(net, stage_params, stage_state, batch_):
  """``h_1 … h_N`` by plain composition in training mode."""
  h, hidden = batch_["inputs"], []
  for stage, params, state in zip(net.stages, stage_params, stage_state):
    h, _ = stage.apply({"params": params, **state}, h, train=True,
                       mutable=list(state))
    hidden.append(h)
  return hidden


def override(config, **overrides):
  """Sets dotted fields (``**{"dni.hidden": (4,)}``) of a config; returns it."""
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def crash_batches_at(monkeypatch, step: int):
  """Makes the batches of ``step`` raise KeyboardInterrupt; returns an undo.

  Patches ``batch_indices``, which every feed-forward loop (single runs via
  ``batch_at``, vmapped sweep groups directly) asks for a step's batch.
  """
  from dni_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top
  real = dataset_lib.batch_indices

  def crashing(size, at, *args):
    if at == step:
      raise KeyboardInterrupt("simulated interruption")
    return real(size, at, *args)

  monkeypatch.setattr(dataset_lib, "batch_indices", crashing)
  return lambda: monkeypatch.setattr(dataset_lib, "batch_indices", real)

