"""Offline fits: how much of a target a model that reads ``x`` can predict.

The reading tools (``experiments.two_networks_fit``, ``experiments.
sg_alignment``) hold a trained run fixed, collect what a synthesizer reads
and the gradient it stands for, and ask whether *any* model of a given form
could predict one from the other: a fresh model is fitted by least squares
on training examples and scored by its held-out R² (``losses.r_squared``: 0
for the best constant, 1 for a perfect fit). What such a fit reaches is a
measure of what the input holds; what the run's own synthesizer reaches is
what online training got of it.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from dni_jax.core.losses import r_squared


def _init(key, widths):
  keys = jax.random.split(key, len(widths) - 1)
  layers = [(jax.random.normal(k, (i, o)) / jnp.sqrt(i), jnp.zeros(o))
            for k, i, o in zip(keys, widths[:-1], widths[1:])]
  layers[-1] = (jnp.zeros_like(layers[-1][0]), layers[-1][1])  # as M's
  return layers


def _apply(layers, x):
  for w, b in layers[:-1]:
    x = jax.nn.relu(x @ w + b)
  return x @ layers[-1][0] + layers[-1][1]


def _squared_error(layers, x, y):
  return jnp.mean(jnp.sum(jnp.square(_apply(layers, x) - y), -1))


def mlp_r2(x, y, x_eval, y_eval, key, *, hidden: Sequence[int], steps: int,
           batch_size: int, learning_rate: float, x_val=None, y_val=None,
           check_every: int = 100) -> jax.Array:
  """The held-out R² of an MLP fitted from ``x [N, D]`` to ``y [N, S]``.

  ReLU hidden layers ``hidden`` (He-scaled normal weights; the output layer
  zero, as a synthesizer's), Adam ``learning_rate``, ``steps`` minibatches
  of ``batch_size`` drawn with replacement, on the squared error summed over
  the target's dimensions. With ``x_val``/``y_val`` (examples kept out of
  the fit) the validation loss is checked every ``check_every`` steps and
  the parameters where it was lowest are scored (early stopping, so that a
  target the input cannot predict is not scored after the MLP has learned
  its training noise by heart); without them, the last parameters. The
  minibatches are the same either way. Traceable: ``jax.vmap`` it over
  several fits.
  """
  widths = (x.shape[-1], *hidden, y.shape[-1])
  optimizer = optax.adam(learning_rate)

  def step(i, carry):
    layers, opt_state = carry
    idx = jax.random.randint(jax.random.fold_in(key, i), (batch_size,), 0,
                             x.shape[0])
    grads = jax.grad(_squared_error)(layers, x[idx], y[idx])
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(layers, updates), opt_state

  layers = _init(key, widths)
  carry = (layers, optimizer.init(layers))
  if x_val is None:
    layers, _ = jax.lax.fori_loop(0, steps, step, carry)
    return r_squared(_apply(layers, x_eval), y_eval)

  def chunk(state, start):
    carry, best, best_loss = state
    carry = jax.lax.fori_loop(start, jnp.minimum(start + check_every, steps),
                              step, carry)
    loss = _squared_error(carry[0], x_val, y_val)
    better = loss < best_loss
    best = jax.tree_util.tree_map(lambda n, o: jnp.where(better, n, o),
                                  carry[0], best)
    return (carry, best, jnp.minimum(loss, best_loss)), None

  starts = jnp.arange(0, steps, check_every)
  first = (carry, layers, _squared_error(layers, x_val, y_val))
  (_, best, _), _ = jax.lax.scan(chunk, first, starts)
  return r_squared(_apply(best, x_eval), y_eval)
