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
