"""A stale interface (delay d) and complete unlock (synthetic inputs, §4)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dni_jax as dni
from dni_jax.core import synthetic_inputs
import tiny

TOL = dict(rtol=1e-5, atol=1e-6)


def _step(net, method, opt=None, **kwargs):
  """The jitted step, without donation: the tests reuse their states."""
  return jax.jit(lambda s, b: dni.train_step(
      s, b, net=net, optimizers=opt or tiny.optimizers(),
      source=dni.get_source(method), **kwargs))


# --- stale interface ---------------------------------------------------------


# SGD: an update is proportional to its gradient (Adam's first steps are
# nearly sign(g), which would hide which synthesizer made the gradient).
SGD = dni.Optimizers(optax.sgd(0.1), optax.sgd(0.1))


def _delayed_state(delay, steps=3, method="cdni"):
  net = tiny.network("fcn", depth=3)
  state = dni.init_train_state(net, SGD, dni.get_source(method),
                               jax.random.PRNGKey(0), tiny.batch(),
                               synth_delay=delay)
  synth = tiny.randomize(state.synth_params)
  state = state.replace(synth_params=synth, synth_history=tuple(
      jax.tree_util.tree_map(jnp.copy, synth) for _ in range(delay)))
  step = _step(net, method, opt=SGD)
  for seed in range(steps):
    state, _ = step(state, tiny.batch(seed=seed))
  return net, state, step


def test_delay_zero_keeps_no_history_and_is_the_ordinary_step():
  net, a, _ = _delayed_state(0)
  b = tiny.init(net, "cdni", opt=SGD)
  b = b.replace(synth_params=tiny.randomize(b.synth_params))
  step = _step(net, "cdni", opt=SGD)
  for seed in range(3):
    b, _ = step(b, tiny.batch(seed=seed))
  assert a.synth_history == ()
  chex.assert_trees_all_equal(a, b)


def test_stages_use_the_synthesizer_of_d_steps_before():
  """With delay d the stages move as a fresh step driven by the old M does."""
  net, state, step = _delayed_state(2, steps=3)
  # History: the synthesizers after steps 1 and 2 of 3, oldest first.
  assert len(state.synth_history) == 2
  b = tiny.batch(seed=7)
  delayed, _ = step(state, b)
  fresh = _step(net, "cdni", opt=SGD)
  fresh_on_old = fresh(state.replace(synth_history=(),
                                     synth_params=state.synth_history[0]), b)[0]
  fresh_on_new = fresh(state.replace(synth_history=()), b)[0]
  chex.assert_trees_all_close(delayed.stage_params, fresh_on_old.stage_params,
                              **TOL)
  assert not np.allclose(delayed.stage_params[0]["Dense_0"]["kernel"],
                         fresh_on_new.stage_params[0]["Dense_0"]["kernel"])
  # The current synthesizers are the ones that regress; the queue shifts.
  assert not np.allclose(delayed.synth_params[0]["output"]["kernel"],
                         fresh_on_old.synth_params[0]["output"]["kernel"])
  chex.assert_trees_all_equal(delayed.synth_history,
                              (state.synth_history[1], state.synth_params))


def test_negative_delay_is_refused():
  net = tiny.network("fcn")
  with pytest.raises(ValueError, match="synth_delay must be >= 0"):
    dni.init_train_state(net, tiny.optimizers(), dni.get_source("dni"),
                         jax.random.PRNGKey(0), tiny.batch(), synth_delay=-1)


# --- complete unlock -----------------------------------------------------------


def _unlocked_net(kind="fcn", depth=3):
  model = (synthetic_inputs.MLPInputModel((12,)) if kind == "fcn" else
           synthetic_inputs.ConvInputModel((3,), (3, 3)))
  return dni.decouple(tiny.stages(kind, depth), tiny.synthesizer(kind),
                      input_model=model)


def _unlocked_state(net, kind="fcn", method="cdni_unlocked", opt=None):
  state = tiny.init(net, method, kind=kind, opt=opt)
  # Synthesizers off zero, so that every stage gets a gradient.
  return state.replace(synth_params=tiny.randomize(state.synth_params))


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_unlocked_stage_does_not_depend_on_the_real_input(kind):
  """Stage i+1 trains on I_i(x): changing the real h_i changes nothing."""
  net = _unlocked_net(kind)
  state = _unlocked_state(net, kind)
  b = tiny.batch(kind)
  step = _step(net, "cdni_unlocked")
  other = state.replace(stage_params=(
      tiny.randomize(state.stage_params[0], seed=5, scale=1.0),)
      + state.stage_params[1:])
  a, ma = step(state, b)
  c, mc = step(other, b)
  # The real h_1 and h_2 differ (stage 0 changed)...
  ha = dni.predict(state.replace(stage_params=state.stage_params[:1]),
                   b["inputs"], net=dni.decouple(net.stages[:1]))
  hc = dni.predict(other.replace(stage_params=other.stage_params[:1]),
                   b["inputs"], net=dni.decouple(net.stages[:1]))
  assert not np.allclose(ha, hc)
  # ...but stages 1 and 2 and the last synthesizer update identically.
  chex.assert_trees_all_equal(a.stage_params[1:], c.stage_params[1:])
  chex.assert_trees_all_equal(a.stage_opt_state[1:], c.stage_opt_state[1:])
  chex.assert_trees_all_equal(a.synth_params[1], c.synth_params[1])
  # The input models do see the real chain: their targets moved.
  assert float(ma["input_loss/0"]) != pytest.approx(float(mc["input_loss/0"]))


def test_locked_chain_does_depend_on_the_real_input():
  """The same perturbation does reach stage 1 without unlocking (control)."""
  net = _unlocked_net()
  state = _unlocked_state(net, method="cdni")
  other = state.replace(stage_params=(
      tiny.randomize(state.stage_params[0], seed=5, scale=1.0),)
      + state.stage_params[1:])
  step = _step(net, "cdni")
  a, _ = step(state, tiny.batch())
  c, _ = step(other, tiny.batch())
  assert not np.allclose(a.stage_params[1]["Dense_0"]["kernel"],
                         c.stage_params[1]["Dense_0"]["kernel"])


def test_input_model_regresses_onto_the_real_activation():
  """I_i's update is plain SGD on jax.grad of mean_B ‖I_i(x) − h_i‖²."""
  lr = 0.5
  opt = dni.Optimizers(optax.adam(1e-2), optax.sgd(lr))
  net = _unlocked_net()
  state = _unlocked_state(net, opt=opt)
  b = tiny.batch()
  new, metrics = _step(net, "cdni_unlocked", opt=opt)(state, b)
  x = b["inputs"]
  h, real = x, []
  for stage, p, s in zip(net.stages, state.stage_params, state.stage_state):
    h = stage.apply({"params": p, **s}, h, train=True,
                    mutable=["batch_stats"])[0]
    real.append(h)
  for i, model in enumerate(net.input_models):
    def l2(params, i=i, model=model):
      pred = model.apply({"params": params}, x, real[i].shape[1:])
      return jnp.sum(jnp.square(pred - real[i])) / x.shape[0]
    loss, grad = jax.value_and_grad(l2)(state.input_params[i])
    expected = jax.tree_util.tree_map(lambda p, g: p - lr * g,
                                      state.input_params[i], grad)
    chex.assert_trees_all_close(new.input_params[i], expected, **TOL)
    assert float(metrics[f"input_loss/{i}"]) == pytest.approx(float(loss),
                                                              rel=1e-5)


def test_evaluation_runs_the_real_chain():
  net = _unlocked_net()
  state = _unlocked_state(net)
  step = _step(net, "cdni_unlocked")
  for seed in range(2):
    state, _ = step(state, tiny.batch(seed=seed))
  b = tiny.batch(seed=3)
  outputs = dni.predict(state, b["inputs"], net=net)
  # The composed stages in evaluation mode, by hand...
  h = b["inputs"]
  for stage, p, s in zip(net.stages, state.stage_params, state.stage_state):
    h = stage.apply({"params": p, **s}, h, train=False)
  np.testing.assert_allclose(outputs, h, rtol=1e-6)
  # ...whatever the input models say.
  scrambled = state.replace(input_params=tiny.randomize(state.input_params))
  np.testing.assert_array_equal(
      dni.predict(scrambled, b["inputs"], net=net), outputs)


def test_unlocked_batch_norm_statistics_come_from_the_real_chain():
  net = _unlocked_net()
  state = _unlocked_state(net)
  b = tiny.batch()
  new, _ = _step(net, "cdni_unlocked")(state, b)
  h, expected = b["inputs"], []
  for stage, p, s in zip(net.stages, state.stage_params, state.stage_state):
    h, variables = stage.apply({"params": p, **s}, h, train=True,
                               mutable=["batch_stats"])
    expected.append(dict(variables))
  chex.assert_trees_all_close(new.stage_state, tuple(expected), **TOL)


def test_one_stage_network_cannot_be_unlocked():
  net = dni.decouple(tiny.stages("fcn", depth=1), tiny.synthesizer(),
                     input_model=synthetic_inputs.LinearInputModel())
  with pytest.raises(ValueError, match="at least two stages"):
    tiny.init(net, "cdni_unlocked")


def test_unlocked_method_needs_input_models():
  net = tiny.network("fcn")
  with pytest.raises(ValueError, match="input model"):
    tiny.init(net, "dni_unlocked")


def test_stochastic_unlocked_step_with_zero_probability_moves_nothing():
  net = _unlocked_net()
  state = _unlocked_state(net)
  new, _ = _step(net, "cdni_unlocked", update_prob=0.0)(state, tiny.batch())
  for name in ("stage_params", "stage_opt_state", "synth_params",
               "input_params", "input_opt_state"):
    chex.assert_trees_all_equal(getattr(new, name), getattr(state, name))
