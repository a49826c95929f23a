"""Task losses, task metrics and gradient-alignment diagnostics.

A loss is ``loss_fn(outputs, labels) -> scalar`` (the batch mean); a metrics
function is ``metrics_fn(outputs, labels) -> dict[str, scalar]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits_BxC: jax.Array, labels_B: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy against integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits_BxC, labels_B).mean()


def classification_metrics(logits_BxC: jax.Array,
                           labels_B: jax.Array) -> dict[str, jax.Array]:
  """Top-1 accuracy against integer labels."""
  return {"accuracy": (logits_BxC.argmax(-1) == labels_B).mean()}


def sigmoid_binary_cross_entropy(logits_BxK: jax.Array,
                                 bits_BxK: jax.Array) -> jax.Array:
  """Mean over the batch of the summed per-bit binary cross-entropy."""
  return optax.sigmoid_binary_cross_entropy(
      logits_BxK, bits_BxK).sum(-1).mean()


def bit_metrics(logits_BxK: jax.Array,
                bits_BxK: jax.Array) -> dict[str, jax.Array]:
  """Bit accuracy and whole-target accuracy (every bit right)."""
  correct_BxK = (logits_BxK > 0) == (bits_BxK > 0.5)
  return {"accuracy": correct_BxK.mean(),
          "exact_match": correct_BxK.all(-1).mean()}


def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = 1e-30) -> jax.Array:
  """Cosine between two arrays, each flattened whole (batch included)."""
  a, b = a.ravel(), b.ravel()
  return jnp.vdot(a, b) / jnp.sqrt(jnp.vdot(a, a) * jnp.vdot(b, b) + eps)


def relative_error(estimate: jax.Array, truth: jax.Array,
                   eps: float = 1e-30) -> jax.Array:
  """``‖estimate − truth‖ / ‖truth‖`` over the flattened arrays."""
  return jnp.linalg.norm((estimate - truth).ravel()) / (
      jnp.linalg.norm(truth.ravel()) + eps)


def r_squared(prediction, target):
  """1 − the squared error over the target's variance about its mean over
  the examples (axis 0): 0 for the best constant, 1 for a perfect fit."""
  variance = jnp.sum(jnp.square(target - target.mean(0)))
  return 1.0 - jnp.sum(jnp.square(prediction - target)) / jnp.maximum(
      variance, 1e-12)
