"""Moving activations, targets and metrics between the devices of a pipeline.

Each device computes with its own jitted program on its own arrays; once a
tick, one SPMD program over a ``stage`` mesh axis moves what they produced:
``ppermute`` sends every device's output to the next device and every
input cotangent to the previous one, and a ``psum`` gives every device (so
every process) the tick's metrics. The same program runs whether the
devices belong to one process or to several (``jax.distributed``; on CPU
the collectives are gloo's), so a transfer between processes is a
collective, never a file or a socket of our own.

Stages' activations differ in shape (784 → 256 → ...), so what travels is
flattened per example and zero-padded to the widest boundary: ``[B, A]``.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "stage"


def pack(h, width: int) -> jax.Array:
  """``h [B, ...]`` flattened per example, zero-padded to ``[1, B, width]``."""
  flat = h.reshape(h.shape[0], -1).astype(jnp.float32)
  return jnp.pad(flat, ((0, 0), (0, width - flat.shape[1])))[None]


def unpack(buffer, shape: Sequence[int]) -> jax.Array:
  """The ``[B, *shape[1:]]`` activation inside a ``[1, B, width]`` buffer."""
  size = math.prod(shape[1:])
  return buffer[0, :, :size].reshape(shape)


class Exchange:
  """The once-a-tick transfer program over the pipeline's devices.

  Args:
    devices: the pipeline's devices, device ``k`` holding group ``k``; in a
      multi-process run, every process's devices, in the same order on
      every process.
  """

  def __init__(self, devices: Sequence[jax.Device]):
    self.devices = tuple(devices)
    self.num = len(self.devices)
    self.mesh = Mesh(np.array(self.devices), (AXIS,))
    self.sharding = NamedSharding(self.mesh, P(AXIS))
    self.local = tuple(k for k, d in enumerate(self.devices)
                       if d.process_index == jax.process_index())
    self._no_metrics = {k: jax.device_put(jnp.zeros((1, 1)), self.devices[k])
                        for k in self.local}

  @functools.lru_cache(maxsize=None)
  def _program(self, forward: bool, backward: bool, reduce: bool):
    k = self.num
    fwd_perm = [(i, i + 1) for i in range(k - 1)]
    bwd_perm = [(i + 1, i) for i in range(k - 1)]

    def body(fwd, bwd, metrics):
      if forward and backward and k == 2:
        # Two devices: device 0 sends forward, device 1 backward: one swap.
        mine = jnp.where(jax.lax.axis_index(AXIS) == 0, fwd, bwd)
        got = jax.lax.ppermute(mine, AXIS, [(0, 1), (1, 0)])
        fwd, bwd = got, got
      else:
        if forward:
          fwd = jax.lax.ppermute(fwd, AXIS, fwd_perm)
        if backward:
          bwd = jax.lax.ppermute(bwd, AXIS, bwd_perm)
      if reduce:
        metrics = jax.lax.psum(metrics, AXIS)
      return fwd, bwd, metrics
    return jax.jit(jax.shard_map(
        body, mesh=self.mesh, in_specs=(P(AXIS), P(AXIS), P(AXIS)),
        out_specs=(P(AXIS), P(AXIS), P() if reduce else P(AXIS))))

  def _global(self, local_arrays: dict[int, jax.Array]) -> jax.Array:
    shard = local_arrays[self.local[0]]
    shape = (self.num,) + tuple(shard.shape[1:])
    return jax.make_array_from_single_device_arrays(
        shape, self.sharding, [local_arrays[k] for k in self.local])

  def __call__(self, fwd: dict, bwd: dict, metrics: dict | None = None,
               forward: bool = True, backward: bool = True):
    """Sends ``fwd[k]`` to device ``k+1``, ``bwd[k]`` to ``k-1``.

    Args:
      fwd, bwd: ``{k: [1, B, A] array on device k}`` for the local devices
        (the two of one device have one shape).
      metrics: ``{k: [1, L] array on device k}`` to sum over the devices,
        or ``None`` (a sum across processes costs a collective of its own,
        dearer than a transfer on CPU: gloo's all-reduce latency).
      forward, backward: which of the two transfers this tick needs.

    Returns:
      ``(fwd_in, bwd_in, summed)``: ``{k: [1, B, A]}`` that arrived at each
      local device (on the last device ``fwd_in`` and on device 0 ``bwd_in``
      are meaningless), and the ``[L]`` sum of the metrics on the first local
      device (``None`` without ``metrics``).
    """
    reduce = metrics is not None
    if not reduce:
      metrics = self._no_metrics
    out_f, out_b, summed = self._program(forward, backward, reduce)(
        self._global(fwd), self._global(bwd), self._global(metrics))
    fwd_in = {s.device: s.data for s in out_f.addressable_shards}
    bwd_in = {s.device: s.data for s in out_b.addressable_shards}
    return ({k: fwd_in[self.devices[k]] for k in self.local},
            {k: bwd_in[self.devices[k]] for k in self.local},
            summed.addressable_shards[0].data[0] if reduce else None)
