"""Synthetic-gradient models ("synthesizers"): predict ∂L/∂h from h (and context).

Every synthesizer maps an activation ``h`` of shape ``[B, ...]`` (and an
optional context ``[B, C]``, e.g. one-hot labels for cDNI) to an array of the
same shape as ``h``. Its output layer is zero-initialised, weights and bias, so
the first synthetic gradient is exactly zero (docs/method.md): lower stages
start with "no update" rather than with noise.

- ``LinearSynthesizer``: one linear map on the flattened activation, the
  paper's default.
- ``MLPSynthesizer``: hidden Linear(→BN)→ReLU layers, then the zero-init linear
  output (the paper's FCN variant: 2 hidden layers of 1024 with BN).
- ``ConvSynthesizer``: for feature maps ``[B, H, W, C]``: hidden conv(→BN)→ReLU
  layers, then a zero-initialised conv (the paper's CNN variant: two 5×5
  layers). With no hidden layers it is a linear, translation-equivariant map.

The synthesizer is called as ``module(h, context, train=...)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

_zeros = nn.initializers.zeros


class MLPSynthesizer(nn.Module):
  """Fully connected synthesizer on the flattened activation.

  Attributes:
    hidden_features: widths of the hidden layers; ``()`` makes it linear.
    use_batch_norm: BatchNorm after each hidden linear layer.
    bn_momentum: BatchNorm running-average momentum.
  """
  hidden_features: Sequence[int] = (1024, 1024)
  use_batch_norm: bool = True
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, h_BxD, context_BxC=None, train: bool = False):
    batch = h_BxD.shape[0]
    z = h_BxD.reshape(batch, -1)
    if context_BxC is not None:
      z = jnp.concatenate(
          [z, context_BxC.reshape(batch, -1).astype(z.dtype)], axis=-1)
    for width in self.hidden_features:
      z = nn.Dense(width)(z)
      if self.use_batch_norm:
        z = nn.BatchNorm(use_running_average=not train,
                         momentum=self.bn_momentum)(z)
      z = nn.relu(z)
    out = nn.Dense(math.prod(h_BxD.shape[1:]), kernel_init=_zeros,
                   bias_init=_zeros, name="output")(z)
    return out.reshape(h_BxD.shape)


class LinearSynthesizer(MLPSynthesizer):
  """The paper's default: one zero-initialised linear map, ``Wh + Uc + b``."""
  hidden_features: Sequence[int] = ()


class ConvSynthesizer(nn.Module):
  """Convolutional synthesizer for feature maps ``[B, *spatial, C]``.

  The context, if any, is tiled over the spatial dimensions and appended as
  extra input channels.

  Attributes:
    hidden_features: channels of the hidden conv layers; ``()`` makes it linear.
    kernel_size: spatial kernel size of every layer.
    use_batch_norm: BatchNorm after each hidden conv layer.
    bn_momentum: BatchNorm running-average momentum.
  """
  hidden_features: Sequence[int] = (128, 128)
  kernel_size: Sequence[int] = (5, 5)
  use_batch_norm: bool = True
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, h_BxHxWxC, context_BxC=None, train: bool = False):
    spatial = h_BxHxWxC.shape[1:-1]
    if len(spatial) != len(self.kernel_size):
      raise ValueError(
          f"ConvSynthesizer with kernel_size={tuple(self.kernel_size)} needs "
          f"activations with {len(self.kernel_size)} spatial dimensions, got "
          f"shape {h_BxHxWxC.shape}; use LinearSynthesizer or MLPSynthesizer "
          "for flat activations.")
    z = h_BxHxWxC
    if context_BxC is not None:
      batch = z.shape[0]
      ctx = context_BxC.reshape((batch,) + (1,) * len(spatial) + (-1,))
      ctx = jnp.broadcast_to(ctx, z.shape[:-1] + ctx.shape[-1:])
      z = jnp.concatenate([z, ctx.astype(z.dtype)], axis=-1)
    for width in self.hidden_features:
      z = nn.Conv(width, tuple(self.kernel_size), padding="SAME")(z)
      if self.use_batch_norm:
        z = nn.BatchNorm(use_running_average=not train,
                         momentum=self.bn_momentum)(z)
      z = nn.relu(z)
    return nn.Conv(h_BxHxWxC.shape[-1], tuple(self.kernel_size),
                   padding="SAME", kernel_init=_zeros, bias_init=_zeros,
                   name="output")(z)
