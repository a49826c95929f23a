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

# Fields a vmapped group's members may differ in. The seed picks a member's
# initial state and its data (``seeds``); λ and the learning rates live in
# each member's train state (``TrainState.sg_scale``, the optimiser states'
# injected ``learning_rate``), set when the member's state is initialised
# from its own config, so the step's static arguments are the group's. The
# update probabilities (feed-forward; 1 elsewhere) are the group's static
# ones where the members share them, else each member's, an argument of
# the batched step (``feedforward.make_batched_loop``).
VMAPPABLE = ("seed", "opt.learning_rate", "opt.synth_learning_rate",
             "dni.sg_scale", "dni.update_prob", "dni.stage_update_probs")


def seeds(configs) -> jax.Array:
  """The members' seeds, ``int32 [members]``."""
  return jnp.asarray([c.seed for c in configs], jnp.int32)


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
