"""The paper's feed-forward networks as lists of stages (plain Flax modules).

A *stage* is the unit between two decoupled interfaces. The networks here know
nothing of DNI: any method (backprop, DNI, cDNI) runs them stage by stage. The
classifier head is part of the last stage, so a network of ``depth`` stages has
``depth - 1`` synthetic-gradient boundaries.

- FCN (docs/method.md): stages Linear→BN→ReLU of 256 units.
- CNN: stages 5×5 conv→BN→ReLU→max-pool (3×3, stride 2) of 128 filters.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn


ACTIVATIONS = ("relu", "sigmoid", "tanh")


class DenseBlock(nn.Module):
  """Linear→BN→activation on the flattened input, then an optional classifier.

  Attributes:
    features: width of the linear layer.
    use_batch_norm: BatchNorm between the linear layer and the activation.
    num_classes: if set, a final linear layer to this many logits.
    bn_momentum: BatchNorm running-average momentum.
    activation: one of ``ACTIVATIONS``.
  """
  features: int = 256
  use_batch_norm: bool = True
  num_classes: int | None = None
  bn_momentum: float = 0.9
  activation: str = "relu"

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = x.reshape(x.shape[0], -1)
    h = nn.Dense(self.features, use_bias=not self.use_batch_norm)(h)
    if self.use_batch_norm:
      h = nn.BatchNorm(use_running_average=not train,
                       momentum=self.bn_momentum)(h)
    h = getattr(nn, self.activation)(h)
    if self.num_classes is not None:
      h = nn.Dense(self.num_classes, name="classifier")(h)
    return h


class ConvBlock(nn.Module):
  """Conv→BN→ReLU→max-pool on ``[B, H, W, C]``, then an optional classifier.

  Attributes:
    features: number of filters.
    kernel_size: conv kernel.
    pool_window: max-pool window; ``None`` for no pooling.
    pool_stride: max-pool stride.
    use_batch_norm: BatchNorm between the conv and the ReLU.
    num_classes: if set, flatten and a final linear layer to this many logits.
    bn_momentum: BatchNorm running-average momentum.
  """
  features: int = 128
  kernel_size: Sequence[int] = (5, 5)
  pool_window: Sequence[int] | None = (3, 3)
  pool_stride: Sequence[int] = (2, 2)
  use_batch_norm: bool = True
  num_classes: int | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim != 4:
      raise ValueError(f"ConvBlock expects images [B, H, W, C], got shape "
                       f"{x.shape}; reshape the inputs or use an FCN.")
    h = nn.Conv(self.features, tuple(self.kernel_size), padding="SAME",
                use_bias=not self.use_batch_norm)(x)
    if self.use_batch_norm:
      h = nn.BatchNorm(use_running_average=not train,
                       momentum=self.bn_momentum)(h)
    h = nn.relu(h)
    if self.pool_window is not None:
      h = nn.max_pool(h, tuple(self.pool_window), tuple(self.pool_stride),
                      padding="SAME")
    if self.num_classes is not None:
      h = nn.Dense(self.num_classes, name="classifier")(
          h.reshape(h.shape[0], -1))
    return h


def _check_depth(depth: int) -> None:
  if depth < 1:
    raise ValueError(f"a network needs at least one stage, got depth={depth}")


def fcn_stages(depth: int = 3, width: int = 256, num_classes: int = 10,
               use_batch_norm: bool = True) -> tuple[nn.Module, ...]:
  """The paper's FCN: ``depth`` stages of Linear→BN→ReLU, head on the last."""
  _check_depth(depth)
  return tuple(
      DenseBlock(width, use_batch_norm,
                 num_classes if i == depth - 1 else None)
      for i in range(depth))


def cnn_stages(depth: int = 3, features: int = 128, num_classes: int = 10,
               kernel_size: Sequence[int] = (5, 5),
               pool_window: Sequence[int] | None = (3, 3),
               use_batch_norm: bool = True) -> tuple[nn.Module, ...]:
  """The paper's CNN: ``depth`` conv stages with pooling, head on the last."""
  _check_depth(depth)
  return tuple(
      ConvBlock(features, tuple(kernel_size),
                None if pool_window is None else tuple(pool_window),
                use_batch_norm=use_batch_norm,
                num_classes=num_classes if i == depth - 1 else None)
      for i in range(depth))


def mlp_stages(widths: Sequence[int], num_outputs: int,
               activation: str = "sigmoid",
               use_batch_norm: bool = False) -> tuple[nn.Module, ...]:
  """One stage per hidden width, then the output layer as a stage of its own.

  The binary-addition network of the classic numpy demonstration is
  ``mlp_stages((128, 64), 8)``: three layers, a synthesizer after each of the
  two hidden ones.
  """
  if activation not in ACTIVATIONS:
    raise ValueError(f"unknown activation {activation!r}; choose one of "
                     f"{ACTIVATIONS}")
  return tuple(DenseBlock(w, use_batch_norm, activation=activation)
               for w in widths) + (nn.Dense(num_outputs, name="output"),)
