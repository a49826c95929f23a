"""A vmapped group of runs: its member axis and its per-member hyper-parameters.

The loops that can train a sweep group as one program
(``feedforward.make_batched_loop``, ``recurrent.make_batched_loop``) and the
sweep runner (``dni_jax.training.sweep``) share these.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Fields a vmapped group's members may differ in: each member gets its own
# value as a traced scalar (the seed picks its initial state and data).
VMAPPABLE = ("seed", "opt.learning_rate", "opt.synth_learning_rate",
             "dni.sg_scale")


def hyperparameters(configs) -> dict[str, jax.Array]:
  """Each ``VMAPPABLE`` field as an array over the members."""
  hp = {}
  for key in VMAPPABLE:
    values = []
    for c in configs:
      node = c
      for part in key.split("."):
        node = node.get(part) if node is not None else None
      values.append(node)
    if key == "opt.synth_learning_rate":
      values = [v or c.opt.learning_rate for v, c in zip(values, configs)]
    dtype = jnp.int32 if key == "seed" else jnp.float32
    hp[key] = jnp.asarray(values, dtype)
  return hp


def stack(trees):
  """One pytree with a leading member axis from equal-structured pytrees."""
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, index: int):
  """Member ``index`` of a stacked pytree."""
  return jax.tree_util.tree_map(lambda x: x[index], tree)
