"""Synthesizers: zero start, shapes, linearity, context, BatchNorm state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dni_jax as dni
from dni_jax.core import module_state
import tiny


def _init(synth, h, context=None):
  return module_state.init(synth, jax.random.PRNGKey(0), h, context)


CASES = [
    (dni.LinearSynthesizer(), (4, 7)),
    (dni.MLPSynthesizer(hidden_features=(8, 8)), (4, 3, 5)),
    (dni.MLPSynthesizer(hidden_features=(8,), use_batch_norm=False), (4, 7)),
    (dni.ConvSynthesizer(hidden_features=(3, 3), kernel_size=(3, 3)),
     (4, 5, 5, 2)),
    (dni.ConvSynthesizer(hidden_features=()), (4, 6, 6, 3)),
]


@pytest.mark.parametrize("synth,shape", CASES)
@pytest.mark.parametrize("with_context", [False, True])
def test_zero_initialised_output_of_same_shape(synth, shape, with_context):
  h = jax.random.normal(jax.random.PRNGKey(1), shape)
  context = jnp.ones((shape[0], 3)) if with_context else None
  params, state = _init(synth, h, context)
  out, _ = module_state.apply(synth, params, state, h, context, train=True)
  assert out.shape == h.shape
  np.testing.assert_array_equal(out, jnp.zeros_like(h))


def test_linear_synthesizer_is_affine_in_h():
  synth = dni.LinearSynthesizer()
  h1, h2 = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 6))
  params, state = _init(synth, h1)
  params = tiny.randomize(params)
  f = lambda h: module_state.apply(synth, params, state, h, train=True)[0]
  zero = f(jnp.zeros_like(h1))
  np.testing.assert_allclose(f(h1 + h2) - zero, (f(h1) - zero) + (f(h2) - zero),
                             atol=1e-5)
  assert not np.allclose(f(h1), zero)


@pytest.mark.parametrize("synth,shape", CASES[:1] + CASES[3:4])
def test_context_changes_the_prediction(synth, shape):
  h = jax.random.normal(jax.random.PRNGKey(1), shape)
  c1 = jax.nn.one_hot(jnp.arange(shape[0]) % 3, 3)
  c2 = jax.nn.one_hot((jnp.arange(shape[0]) + 1) % 3, 3)
  params, state = _init(synth, h, c1)
  params = tiny.randomize(params)
  f = lambda c: module_state.apply(synth, params, state, h, c, train=True)[0]
  assert not np.allclose(f(c1), f(c2))


def test_batch_norm_state_is_carried_functionally():
  synth = dni.MLPSynthesizer(hidden_features=(8,))
  h = jax.random.normal(jax.random.PRNGKey(1), (6, 4)) + 3.0
  params, state = _init(synth, h)
  _, new_state = module_state.apply(synth, params, state, h, train=True)
  assert set(new_state) == {"batch_stats"}
  before, after = (jax.tree_util.tree_leaves(s) for s in (state, new_state))
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  _, eval_state = module_state.apply(synth, params, state, h, train=False)
  assert eval_state is state


def test_conv_synthesizer_rejects_flat_activations():
  with pytest.raises(ValueError, match="spatial dimensions"):
    _init(dni.ConvSynthesizer(), jnp.ones((2, 8)))
