"""The shared training step: the properties that prove a DNI implementation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dni_jax as dni
from dni_jax.core import gradient_sources
from dni_jax.core import step as step_lib
from dni_jax.core import synthetic_inputs
from dni_jax.training import experiment
import tiny

from configs import base as base_config

TOL = dict(rtol=1e-4, atol=1e-6)


def _step(net, source, opt=None, **kwargs):
  return jax.jit(lambda s, b: dni.train_step(
      s, b, net=net, optimizers=opt or tiny.optimizers(), source=source,
      **kwargs))


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_oracle_dni_update_equals_backprop_update(kind):
  """Exact ∂L/∂h_i in place of the synthetic gradient gives backprop's update.

  Checked over three steps (Adam state included) against one plain optax Adam
  on ``jax.grad`` of the composed network; BatchNorm statistics too.
  """
  net = tiny.network(kind)
  oracle = dni.SyntheticGradients(oracle=True)
  state = tiny.init(net, oracle, kind=kind)
  step = _step(net, oracle)
  tx = optax.adam(1e-2)
  params, opt_state = state.stage_params, tx.init(state.stage_params)
  bn_state = state.stage_state
  for seed in range(3):
    b = tiny.batch(kind, seed=seed)
    grads = jax.grad(lambda ps: tiny.monolithic_loss(net, ps, bn_state, b))(
        params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    hidden_vars = [stage.apply({"params": p, **s}, h, train=True,
                               mutable=["batch_stats"])[1]
                   for stage, p, s, h in zip(
                       net.stages, state.stage_params, bn_state,
                       [b["inputs"]] + tiny.hidden_states(
                           net, state.stage_params, bn_state, b)[:-1])]
    bn_state = tuple(hidden_vars)
    state, _ = step(state, b)
    chex.assert_trees_all_close(state.stage_params, params, **TOL)
    chex.assert_trees_all_close(state.stage_state, bn_state, **TOL)


def test_backprop_and_oracle_steps_agree():
  net = tiny.network("cnn")
  oracle = dni.SyntheticGradients(oracle=True)
  s_bp, s_or = tiny.init(net, "backprop", kind="cnn"), tiny.init(
      net, oracle, kind="cnn")
  b = tiny.batch("cnn")
  s_bp, m_bp = _step(net, dni.get_source("backprop"))(s_bp, b)
  s_or, m_or = _step(net, oracle)(s_or, b)
  chex.assert_trees_all_close(s_bp.stage_params, s_or.stage_params, **TOL)
  assert float(m_bp["loss"]) == pytest.approx(float(m_or["loss"]))


@pytest.mark.parametrize("method", ["dni", "cdni"])
def test_zero_initialised_synthesizers_hold_lower_stages_on_first_step(method):
  net = tiny.network("fcn", depth=4)
  state = tiny.init(net, method)
  before = state.stage_params
  after, _ = _step(net, dni.get_source(method))(state, tiny.batch())
  for i in range(net.num_boundaries):
    chex.assert_trees_all_equal(after.stage_params[i], before[i])
  diffs = jax.tree_util.tree_map(lambda a, b: jnp.abs(a - b).max(),
                                 after.stage_params[-1], before[-1])
  assert all(float(d) > 0 for d in jax.tree_util.tree_leaves(diffs))


def _with_later_stages_changed(state, first_changed):
  params = list(state.stage_params)
  for j in range(first_changed, len(params)):
    params[j] = tiny.randomize(params[j], seed=10 + j, scale=1.0)
  return state.replace(stage_params=tuple(params))


@pytest.mark.parametrize("first_changed", [1, 2])
def test_isolation_later_stages_do_not_reach_earlier_updates(first_changed):
  """Given the same synthetic gradient, stage i's update ignores stages > i."""
  net = tiny.network("fcn", depth=3)
  state = tiny.init(net, "dni")
  state = state.replace(synth_params=tiny.randomize(state.synth_params))
  step = _step(net, dni.get_source("dni"))
  b = tiny.batch()
  changed = _with_later_stages_changed(state, first_changed)
  a, _ = step(state, b)
  c, _ = step(changed, b)
  for i in range(first_changed):
    chex.assert_trees_all_equal(a.stage_params[i], c.stage_params[i])
  # The same change does reach stage 0 under backprop: the test is sensitive.
  bp_state = tiny.init(net, "backprop")
  bp_step = _step(net, dni.get_source("backprop"))
  a, _ = bp_step(bp_state, b)
  c, _ = bp_step(_with_later_stages_changed(bp_state, first_changed), b)
  assert not np.allclose(a.stage_params[0]["Dense_0"]["kernel"],
                         c.stage_params[0]["Dense_0"]["kernel"])


def _predictions(net, state, source, b):
  fwd = dni.forward(net, state.stage_params, state.stage_state, b,
                    jax.random.PRNGKey(0))
  preds, _, _ = gradient_sources.predict_synthetic_grads(
      net, state.synth_params, state.synth_state, fwd.hidden,
      source.context(b, fwd.outputs), jax.random.PRNGKey(0))
  return preds


def _two_labelings(method):
  """A network with non-zero synthesizers and one batch with two labelings."""
  net = tiny.network("fcn")
  source = dni.get_source(method)
  state = tiny.init(net, source)
  state = state.replace(synth_params=tiny.randomize(state.synth_params))
  b1 = tiny.batch()
  b2 = dict(b1, labels=(b1["labels"] + 1) % tiny.NUM_CLASSES)
  return net, source, state, b1, b2


def test_cdni_synthetic_gradient_depends_on_labels():
  net, source, state, b1, b2 = _two_labelings("cdni")
  for p1, p2 in zip(_predictions(net, state, source, b1),
                    _predictions(net, state, source, b2)):
    assert not np.allclose(p1, p2)


def test_dni_synthetic_gradient_and_lower_updates_ignore_labels():
  net, source, state, b1, b2 = _two_labelings("dni")
  for p1, p2 in zip(_predictions(net, state, source, b1),
                    _predictions(net, state, source, b2)):
    chex.assert_trees_all_equal(p1, p2)
  step = _step(net, source)
  a, _ = step(state, b1)
  c, _ = step(state, b2)
  for i in range(net.num_boundaries):
    chex.assert_trees_all_equal(a.stage_params[i], c.stage_params[i])
  assert not np.allclose(a.stage_params[-1]["classifier"]["kernel"],
                         c.stage_params[-1]["classifier"]["kernel"])


def test_jitted_step_traces_once(monkeypatch):
  traces = []

  def counting_train_step(*args, **kwargs):
    traces.append(1)
    return dni.train_step(*args, **kwargs)

  monkeypatch.setattr(step_lib, "train_step", counting_train_step)
  net = tiny.network("fcn")
  source = dni.get_source("cdni")
  opt = tiny.optimizers()
  state = tiny.init(net, source, opt=opt)
  step = dni.make_train_step(net, opt, source)
  for seed in range(6):
    state, metrics = step(state, tiny.batch(seed=seed))
  assert len(traces) == 1
  assert int(state.step) == 6
  assert set(metrics) == {"loss", "accuracy", "synth_loss/0", "synth_loss/1"}


def test_alignment_metrics():
  net = tiny.network("fcn")
  b = tiny.batch()
  oracle = dni.SyntheticGradients(oracle=True)
  _, m = _step(net, oracle, track_alignment=True)(tiny.init(net, oracle), b)
  for i in range(net.num_boundaries):
    assert float(m[f"grad_cosine/{i}"]) == pytest.approx(1.0, abs=1e-5)
    assert float(m[f"grad_rel_error/{i}"]) == pytest.approx(0.0, abs=1e-5)
  source = dni.get_source("dni")
  _, m = _step(net, source, track_alignment=True)(tiny.init(net, source), b)
  assert float(m["grad_cosine/0"]) == 0.0  # zero-initialised: δ̂ = 0
  assert float(m["grad_rel_error/0"]) == pytest.approx(1.0)


def _train_cdni(seed, steps=150):
  """cDNI on one fixed batch; every step's metrics as arrays over steps."""
  net = tiny.network("fcn")
  source = dni.get_source("cdni")
  opt = tiny.optimizers(3e-3)
  state = tiny.init(net, source, opt=opt, seed=seed)
  step = dni.make_train_step(net, opt, source, track_alignment=True)
  b = tiny.batch(size=32, seed=seed)
  history = []
  for _ in range(steps):
    state, m = step(state, b)
    history.append(jax.device_get(m))
  chex.assert_tree_all_finite(state)
  return {k: np.array([h[k] for h in history]) for k in history[0]}


def test_dni_training_lowers_the_loss_and_synthesizer_loss():
  """Properties of training read as window averages, on three seeds.

  One step's value after many float32 steps depends on the CPU's rounding
  (XLA's instruction set), so every assertion compares a window mean with a
  baseline from the same run, with a margin: the task loss (last 25 steps)
  under half the untrained network's (first 5), seen at ≤ 0.08× here; the
  last synthesizer's regression loss likewise under half its start, seen at
  ≤ 0.15×; the cosine of the last boundary's synthetic gradient with the
  true one (last 75 steps) above 0.3, where the zero-initialised
  synthesizer's is 0 and 0.56–0.66 is seen here. The first boundary, whose
  target is bootstrapped, must align positively on most seeds (0.16–0.35
  seen here).
  """
  first_boundary_aligned = 0
  for seed in range(3):
    h = _train_cdni(seed)
    assert h["loss"][-25:].mean() < 0.5 * h["loss"][:5].mean(), seed
    assert h["synth_loss/1"][-25:].mean() < 0.5 * h["synth_loss/1"][:5].mean()
    assert h["grad_cosine/1"][0] == 0.0  # the zero-initialised baseline
    assert h["grad_cosine/1"][-75:].mean() > 0.3, seed
    first_boundary_aligned += h["grad_cosine/0"][-75:].mean() > 0.0
  assert first_boundary_aligned >= 2


def test_eval_step_uses_running_statistics():
  net = tiny.network("fcn")
  state = tiny.init(net, "backprop")
  b = tiny.batch()
  m = dni.make_eval_step(net)(state, b)
  outputs = dni.predict(state, b["inputs"], net=net)
  assert outputs.shape == (8, tiny.NUM_CLASSES)
  assert float(m["loss"]) == pytest.approx(
      float(net.loss_fn(outputs, b["labels"])), rel=1e-6)


def test_clear_errors():
  with pytest.raises(ValueError, match="unknown method 'dnii'"):
    dni.get_source("dnii")
  with pytest.raises(ValueError, match="unknown conditioning"):
    dni.SyntheticGradients("label")
  with pytest.raises(ValueError, match="3 synthesizers were given"):
    dni.DecoupledNetwork(tiny.stages("fcn", 3), (dni.LinearSynthesizer(),) * 3)
  with pytest.raises(ValueError, match="method needs 2 synthesizers"):
    tiny.init(dni.decouple(tiny.stages("fcn", 3)), "dni")
  with pytest.raises(ValueError, match="Optimizers\\(synth=...\\)"):
    tiny.init(tiny.network(), "dni", opt=dni.Optimizers(optax.sgd(0.1)))
  net = tiny.network()
  state = tiny.init(net, "dni")
  with pytest.raises(KeyError, match="missing \\['labels'\\]"):
    _step(net, dni.get_source("dni"))(state, {"inputs": tiny.batch()["inputs"]})


@pytest.mark.parametrize("method", ["dni", "cdni"])
def test_every_boundary_none_updates_exactly_like_backprop(method):
  """``decouple(stages, [None, None])``: backprop through every boundary."""
  stages = tiny.stages("fcn", 3)
  net = dni.decouple(stages, [None, None])
  bp_net = dni.decouple(stages)
  source = dni.get_source(method)
  state, bp_state = tiny.init(net, source), tiny.init(bp_net, "backprop")
  step = _step(net, source)
  bp_step = _step(bp_net, dni.get_source("backprop"))
  for seed in range(3):
    b = tiny.batch(seed=seed)
    state, m = step(state, b)
    bp_state, bp_m = bp_step(bp_state, b)
    chex.assert_trees_all_close(state.stage_params, bp_state.stage_params,
                                **TOL)
    assert float(m["loss"]) == pytest.approx(float(bp_m["loss"]), rel=1e-6)
  assert not any(k.startswith("synth_loss") for k in m)


def test_a_none_boundary_is_backpropagated_through():
  """[synthesizer, None]: stage 0 from M_0; stages 1 and 2 as one block."""
  stages = tiny.stages("fcn", 3)
  net = dni.decouple(stages, [dni.LinearSynthesizer(), None])
  source = dni.get_source("dni")
  state = tiny.init(net, source)
  state = state.replace(synth_params=(tiny.randomize(state.synth_params[0]),
                                      {}))
  b = tiny.batch()
  new, m = _step(net, source, track_alignment=True)(state, b)
  assert "synth_loss/0" in m and "synth_loss/1" not in m
  assert float(m["grad_cosine/1"]) == pytest.approx(1.0, abs=1e-5)
  # Stage 1 gets the true gradient: its update is backprop's.
  bp_net = dni.decouple(stages)
  bp_new, _ = _step(bp_net, dni.get_source("backprop"))(
      tiny.init(bp_net, "backprop"), b)
  chex.assert_trees_all_close(new.stage_params[1:], bp_new.stage_params[1:],
                              **TOL)
  # Stage 0 gets the synthetic gradient of M_0, not the true one.
  assert not np.allclose(new.stage_params[0]["Dense_0"]["kernel"],
                         bp_new.stage_params[0]["Dense_0"]["kernel"])


def _stochastic_run(update_prob, method="dni", steps=4, traced=False):
  """``traced``: the probabilities are an argument of the jitted step, as
  in a vmapped sweep whose members' probabilities differ."""
  source = dni.get_source(method)
  net = tiny.network("fcn", depth=3, input_model=(
      synthetic_inputs.LinearInputModel() if source.unlocked else None))
  state = tiny.init(net, source)
  state = state.replace(synth_params=tiny.randomize(state.synth_params))
  if traced:
    probs = jnp.asarray(update_prob, jnp.float32)
    traced_step = jax.jit(lambda s, b, p: dni.train_step(
        s, b, net=net, optimizers=tiny.optimizers(), source=source,
        update_prob=p))
    step = lambda s, b: traced_step(s, b, probs)
  else:
    step = dni.make_train_step(net, tiny.optimizers(), source,
                               update_prob=update_prob)
  metrics = []
  for seed in range(steps):
    state, m = step(state, tiny.batch(seed=seed))
    metrics.append(m)
  return state, metrics


def test_update_prob_one_is_the_ordinary_step_bitwise():
  ordinary, _ = _stochastic_run(1.0)
  for probs in ((1.0, 1.0, 1.0), 1):
    state, _ = _stochastic_run(probs)
    chex.assert_trees_all_equal(state, ordinary)


@pytest.mark.parametrize("method", ["dni", "backprop", "cdni_unlocked"])
def test_traced_update_probs_flip_the_static_ones_coins_bitwise(method):
  """A vmapped sweep's member whose probabilities differ from the others'
  gets them traced: its step is the static probabilities' step, bit for
  bit, and at 1 the ordinary step's (reporting an update rate of 1)."""
  for probs in ((0.5, 0.2, 0.8) if method != "backprop" else (0.5,) * 3,
                (1.0, 1.0, 1.0)):
    static, static_metrics = _stochastic_run(probs, method, steps=6)
    traced, traced_metrics = _stochastic_run(probs, method, steps=6,
                                             traced=True)
    chex.assert_trees_all_equal(traced, static)
    for t, m in zip(traced_metrics, static_metrics):
      if probs[0] == 1.0:
        assert float(t.pop("update_rate")) == 1.0
      chex.assert_trees_all_equal(t, m)
  rates = {float(m["update_rate"]) for m in _stochastic_run(
      (0.5, 0.2, 0.8), "dni", steps=6, traced=True)[1]}
  assert len(rates) > 1  # the coins do flip


def test_a_stage_with_update_prob_zero_stays_put_and_the_others_move():
  net = tiny.network("fcn", depth=3)
  initial = tiny.init(net, "dni")
  initial = initial.replace(synth_params=tiny.randomize(initial.synth_params))
  state, metrics = _stochastic_run((1.0, 0.0, 1.0))
  chex.assert_trees_all_equal(state.stage_params[1], initial.stage_params[1])
  chex.assert_trees_all_equal(state.stage_opt_state[1],
                              initial.stage_opt_state[1])
  # M_0 below stage 1 regresses only when stage 1 does its backward pass.
  chex.assert_trees_all_equal(state.synth_params[0], initial.synth_params[0])
  chex.assert_trees_all_equal(state.synth_opt_state[0],
                              initial.synth_opt_state[0])
  for i in (0, 2):
    assert not np.allclose(state.stage_params[i]["Dense_0"]["kernel"],
                           initial.stage_params[i]["Dense_0"]["kernel"])
  assert not np.allclose(state.synth_params[1]["output"]["kernel"],
                         initial.synth_params[1]["output"]["kernel"])
  assert all(float(m["update_rate"]) == pytest.approx(2 / 3) for m in metrics)


def test_a_synthesizer_regresses_exactly_when_the_stage_above_updates():
  """M_b's flag is stage b+1's coin; a stage with tails still runs forward."""
  p = 0.5
  net = tiny.network("fcn", depth=3)
  source = dni.get_source("cdni")
  state = tiny.init(net, source)
  state = state.replace(synth_params=tiny.randomize(state.synth_params))
  step = _step(net, source, update_prob=p)
  seen = set()
  for state, new, _, heads in tiny.coin_steps(step, state, p,
                                              len(net.stages), 6):
    for b in range(net.num_boundaries):
      seen.add(heads[b + 1])
      for name in ("synth_params", "synth_opt_state"):
        moved = tiny.moved(getattr(new, name)[b], getattr(state, name)[b])
        assert moved == heads[b + 1], (b, name, heads)
    for i, stage_state in enumerate(new.stage_state):  # BatchNorm stats
      assert not np.allclose(stage_state["batch_stats"]["BatchNorm_0"]["mean"],
                             state.stage_state[i]["batch_stats"]
                             ["BatchNorm_0"]["mean"])
  assert seen == {True, False}


def _optimizers_decaying_to_zero_at_step_2(build, decay):
  """Stage (and, for the configs' optimiser, synthesizer) optimisers whose
  rate 1e-2 falls to 0 at step 2 (``decay``), else stays 1e-2."""
  rate = (optax.piecewise_constant_schedule(1e-2, {2: 0.0}) if decay
          else 1e-2)
  if build == "adam":
    return dni.Optimizers(stage=optax.adam(rate), synth=optax.adam(1e-2))
  if build == "inject":  # the schedule as an injected hyper-parameter
    return dni.Optimizers(
        stage=optax.inject_hyperparams(optax.adam)(learning_rate=rate),
        synth=optax.adam(1e-2))
  config = base_config.get_config()  # what experiments.main builds
  config.opt.update(name="adam", learning_rate=1e-2, clip_norm=1.0,
                    decay_steps=(2,) if decay else (), decay_factor=0.0)
  return experiment.build_optimizers(config)


@pytest.mark.parametrize("method,update_prob,build", [
    ("dni", (1.0, 0.0, 1.0), "adam"), ("backprop", 0.0, "inject"),
    ("cdni", (1.0, 0.0, 1.0), "config")])
def test_a_held_back_unit_follows_the_schedule_of_global_steps(
    method, update_prob, build):
  """A schedule's boundaries are global steps for every unit: stages held
  back over steps 0 and 1 get the rate of step 2 on, here 0, at their next
  update (at a constant rate they move). Adam's own count counts their
  updates only."""
  net = tiny.network("fcn", depth=3)
  source = dni.get_source(method)

  def held_then_ordinary(decay, clock="steps"):
    opt = _optimizers_decaying_to_zero_at_step_2(build, decay)
    state = tiny.init(net, source, opt=opt)
    held = dni.make_train_step(net, opt, source, update_prob=update_prob,
                               schedule_clock=clock)
    for seed in range(2):
      state, _ = held(state, tiny.batch(seed=seed))
    adam = [s for s in jax.tree_util.tree_leaves(
        state.stage_opt_state[1],
        is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]
    assert [int(a.count) for a in adam] == [0]
    before = jax.tree_util.tree_map(np.asarray, state.stage_params[1])
    after, _ = dni.make_train_step(net, opt, source)(state,
                                                     tiny.batch(seed=2))
    return before, after.stage_params[1]

  before, after = held_then_ordinary(decay=True)
  chex.assert_trees_all_equal(after, before)
  for decay, clock in ((False, "steps"), (True, "updates")):
    # "updates": the schedule counts the unit's own updates, none so far.
    before, after = held_then_ordinary(decay, clock)
    assert not np.allclose(after["Dense_0"]["kernel"],
                           before["Dense_0"]["kernel"]), clock


def test_update_pattern_is_a_function_of_seed_step_and_stage():
  a, ma = _stochastic_run(0.5, steps=8)
  b, mb = _stochastic_run(0.5, steps=8)
  chex.assert_trees_all_equal(a, b)
  rates = [float(m["update_rate"]) for m in ma]
  assert rates == [float(m["update_rate"]) for m in mb]
  assert len(set(rates)) > 1  # the coins do vary from step to step
  # Backprop: one coin for all stages.
  _, mbp = _stochastic_run(0.5, method="backprop", steps=8)
  assert {float(m["update_rate"]) for m in mbp} <= {0.0, 1.0}


def test_update_prob_of_the_wrong_length_or_range_is_refused():
  net = tiny.network("fcn", depth=3)
  with pytest.raises(ValueError, match="schedule_clock must be one of"):
    dni.make_train_step(net, tiny.optimizers(), dni.get_source("dni"),
                        update_prob=0.5, schedule_clock="epochs")
  with pytest.raises(ValueError, match="2 values for 3 stages"):
    dni.make_train_step(net, tiny.optimizers(), dni.get_source("dni"),
                        update_prob=(1.0, 0.5))
  with pytest.raises(ValueError, match=r"in \[0, 1\]"):
    dni.make_train_step(net, tiny.optimizers(), dni.get_source("dni"),
                        update_prob=1.2)
  with pytest.raises(ValueError, match=r"shape \(2,\) for 3 stages"):
    dni.make_train_step(net, tiny.optimizers(), dni.get_source("dni"),
                        update_prob=jnp.asarray([1.0, 0.5]))
  with pytest.raises(ValueError, match=r"in \[0, 1\]"):
    dni.make_train_step(net, tiny.optimizers(), dni.get_source("dni"),
                        update_prob=jnp.asarray([1.0, 1.2, 0.5]))
