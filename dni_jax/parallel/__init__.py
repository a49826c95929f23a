"""Decoupled stages on separate devices and processes (docs/method.md).

- ``placement``: which consecutive stages each device holds.
- ``group``: one device's share: its tick of the DNI pipeline, its forward
  and backward in the backprop pipeline.
- ``exchange``: the once-a-tick transfer program (``ppermute`` over a
  ``stage`` mesh axis), the same within a process and across processes.
- ``pipeline``: ``DNIPipeline`` and ``BackpropPipeline``, the schedules.
- ``distributed``: ``jax.distributed`` set-up for several processes.
- ``two_networks``: the two-network system with A and B on two devices.

Part of the method layer: imports jax, flax, optax and ``dni_jax.core``.
"""
