"""A vmapped group of runs: its member axis, its per-member hyper-parameters,
and how its members spread over the local devices.

The loops that can train a sweep group as one program
(``feedforward.make_batched_loop``, ``recurrent.make_batched_loop``) and the
sweep runner (``dni_jax.training.sweep``) share these.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

MEMBER_AXIS = "members"

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


def member_devices(num_members: int) -> int:
  """How many local devices a group of ``num_members`` spreads over.

  The most that divide the members evenly (each device holds
  ``num_members / d`` whole members): 8 members on 4 devices → 4, 6 on 4
  → 3, 5 on 4 → 1. On a CPU, JAX has one device unless told more
  (``JAX_NUM_CPU_DEVICES=2``).
  """
  available = len(jax.local_devices())
  return max(d for d in range(1, min(available, num_members) + 1)
             if num_members % d == 0)


class Placement:
  """A group's arrays over ``member_devices(num_members)`` local devices.

  Arrays with a leading member axis are split along it (``members``), the
  rest are copied to every device (``replicated``). The jitted step follows
  its inputs' placement, so each device trains its own members and nothing
  crosses devices but the metrics read on the host. With one device this
  is a plain ``device_put``.
  """

  def __init__(self, num_members: int):
    devices = jax.local_devices()[:member_devices(num_members)]
    mesh = Mesh(np.array(devices), (MEMBER_AXIS,))
    self._split = NamedSharding(mesh, P(MEMBER_AXIS))
    self._copied = NamedSharding(mesh, P())

  def members(self, tree):
    """Every leaf, split along its leading (member) axis."""
    return jax.device_put(tree, self._split)

  def replicated(self, tree):
    """Every leaf, whole on every device."""
    return jax.device_put(tree, self._copied)
