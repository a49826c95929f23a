"""The paper's FCN and CNN as stage lists."""

import jax
import pytest

import dni_jax as dni
from dni_jax.core import module_state


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_fcn_stage_shapes(depth):
  x = jax.numpy.ones((2, 28, 28, 1))
  stages = dni.fcn_stages(depth, width=32, num_classes=10)
  assert len(stages) == depth
  h = x
  for i, stage in enumerate(stages):
    params, state = module_state.init(stage, jax.random.PRNGKey(i), h)
    h, _ = module_state.apply(stage, params, state, h, train=True)
    assert h.shape == ((2, 32) if i < depth - 1 else (2, 10))
    assert "batch_stats" in state


def test_cnn_stage_shapes_pool_each_stage():
  h = jax.numpy.ones((2, 28, 28, 1))
  shapes = []
  for i, stage in enumerate(dni.cnn_stages(3, features=8, num_classes=10)):
    params, state = module_state.init(stage, jax.random.PRNGKey(i), h)
    h, _ = module_state.apply(stage, params, state, h, train=False)
    shapes.append(h.shape)
  assert shapes == [(2, 14, 14, 8), (2, 7, 7, 8), (2, 10)]


def test_invalid_depth_and_input_rank():
  with pytest.raises(ValueError, match="at least one stage"):
    dni.fcn_stages(0)
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    module_state.init(dni.ConvBlock(), jax.random.PRNGKey(0),
                      jax.numpy.ones((2, 5)))


def _graves_step(p, c, h, x, forget_bias):
  """Graves (2013) eqs. 7–11, written out in numpy from the cell's parameters."""
  import numpy as np
  sig = lambda z: 1 / (1 + np.exp(-z))
  z = x @ p["input"]["kernel"] + h @ p["recurrent"]["kernel"] + p[
      "recurrent"]["bias"]
  zi, zf, zg, zo = np.split(z, 4, axis=-1)
  w = p.get("peepholes", np.zeros((3, c.shape[-1])))
  i = sig(zi + w[0] * c)
  f = sig(zf + w[1] * c + forget_bias)
  c = f * c + i * np.tanh(zg)
  o = sig(zo + w[2] * c)
  return c, o * np.tanh(c)


@pytest.mark.parametrize("peepholes", [False, True])
def test_graves_lstm_cell_is_graves_2013(peepholes):
  import numpy as np
  from dni_jax.models import rnn
  cell = rnn.GravesLSTMCell(5, forget_bias=1.0, peepholes=peepholes)
  kc, kh, kx, kp = jax.random.split(jax.random.PRNGKey(0), 4)
  c, h = jax.random.normal(kc, (3, 5)), jax.random.normal(kh, (3, 5))
  x = jax.random.normal(kx, (3, 4))
  params = cell.init(kp, (c, h), x)["params"]
  assert ("peepholes" in params) == peepholes
  # Random peepholes (they start at zero), so every term matters.
  params = jax.tree_util.tree_map(
      lambda a: a + 0.5 * jax.random.normal(jax.random.PRNGKey(a.size),
                                            a.shape), params)
  (c1, h1), out = cell.apply({"params": params}, (c, h), x)
  np_params = jax.tree_util.tree_map(np.asarray, params)
  ec, eh = _graves_step(np_params, np.asarray(c), np.asarray(h),
                        np.asarray(x), 1.0)
  np.testing.assert_allclose(c1, ec, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(h1, eh, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(out, h1)


def test_recurrent_core_picks_its_lstm():
  import numpy as np
  from dni_jax.models import rnn
  x, s = jax.numpy.zeros((2, 3)), jax.numpy.zeros((2, 8))
  flax_core = rnn.RecurrentCore("lstm", 4, 2)
  graves_core = rnn.RecurrentCore("lstm", 4, 2, forget_bias=1.0)
  flax_params = flax_core.init(jax.random.PRNGKey(0), s, x)["params"]
  graves_params = graves_core.init(jax.random.PRNGKey(0), s, x)["params"]
  assert "hf" in flax_params["rnn_cell"]  # Flax's OptimizedLSTMCell
  assert set(graves_params["rnn_cell"]) == {"input", "recurrent"}
  # From c = 1, h = 0 and a zero input, with the biases at their zero
  # initialisation, c' = σ(forget_bias)·1 + σ(0)·tanh(0).
  s1 = jax.numpy.concatenate([jax.numpy.ones((2, 4)),
                              jax.numpy.zeros((2, 4))], -1)
  for core, params, f in ((flax_core, flax_params, 0.5),
                          (graves_core, graves_params, 0.7310586)):
    new_state, _ = core.apply({"params": params}, s1, x)
    np.testing.assert_allclose(new_state[:, :4], f, rtol=1e-6)


def test_graves_lstm_cell_without_its_options_is_flax_lstm():
  """The gate order and equations against Flax's cell, independently of
  the numpy transcription above."""
  import flax.linen as nn
  import numpy as np
  from dni_jax.models import rnn
  kc, kh, kx, kp = jax.random.split(jax.random.PRNGKey(1), 4)
  c, h = jax.random.normal(kc, (3, 5)), jax.random.normal(kh, (3, 5))
  x = jax.random.normal(kx, (3, 4))
  flax_cell = nn.OptimizedLSTMCell(5)
  fp = flax_cell.init(kp, (c, h), x)["params"]
  fp = jax.tree_util.tree_map(
      lambda a: a + 0.3 * jax.random.normal(jax.random.PRNGKey(a.size + 7),
                                            a.shape), fp)
  gates = "ifgo"
  graves = {
      "input": {"kernel": np.concatenate(
          [fp["i" + g]["kernel"] for g in gates], -1)},
      "recurrent": {
          "kernel": np.concatenate([fp["h" + g]["kernel"] for g in gates],
                                   -1),
          "bias": np.concatenate([fp["h" + g]["bias"] for g in gates], -1)}}
  (c1, h1), _ = flax_cell.apply({"params": fp}, (c, h), x)
  (c2, h2), _ = rnn.GravesLSTMCell(5).apply({"params": graves}, (c, h), x)
  np.testing.assert_allclose(c2, c1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(h2, h1, rtol=1e-5, atol=1e-6)
