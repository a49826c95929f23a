"""Synthetic inputs: forward unlocking and complete unlock (docs/method.md).

An *input model* ``I_i(x) ≈ h_i`` per boundary predicts, from the data
``x`` alone, the activation that stage ``i`` hands to stage ``i+1``. It
regresses by L2 onto a stop-gradient target: by default (the paper's) the
output of its neighbour, stage ``i`` run on ``I_{i-1}(x)`` (stage 0 on ``x``),
so no stage needs the real chain in training; or, with
``input_targets="real_chain"``, the real chain's ``h_i``
(``dni_jax.core.step``). During training stage ``i+1`` consumes ``I_i(x)`` instead of
``h_i``, so it never waits for stages ``≤ i``; with synthetic gradients at
every boundary as well, each stage trains from ``x``, its own input model and
its own synthesizer only (complete unlock). Evaluation runs the real chain.

Every model is called as ``model(x, out_shape, train=...)``, where
``out_shape`` is the per-example shape of ``h_i`` (static).

- ``MLPInputModel``: hidden Linear→ReLU layers on the flattened input, then a
  linear output to ``prod(out_shape)``; ``()`` hidden layers make it linear
  (``LinearInputModel``).
- ``ConvInputModel``: for feature maps: hidden conv→ReLU layers on the image,
  a resize to ``h_i``'s spatial size, then a conv to its channels.

The output layer starts small (variance scaling 0.1), not at zero: a
constant zero input would give stage ``i+1`` nothing to learn from while
``I_i`` catches up.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_small = nn.initializers.variance_scaling(0.1, "fan_in", "truncated_normal")


class MLPInputModel(nn.Module):
  """``I(x)``: an MLP on the flattened input, reshaped to ``out_shape``.

  Attributes:
    hidden_features: widths of the hidden ReLU layers; ``()``: linear.
  """
  hidden_features: Sequence[int] = (1024,)

  @nn.compact
  def __call__(self, x, out_shape: tuple, train: bool = False):
    del train
    z = x.reshape(x.shape[0], -1).astype(jnp.float32)
    for width in self.hidden_features:
      z = nn.relu(nn.Dense(width)(z))
    out = nn.Dense(math.prod(out_shape), kernel_init=_small, name="output")(z)
    return out.reshape((x.shape[0],) + tuple(out_shape))


class LinearInputModel(MLPInputModel):
  """One linear map from the flattened input."""
  hidden_features: Sequence[int] = ()


class ConvInputModel(nn.Module):
  """``I(x)`` for feature maps ``[B, H', W', C']`` from images ``[B, H, W, C]``.

  Attributes:
    hidden_features: channels of the hidden conv→ReLU layers.
    kernel_size: spatial kernel of every conv.
    pool: each hidden layer is followed by a 2×2 max-pool while its maps
      are at least twice the target's size, as the stages pool; ``False``:
      the hidden layers keep the input's size. Either way, maps that still
      differ from the target's size are resized (bilinear) before the
      output conv.
  """
  hidden_features: Sequence[int] = (64,)
  kernel_size: Sequence[int] = (5, 5)
  pool: bool = False

  @nn.compact
  def __call__(self, x, out_shape: tuple, train: bool = False):
    del train
    if x.ndim != 4 or len(out_shape) != 3:
      raise ValueError(
          f"ConvInputModel maps images [B, H, W, C] to feature maps "
          f"[B, H', W', C']; got inputs {x.shape} and targets of per-example "
          f"shape {tuple(out_shape)}. Use an MLP input model for flat "
          "activations.")
    z = x.astype(jnp.float32)
    height, width_, channels = out_shape
    for width in self.hidden_features:
      z = nn.relu(nn.Conv(width, tuple(self.kernel_size), padding="SAME")(z))
      if (self.pool and z.shape[1] >= 2 * height
          and z.shape[2] >= 2 * width_):
        z = nn.max_pool(z, (2, 2), strides=(2, 2))
    if z.shape[1:3] != (height, width_):
      z = jax.image.resize(z, (z.shape[0], height, width_, z.shape[-1]),
                           "linear")
    return nn.Conv(channels, tuple(self.kernel_size), padding="SAME",
                   kernel_init=_small, name="output")(z)
