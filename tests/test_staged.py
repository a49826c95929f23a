"""The staged forward pass, backprop sweep and decoupled gradients.

Every expectation is computed independently of dni_jax's staging, from the
stages composed as one plain function (``tiny.monolithic_loss``).
"""

import chex
import jax
import pytest

import dni_jax as dni
from dni_jax.core import module_state
from dni_jax.core import staged
import tiny

RNG = jax.random.PRNGKey(3)
TOL = dict(rtol=1e-4, atol=1e-6)


def _setup(kind, method="backprop", sg_scale=1.0, randomize_synths=False,
           per_example=True):
  net = tiny.network(kind, sg_scale=sg_scale, per_example=per_example)
  state = tiny.init(net, method, kind=kind)
  if randomize_synths:
    state = state.replace(synth_params=tiny.randomize(state.synth_params))
  b = tiny.batch(kind)
  fwd = staged.forward(net, state.stage_params, state.stage_state, b, RNG)
  return net, state, b, fwd


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_staged_backprop_equals_plain_grad(kind):
  net, state, b, fwd = _setup(kind)
  stage_grads, _ = staged.backprop_grads(fwd)
  loss, expected = jax.value_and_grad(
      lambda ps: tiny.monolithic_loss(net, ps, state.stage_state, b))(
          state.stage_params)
  chex.assert_trees_all_close(fwd.loss, loss, **TOL)
  chex.assert_trees_all_close(stage_grads + (fwd.last_grads,), expected, **TOL)


def test_true_boundary_grads_are_dloss_dh():
  net, state, b, fwd = _setup("fcn")
  _, true_grads = staged.backprop_grads(fwd)
  hidden = tiny.hidden_states(net, state.stage_params, state.stage_state, b)
  for i, true in enumerate(true_grads):
    expected = jax.grad(lambda h: tiny.monolithic_loss(
        net, state.stage_params, state.stage_state, b, from_stage=i + 1,
        h=h))(hidden[i])
    chex.assert_trees_all_close(true, expected, **TOL)


@pytest.mark.parametrize("per_example", [True, False])
@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_bootstrapped_targets(kind, per_example):
  """target_i = vjp of stage i+1 applied to δ̂_{i+1}; the last is exact.

  ``δ̂ = λ·M(h)``, over the batch size ``B`` in per-example units, where the
  synthesizer then regresses onto ``B·target``.
  """
  sg_scale = 0.5
  net, state, b, fwd = _setup(kind, "dni", sg_scale, randomize_synths=True,
                              per_example=per_example)
  units = len(b["labels"]) if per_example else 1
  out = dni.get_source("dni")(net, fwd, state.synth_params, state.synth_state,
                              b, RNG, sg_scale=state.sg_scale)
  hidden = tiny.hidden_states(net, state.stage_params, state.stage_state, b)
  last = net.num_boundaries - 1
  for i in range(last):
    synth = net.synthesizers[i + 1]
    pred, _ = module_state.apply(synth, state.synth_params[i + 1],
                                 state.synth_state[i + 1], hidden[i + 1],
                                 None, train=True)
    stage = net.stages[i + 1]
    stage_vars = {"params": state.stage_params[i + 1],
                  **state.stage_state[i + 1]}
    _, vjp = jax.vjp(lambda h: stage.apply(stage_vars, h, train=True,
                                           mutable=["batch_stats"])[0],
                     hidden[i])
    (expected,) = vjp(sg_scale / units * pred)
    chex.assert_trees_all_close(out.boundary_grads[i + 1],
                                sg_scale / units * pred, **TOL)
    assert float(jax.numpy.abs(expected).max()) > 0
    chex.assert_trees_all_close(out.targets[i], expected, **TOL)
  true_last = jax.grad(lambda h: tiny.monolithic_loss(
      net, state.stage_params, state.stage_state, b, from_stage=last + 1,
      h=h))(hidden[last])
  chex.assert_trees_all_close(out.targets[last], true_last, **TOL)
  # The regression loss is measured against units × target.
  for i, synth_loss in enumerate(out.synth_losses):
    pred = out.boundary_grads[i] * units / sg_scale
    expected = jax.numpy.sum((pred - units * out.targets[i]) ** 2) / len(pred)
    chex.assert_trees_all_close(synth_loss, expected, **TOL)


def test_decoupled_grads_with_exact_boundary_grads_are_backprop():
  _, _, _, fwd = _setup("cnn")
  bp_grads, true_grads = staged.backprop_grads(fwd)
  dni_grads, targets = staged.decoupled_grads(fwd, true_grads)
  chex.assert_trees_all_close(dni_grads, bp_grads, **TOL)
  chex.assert_trees_all_close(targets, true_grads, **TOL)


def test_synthesizer_regression_gradient_is_grad_of_l2_loss():
  net, state, b, fwd = _setup("fcn", "dni", randomize_synths=True)
  out = dni.get_source("dni")(net, fwd, state.synth_params, state.synth_state,
                              b, RNG, sg_scale=state.sg_scale)
  for i, synth in enumerate(net.synthesizers):
    def loss(params, i=i, synth=synth):
      pred, _ = module_state.apply(synth, params, state.synth_state[i],
                                   fwd.hidden[i], None, train=True)
      target = pred.shape[0] * out.targets[i]  # per-example units
      return jax.numpy.mean(jax.numpy.sum(
          (pred - target).reshape(pred.shape[0], -1) ** 2, -1))
    value, grads = jax.value_and_grad(loss)(state.synth_params[i])
    chex.assert_trees_all_close(out.synth_losses[i], value, **TOL)
    chex.assert_trees_all_close(out.synth_grads[i], grads, **TOL)


def test_one_stage_network_is_plain_backprop():
  net = tiny.network("fcn", depth=1)
  state = tiny.init(net, "backprop")
  b = tiny.batch()
  fwd = staged.forward(net, state.stage_params, state.stage_state, b, RNG)
  assert fwd.vjps == () and fwd.last_input_grad is None
  expected = jax.grad(lambda ps: tiny.monolithic_loss(
      net, ps, state.stage_state, b))(state.stage_params)
  chex.assert_trees_all_close((fwd.last_grads,), expected, **TOL)


def test_wrong_number_of_boundary_grads():
  _, _, _, fwd = _setup("fcn")
  with pytest.raises(ValueError, match="expected 2 boundary gradients"):
    staged.decoupled_grads(fwd, ())
