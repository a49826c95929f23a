"""A stale interface (delay d) and complete unlock (synthetic inputs, §4)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dni_jax as dni
from dni_jax.core import network as network_lib
from dni_jax.core import stale
from dni_jax.core import step as step_lib
from dni_jax.core import stochastic
from dni_jax.core import synthetic_inputs
from dni_jax.data import dataset as dataset_lib
from dni_jax.errors import ConfigError
from dni_jax.training import experiment
from dni_jax.training import families
from dni_jax.training import workdir as workdir_lib
import test_train
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
  state = state.replace(synth_params=synth,
                        synth_history=stale.init(synth, delay))
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
  queue = stale.to_queue(state.synth_history, state.step)
  assert len(queue) == 2
  b = tiny.batch(seed=7)
  delayed, _ = step(state, b)
  fresh = _step(net, "cdni", opt=SGD)
  fresh_on_old = fresh(state.replace(synth_history=(),
                                     synth_params=queue[0]), b)[0]
  fresh_on_new = fresh(state.replace(synth_history=()), b)[0]
  chex.assert_trees_all_close(delayed.stage_params, fresh_on_old.stage_params,
                              **TOL)
  assert not np.allclose(delayed.stage_params[0]["Dense_0"]["kernel"],
                         fresh_on_new.stage_params[0]["Dense_0"]["kernel"])
  # The current synthesizers are the ones that regress; the queue shifts.
  assert not np.allclose(delayed.synth_params[0]["output"]["kernel"],
                         fresh_on_old.synth_params[0]["output"]["kernel"])
  chex.assert_trees_all_equal(
      stale.to_queue(delayed.synth_history, delayed.step),
      (queue[1], state.synth_params))


@pytest.mark.parametrize("delay", [1, 3])
def test_every_step_uses_the_synthesizers_of_d_steps_before(delay):
  """Over several turns of the ring: at step s the stages are driven by the
  synthesizers as they were at the start of step s - d (the initial ones
  for s < d), and the history keeps the last d of them."""
  net, state, step = _delayed_state(delay, steps=0)
  seen = []  # the synthesizers at the start of each step
  for s in range(3 * delay + 2):
    seen.append(state.synth_params)
    chex.assert_trees_all_equal(stale.oldest(state.synth_history),
                                seen[max(s - delay, 0)])
    state, _ = step(state, tiny.batch(seed=s))
    chex.assert_trees_all_equal(
        stale.to_queue(state.synth_history, state.step),
        tuple(seen[max(i, 0)] for i in range(s + 1 - delay, s + 1)))


def test_the_ring_reads_and_writes_the_queue_it_replaces():
  """``from_queue`` inverts ``to_queue`` at every step of a turn."""
  queue = tuple({"w": jnp.full((2,), float(i))} for i in range(3))
  for step in range(4):
    ring = stale.from_queue(queue, step)
    assert stale.delay(ring) == 3
    chex.assert_trees_all_equal(stale.oldest(ring), queue[0])
    chex.assert_trees_all_equal(stale.to_queue(ring, step), queue)
  assert stale.from_queue(((), ()), 3) == ()  # a device without synthesizers


def test_negative_delay_is_refused():
  net = tiny.network("fcn")
  with pytest.raises(ValueError, match="synth_delay must be >= 0"):
    dni.init_train_state(net, tiny.optimizers(), dni.get_source("dni"),
                         jax.random.PRNGKey(0), tiny.batch(), synth_delay=-1)


# --- complete unlock -----------------------------------------------------------


def _unlocked_net(kind="fcn", depth=3, synthesizer=None,
                  input_targets="neighbour", synth_fit_at="output"):
  model = (synthetic_inputs.MLPInputModel((12,)) if kind == "fcn" else
           synthetic_inputs.ConvInputModel((3,), (3, 3)))
  return dni.decouple(tiny.stages(kind, depth),
                      synthesizer or tiny.synthesizer(kind),
                      input_model=model, input_targets=input_targets,
                      synth_fit_at=synth_fit_at)


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
  # I_0 does see stage 0: its target, stage 0's output, moved.
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


def _by_hand(net, state, x, input_targets):
  """Every stage in training mode, as ``I_i``'s targets see it.

  Stage 0 runs on ``x``; stage ``i`` on the real chain's ``h_{i-1}``
  ("real_chain") or on its synthetic input ``I_{i-1}(x)`` ("neighbour").

  Returns:
    ``(outputs, new_stage_state)``, one entry per stage.
  """
  outputs, new_state, h = [], [], x
  for i, (stage, p, s) in enumerate(zip(net.stages, state.stage_params,
                                        state.stage_state)):
    if input_targets == "neighbour" and i:
      h = net.input_models[i - 1].apply(
          {"params": state.input_params[i - 1]}, x, outputs[-1].shape[1:])
    h, variables = stage.apply({"params": p, **s}, h, train=True,
                               mutable=["batch_stats"])
    outputs.append(h)
    new_state.append(dict(variables))
  return outputs, tuple(new_state)


@pytest.mark.parametrize("input_targets", network_lib.INPUT_TARGETS)
def test_input_model_regresses_onto_its_target(input_targets):
  """I_i's update is plain SGD on jax.grad of mean_B ‖I_i(x) − target_i‖².

  The target: stage i run on I_{i-1}(x) (stage 0 on x) for neighbour
  targets, the real chain's h_i for real_chain.
  """
  lr = 0.5
  opt = dni.Optimizers(optax.adam(1e-2), optax.sgd(lr))
  net = _unlocked_net(input_targets=input_targets)
  state = _unlocked_state(net, opt=opt)
  # Input models off their initialisation, so that I_{i-1}(x) is far from
  # h_{i-1} and the two kinds of target differ.
  state = state.replace(input_params=tiny.randomize(state.input_params,
                                                    seed=3, scale=0.5))
  b = tiny.batch()
  new, metrics = _step(net, "cdni_unlocked", opt=opt)(state, b)
  x = b["inputs"]
  targets, _ = _by_hand(net, state, x, input_targets)
  for i, model in enumerate(net.input_models):
    def l2(params, i=i, model=model):
      pred = model.apply({"params": params}, x, targets[i].shape[1:])
      return jnp.sum(jnp.square(pred - targets[i])) / x.shape[0]
    loss, grad = jax.value_and_grad(l2)(state.input_params[i])
    expected = jax.tree_util.tree_map(lambda p, g: p - lr * g,
                                      state.input_params[i], grad)
    chex.assert_trees_all_close(new.input_params[i], expected, **TOL)
    assert float(metrics[f"input_loss/{i}"]) == pytest.approx(float(loss),
                                                              rel=1e-5)


def test_neighbour_and_real_chain_targets_differ():
  """Boundary 0's target is stage 0 on x either way; later ones differ."""
  metrics = {}
  for input_targets in network_lib.INPUT_TARGETS:
    net = _unlocked_net(input_targets=input_targets)
    state = _unlocked_state(net)
    step = _step(net, "cdni_unlocked")
    for seed in range(2):
      state, metrics[input_targets] = step(state, tiny.batch(seed=seed))
  neighbour, real = metrics["neighbour"], metrics["real_chain"]
  assert float(neighbour["input_loss/0"]) == pytest.approx(
      float(real["input_loss/0"]), rel=1e-5)
  assert float(neighbour["input_loss/1"]) != pytest.approx(
      float(real["input_loss/1"]), rel=1e-3)


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


def test_evaluation_of_an_unlocked_net_tells_its_failures_apart():
  """input_error/i, synthetic/* and batch_stats/* (step.eval_step)."""
  net = _unlocked_net()
  state = _unlocked_state(net)
  b = tiny.batch(seed=3)
  metrics = step_lib.eval_step(state, b, net=net)
  assert {"input_error/0", "input_error/1", "synthetic/loss",
          "synthetic/accuracy", "batch_stats/loss"} <= set(metrics)
  # Input models that say 0: each relative error is exactly 1, and the
  # last stage's synthetic metrics are its output on zeros.
  zero = state.replace(input_params=jax.tree_util.tree_map(
      jnp.zeros_like, state.input_params))
  m = step_lib.eval_step(zero, b, net=net)
  for i in range(net.num_boundaries):
    np.testing.assert_allclose(m[f"input_error/{i}"], 1.0, rtol=1e-6)
  h = jnp.zeros_like(dni.predict(state, b["inputs"], net=dni.decouple(
      net.stages[:-1])))
  outputs = net.stages[-1].apply(
      {"params": state.stage_params[-1], **state.stage_state[-1]}, h,
      train=False)
  np.testing.assert_allclose(m["synthetic/loss"],
                             net.loss_fn(outputs, b["labels"]), rtol=1e-6)
  # The metrics of the real chain are those of a locked net's evaluation.
  np.testing.assert_allclose(m["loss"], step_lib.eval_step(
      state, b, net=dni.decouple(net.stages))["loss"], rtol=1e-6)
  # Batch statistics: the first BatchNorm follows a linear layer, so
  # shifting every input by a constant shifts its pre-activations by a
  # constant per unit, which the batch's own statistics remove and the
  # running ones (still at their start) do not.
  shifted = dict(b, inputs=b["inputs"] + 3.0)
  m_shift = step_lib.eval_step(state, shifted, net=net)
  np.testing.assert_allclose(m_shift["batch_stats/loss"],
                             metrics["batch_stats/loss"], rtol=1e-4)
  assert abs(float(m_shift["loss"]) - float(metrics["loss"])) > 1e-3


@pytest.mark.parametrize("input_targets", network_lib.INPUT_TARGETS)
def test_unlocked_batch_norm_statistics_come_from_the_targets_forward(
    input_targets):
  """Neighbour: the stages on their synthetic inputs; else the real chain."""
  net = _unlocked_net(input_targets=input_targets)
  state = _unlocked_state(net)
  state = state.replace(input_params=tiny.randomize(state.input_params,
                                                    seed=3, scale=0.5))
  b = tiny.batch()
  new, _ = _step(net, "cdni_unlocked")(state, b)
  _, expected = _by_hand(net, state, b["inputs"], input_targets)
  chex.assert_trees_all_close(new.stage_state, expected, **TOL)
  _, other = _by_hand(net, state, b["inputs"], {
      "neighbour": "real_chain", "real_chain": "neighbour"}[input_targets])
  assert not np.allclose(
      new.stage_state[1]["batch_stats"]["BatchNorm_0"]["mean"],
      other[1]["batch_stats"]["BatchNorm_0"]["mean"])


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
  for name in ("stage_params", "stage_opt_state", "stage_state",
               "synth_params", "synth_opt_state", "synth_state",
               "input_params", "input_opt_state", "input_state"):
    chex.assert_trees_all_equal(getattr(new, name), getattr(state, name))


def test_a_busy_stage_and_the_units_it_would_feed_stay_bit_for_bit():
  """Stage i's coin tails: it does not run; M_{i-1} and I_i get no target
  and M_i no input.

  Stage i's parameters, optimiser state and BatchNorm statistics, and the
  parameters, optimiser state and mutable state of M_{i-1}, I_i and M_i,
  are those of before the step; with heads the first three move.
  """
  p = 0.5
  # A synthesizer with BatchNorm: mutable state of its own.
  net = _unlocked_net(synthesizer=dni.MLPSynthesizer((8,)))
  state = _unlocked_state(net)
  step = _step(net, "cdni_unlocked", update_prob=p)
  num = len(net.stages)
  seen = set()
  for state, new, metrics, heads in tiny.coin_steps(step, state, p, num, 6):
    assert float(metrics["update_rate"]) == pytest.approx(sum(heads) / num)
    for i, active in enumerate(heads):
      seen.add((i, active))
      units = [("stage", i)]
      # M_{i-1} also needs stage i-1's output (checked below when busy).
      units += [("synth", i - 1)] if i and (heads[i - 1] or not active) else []
      units += [("input", i)] if i < num - 1 else []
      for unit, j in units:
        names = stochastic.FIELDS[unit]
        if active:  # parameters move; the stages' BatchNorm stats too
          moving = names if unit != "input" else names[:2]
          for name in moving:
            assert tiny.moved(getattr(new, name)[j], getattr(state, name)[j]), (
                name, j, heads)
        else:
          for name in names:
            chex.assert_trees_all_equal(getattr(new, name)[j],
                                        getattr(state, name)[j])
      if not active and i < num - 1:  # M_i reads the output it never made
        for name in stochastic.FIELDS["synth"]:
          chex.assert_trees_all_equal(getattr(new, name)[i],
                                      getattr(state, name)[i])
  assert {(1, True), (1, False)} <= seen  # the middle stage both ways


@pytest.mark.parametrize("synth_fit_at", network_lib.SYNTH_FITS)
def test_nothing_kept_depends_on_a_busy_stage(synth_fit_at):
  """A busy stage's work has no effect: with its parameters and BatchNorm
  statistics NaN, every other unit ends the step bit for bit as it does
  with the true ones, and so do the loss and the metrics of every unit that
  got a target (the step computes the busy stage and discards its work)."""
  p = 0.5
  net = _unlocked_net(synthesizer=dni.MLPSynthesizer((8,)),
                      synth_fit_at=synth_fit_at)
  state = _unlocked_state(net)
  # A step at which the middle stage is busy and its neighbours are not.
  step_n = next(n for n in range(100) if [
      bool(stochastic.coin(state.rng, n, i, p)) for i in range(3)] == [
          True, False, True])
  state = state.replace(step=jnp.asarray(step_n, state.step.dtype))
  nan = lambda tree: jax.tree_util.tree_map(  # noqa: E731
      lambda x: jnp.full_like(x, jnp.nan), tree)
  poisoned = state.replace(
      stage_params=state.stage_params[:1] + (nan(state.stage_params[1]),) +
      state.stage_params[2:],
      stage_state=state.stage_state[:1] + (nan(state.stage_state[1]),) +
      state.stage_state[2:])
  step = _step(net, "cdni_unlocked", update_prob=p)
  b = tiny.batch()
  new, metrics = step(state, b)
  new_poisoned, metrics_poisoned = step(poisoned, b)
  for unit, names in stochastic.FIELDS.items():
    for name in names:
      for j, (got, want) in enumerate(zip(getattr(new_poisoned, name),
                                          getattr(new, name))):
        if unit == "stage" and j == 1:  # the busy stage keeps what it had
          chex.assert_trees_all_equal(got, getattr(poisoned, name)[1])
        else:
          chex.assert_trees_all_equal(got, want)
  # M_0 (its target is the busy stage's backward pass), I_1 (its target is
  # that stage's output) and, when it regresses there, M_1 are held back
  # this step; their reported losses are of work the step discards. M_1
  # fit at I_1(x) learns (its target comes from stage 2, which runs).
  discarded = {"synth_loss/0", "input_loss/1"}
  if synth_fit_at == "output":
    discarded.add("synth_loss/1")
  else:
    assert tiny.moved(new.synth_params[1], state.synth_params[1])
  assert all(np.isnan(metrics_poisoned[k]) for k in discarded)
  kept = {k: v for k, v in metrics.items() if k not in discarded}
  chex.assert_trees_all_equal(
      {k: metrics_poisoned[k] for k in kept}, kept)


@pytest.mark.parametrize("delay", [0, 1])
def test_a_synthesizer_fit_at_its_input_model_needs_no_stage_below(delay):
  """synth_fit_at="input_model": M_i regresses at I_i(x), so its update is
  the same whatever stage i and the input model below it, I_{i-1}, are
  (with "output" it is not), while the stages still read M_i at their
  outputs: they update as under "output" (also from synthesizers ``delay``
  steps old)."""
  b = tiny.batch()
  new = {}
  for fit in network_lib.SYNTH_FITS:
    net = _unlocked_net(depth=4, synth_fit_at=fit)
    state = dni.init_train_state(net, tiny.optimizers(),
                                 dni.get_source("cdni_unlocked"),
                                 jax.random.PRNGKey(0), b, synth_delay=delay)
    synth = tiny.randomize(state.synth_params)
    state = state.replace(synth_params=synth, synth_history=stale.init(
        synth, delay) if delay else state.synth_history)
    step = _step(net, "cdni_unlocked")
    new[fit], _ = step(state, b)
    # M_0 with stage 0 changed; M_1 with I_0, which stage 1 reads, changed.
    for i, field in ((0, "stage_params"), (1, "input_params")):
      units = getattr(state, field)
      other = state.replace(**{field: (tiny.randomize(
          units[0], seed=5, scale=1.0),) + units[1:]})
      moved, _ = step(other, b)
      if fit == "input_model":
        chex.assert_trees_all_equal(moved.synth_params[i],
                                    new[fit].synth_params[i])
      else:
        assert tiny.moved(moved.synth_params[i], new[fit].synth_params[i])
  out, inp = new["output"], new["input_model"]
  chex.assert_trees_all_equal(out.stage_params, inp.stage_params)
  chex.assert_trees_all_equal(out.input_params, inp.input_params)
  for j in range(len(out.synth_params)):
    assert tiny.moved(out.synth_params[j], inp.synth_params[j])


def test_a_synthesizer_fit_at_its_input_model_learns_when_the_stage_above_runs():
  """With busy stages and synth_fit_at="input_model", M_i moves exactly
  when stage i+1 runs, whatever stage i's coin."""
  p = 0.5
  net = _unlocked_net(synth_fit_at="input_model")
  state = _unlocked_state(net)
  step = _step(net, "cdni_unlocked", update_prob=p)
  seen = set()
  for state, new, _, heads in tiny.coin_steps(step, state, p,
                                              len(net.stages), 8):
    for i in range(net.num_boundaries):
      seen.add((heads[i], heads[i + 1]))
      assert tiny.moved(new.synth_params[i], state.synth_params[i]) == (
          heads[i + 1]), (i, heads)
  assert (False, True) in seen  # a busy stage below one that runs


def test_synth_fit_reaches_the_network_and_old_runs_resume():
  config = _reaches_the_network("synth_fit_at", network_lib.SYNTH_FITS)
  # A run saved before the field existed regressed at the stage's output.
  new = workdir_lib.config_fields(config)
  old = {k: v for k, v in new.items() if k != "dni.synth_fit_at"}
  assert workdir_lib.differing_fields(old, new) == ["dni.synth_fit_at"]
  new["dni.synth_fit_at"] = "output"
  assert workdir_lib.differing_fields(old, new) == []


@pytest.mark.parametrize("input_targets", network_lib.INPUT_TARGETS)
def test_update_prob_one_is_the_ordinary_unlocked_step_bitwise(
    input_targets):
  net = _unlocked_net(input_targets=input_targets)
  state = _unlocked_state(net)
  b = tiny.batch()
  ordinary, metrics = _step(net, "cdni_unlocked")(state, b)
  for p in (1.0, (1.0,) * len(net.stages)):
    chex.assert_trees_all_equal(
        _step(net, "cdni_unlocked", update_prob=p)(state, b),
        (ordinary, metrics))
  # The wrapper itself with every coin heads leaves the step as it is.
  ordinary_step = step_lib._step  # pylint: disable=protected-access
  inner = functools.partial(
      ordinary_step, net=net, optimizers=tiny.optimizers(),
      source=dni.get_source("cdni_unlocked"), track_alignment=False)
  wrapped = jax.jit(stochastic.wrap(inner, (1.0,) * len(net.stages),
                                    busy=True))
  new, wrapped_metrics = wrapped(state, b)
  chex.assert_trees_all_equal(new, ordinary)
  assert float(wrapped_metrics.pop("update_rate")) == 1.0
  chex.assert_trees_all_equal(wrapped_metrics, metrics)


@pytest.mark.parametrize("field, bad, match", [
    ("input_targets", "real", r"dni.input_targets.*neighbour"),
    ("synth_fit_at", "inputs", r"dni.synth_fit_at.*input_model")])
def test_unknown_unlocking_choices_are_refused(field, bad, match):
  with pytest.raises(ValueError, match=f"unknown {field} '{bad}'"):
    _unlocked_net(**{field: bad})
  config = test_train.tiny("mnist_fcn", method="dni_unlocked",
                           **{f"dni.{field}": bad})
  with pytest.raises(ConfigError, match=match):
    families.validate(config)


def _reaches_the_network(field, values):
  """Each of ``values`` of ``dni.<field>`` is the built network's ``field``;
  returns the config of the last."""
  train = dataset_lib.ArrayDataset(np.zeros((4, 6, 6, 1), np.float32),
                                   np.arange(4) % tiny.NUM_CLASSES)
  for value in values:
    config = test_train.tiny("mnist_fcn", method="cdni_unlocked",
                             **{f"dni.{field}": value})
    families.validate(config)
    assert getattr(experiment.build_network(config, train), field) == value
  return config


def test_input_targets_reach_the_network_and_old_runs_resume_as_they_ran():
  config = _reaches_the_network("input_targets", network_lib.INPUT_TARGETS)
  # A run saved before the field existed regressed onto the real chain.
  new = workdir_lib.config_fields(config)
  old = {k: v for k, v in new.items() if k != "dni.input_targets"}
  assert workdir_lib.differing_fields(old, new) == []
  new["dni.input_targets"] = "neighbour"
  assert workdir_lib.differing_fields(old, new) == ["dni.input_targets"]
  # ... and to the other methods the field means nothing: they resume.
  old["method"] = new["method"] = "cdni"
  assert workdir_lib.differing_fields(old, new) == []
  # No input-model field counts where no method has input models: a CNN
  # run saved under older input-model defaults still resumes ...
  old.update({"dni.input_hidden": [64], "dni.input_pool": False})
  new.update({"dni.input_hidden": [64, 64], "dni.input_pool": True})
  assert workdir_lib.differing_fields(old, new) == []
  # ... and one that trains them is refused, naming what changed.
  old["method"] = new["method"] = "backprop,cdni_unlocked"
  assert workdir_lib.differing_fields(old, new) == [
      "dni.input_hidden", "dni.input_pool", "dni.input_targets"]


def test_a_pooling_conv_input_model_pools_as_the_stages_do():
  """pool=True: conv→ReLU→2×2 max-pool while the maps are at least twice
  the target's size, then the output conv; no resize when the sizes meet."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 1))
  model = synthetic_inputs.ConvInputModel((4, 4, 4), (3, 3), pool=True)
  params = model.init(jax.random.PRNGKey(1), x, (7, 7, 5))
  out = model.apply(params, x, (7, 7, 5))
  assert out.shape == (2, 7, 7, 5)
  p = params["params"]
  p = {**p, "output": jax.tree_util.tree_map(  # off its small init
      lambda v: v + 0.1, p["output"])}
  z = x
  for i in range(3):
    conv = nn.Conv(4, (3, 3), padding="SAME")
    z = nn.relu(conv.apply({"params": p[f"Conv_{i}"]}, z))
    if z.shape[1] >= 14:  # 28 → 14 → 7, then no more
      z = nn.max_pool(z, (2, 2), strides=(2, 2))
  expected = nn.Conv(5, (3, 3), padding="SAME").apply({"params": p["output"]},
                                                      z)
  np.testing.assert_allclose(model.apply({"params": p}, x, (7, 7, 5)),
                             expected, rtol=1e-5, atol=1e-6)
  # Without pooling the same parameters give other maps (a resize instead).
  plain = synthetic_inputs.ConvInputModel((4, 4, 4), (3, 3))
  assert not np.allclose(plain.apply({"params": p}, x, (7, 7, 5)), expected)


def test_input_pool_needs_a_conv_input_model():
  config = test_train.tiny("mnist_fcn", method="cdni_unlocked",
                           **{"dni.input_pool": True})
  with pytest.raises(ConfigError, match="dni.input_pool max-pools"):
    families.validate(config)
