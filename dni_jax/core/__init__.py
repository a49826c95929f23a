"""The method: decoupled updates, synthesizers, the recurrent window step.

Imports only jax, flax, optax and other modules of this folder: no data, no
configs, no training loop, no Orbax, tensorflow-datasets or ml_collections.
Models are plain Flax modules passed in; nothing here names one.

- ``network``: ``DecoupledNetwork`` (stages + synthesizers + loss), ``decouple``.
- ``staged``: the staged forward pass, backprop sweep, decoupled gradients.
- ``gradient_sources``: backprop / DNI / cDNI as injectable gradient sources.
- ``synthesizers``: linear, MLP and conv synthetic-gradient models.
- ``train_state``, ``step``: the train state pytree and the pure, jitted step.
- ``stochastic``: stochastic (asynchronous) updates, per-stage coins.
- ``losses``: task losses and metrics, gradient-alignment diagnostics.
- ``module_state``: Flax modules as pure ``(params, state)`` functions.
- ``recurrent``: the recurrent-core protocol and the window unroll.
- ``tbptt``: recurrent DNI, the bptt / dni / dni_aux window step.
- ``sg_alignment``: a recurrent synthetic gradient's update against the
  gradient truncation drops (a probe of a trained run).
- ``synthetic_inputs``: input models ``I_i(x) ≈ h_i`` (complete unlock).
- ``two_networks``: networks A and B at two timescales (locked / dni /
  no_dni), A's message to B through a synthetic gradient.
"""
