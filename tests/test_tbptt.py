"""Recurrent DNI (REFERENCE.md §3): the window step against plain jax.grad."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dni_jax.core import interface
from dni_jax.core import recurrent
from dni_jax.core import synthesizers
from dni_jax.core import tbptt
from dni_jax.core.train_state import Optimizers
from dni_jax.data import copy_tasks
from dni_jax.models import rnn

B, T, D, H, K = 4, 3, 5, 6, 3


def _loss(logits, batch):
  per_step = optax.sigmoid_binary_cross_entropy(logits, batch["targets"])
  return per_step.sum(axis=(1, 2)), {}


def _core(cell="lstm", sg_on="h"):
  return rnn.RecurrentCore(cell, H, K, sg_on=sg_on)


def _batch(seed, steps=T):
  kx, ky = jax.random.split(jax.random.PRNGKey(seed))
  return {"inputs": jax.random.normal(kx, (B, steps, D)),
          "targets": jax.random.bernoulli(ky, 0.5, (B, steps, K)).astype(
              jnp.float32)}


def _randomize(tree, seed, scale=0.3):
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return treedef.unflatten([scale * jax.random.normal(k, x.shape)
                            for k, x in zip(keys, leaves)])


def _setup(method, cell="lstm", sg_scale=0.1, seed=0, sg_on="h"):
  rdni = tbptt.build(method, _core(cell, sg_on), _loss,
                     synthesizers.LinearSynthesizer(), sg_scale)
  opt = Optimizers(optax.adam(1e-2), optax.adam(1e-2))
  state = tbptt.init_train_state(rdni, opt, jax.random.PRNGKey(0), B,
                                 jnp.zeros((B, D)))
  # Nonzero synthesizer, Aux head and carried state, so every term matters.
  state = state.replace(carry=_randomize(state.carry, seed + 1, 0.5))
  if state.synth_params is not None:
    state = state.replace(synth_params=_randomize(state.synth_params, seed + 2))
  if rdni.core.with_aux:
    aux = _randomize(state.params["params"]["aux_head"], seed + 3)
    state = state.replace(params={"params": {**state.params["params"],
                                             "aux_head": aux}})
  return rdni, opt, state


def _manual_unroll(core, params, s, inputs):
  """A plain Python loop over time, independent of ``recurrent.unroll``'s scan."""
  states, logits = [], []
  for t in range(inputs.shape[1]):
    s, y = core.apply(params, s, inputs[:, t])
    states.append(s)
    logits.append(y)
  return s, jnp.stack(states, 1), jnp.stack(logits, 1)


def _max_diff(a, b) -> float:
  return max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
      lambda x, y: float(jnp.abs(x - y).max()), a, b)))


def _tree_close(a, b, **kw):
  jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_lambda_zero_dni_update_equals_truncated_bptt(cell):
  rdni_dni, opt, state = _setup("dni", cell, sg_scale=0.0)
  rdni_bptt = tbptt.build("bptt", _core(cell), _loss, None)
  bptt_state = state.replace(synth_params=None, synth_state=None,
                             synth_opt_state=None)
  batch = _batch(0)
  new_dni, _ = tbptt.train_step(state, batch, rdni=rdni_dni, optimizers=opt)
  new_bptt, _ = tbptt.train_step(bptt_state, batch, rdni=rdni_bptt,
                                 optimizers=opt)
  _tree_close(new_dni.params, new_bptt.params, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(new_dni.carry, new_bptt.carry)
  # And with λ ≠ 0 (the state's) the update differs: the test can tell.
  new_on, _ = tbptt.train_step(state.replace(sg_scale=jnp.float32(0.5)),
                               batch, rdni=rdni_dni, optimizers=opt)
  assert _max_diff(new_on.params["params"]["rnn_cell"],
                   new_bptt.params["params"]["rnn_cell"]) > 1e-6


def _cut_cell_state(s):
  """An LSTM state ``(c, h)`` with ``c``'s gradient stopped."""
  c, h = jnp.split(s, 2, axis=-1)
  return jnp.concatenate([jax.lax.stop_gradient(c), h], axis=-1)


@pytest.mark.parametrize("cell,sg_on", [("lstm", "h"), ("lstm", "ch"),
                                        ("lstm", "h_ch"), ("rnn", "h")])
def test_exact_future_gradient_makes_two_windows_sum_to_bptt(cell, sg_on):
  """Two windows, same θ, the first closed by the true ∂(future)/∂h(s_T).

  With the synthetic gradient on the LSTM's output ``h`` the sum is BPTT over
  both windows with only ``c``'s carry cut at the boundary; on ``(c, h)`` (or
  a vanilla RNN, whose state is ``h``) it is full BPTT over both windows.
  """
  core = _core(cell, sg_on)
  _, _, state = _setup("bptt", cell, sg_on=sg_on)
  params, s0 = state.params, state.carry
  joined = _batch(1, steps=2 * T)
  first = jax.tree_util.tree_map(lambda x: x[:, :T], joined)
  second = jax.tree_util.tree_map(lambda x: x[:, T:], joined)
  cut_c = cell == "lstm" and sg_on == "h"

  def joined_loss(p, cut):
    s_mid, _, logits1 = _manual_unroll(core, p, s0, first["inputs"])
    if cut:
      s_mid = _cut_cell_state(s_mid)
    _, _, logits2 = _manual_unroll(core, p, s_mid, second["inputs"])
    return (_loss(logits1, first)[0] + _loss(logits2, second)[0]).mean()
  expected = jax.grad(joined_loss)(params, cut_c)
  if cut_c:  # cutting c's carry is a real cut: the test can tell
    full = jax.grad(joined_loss)(params, False)
    assert _max_diff(full["params"]["rnn_cell"],
                     expected["params"]["rnn_cell"]) > 1e-4

  s_mid, _, _ = recurrent.unroll(core, params, s0, first["inputs"])
  plain = tbptt.RecurrentDNI(core, _loss)
  g2, future_grad, _, _ = tbptt.window_grads(plain, params, s_mid, second)
  oracle = tbptt.RecurrentDNI(core, _loss, synthesizers.LinearSynthesizer(),
                              oracle_end_grad=True)
  g1, _, _, _ = tbptt.window_grads(oracle, params, s0,
                                   {**first, "end_grad": future_grad})
  _tree_close(jax.tree_util.tree_map(jnp.add, g1, g2), expected,
              rtol=1e-5, atol=1e-6)
  # Without the future gradient the first window misses a part.
  g1_plain, _, _, _ = tbptt.window_grads(plain, params, s0, first)
  truncated = jax.tree_util.tree_map(jnp.add, g1_plain, g2)
  assert _max_diff(truncated["params"]["rnn_cell"],
                   expected["params"]["rnn_cell"]) > 1e-4


@pytest.mark.parametrize("method,sg_on,bootstrap,target_net", [
    ("dni", "h", "scaled", False), ("dni_aux", "h", "scaled", False),
    ("dni", "ch", "scaled", False), ("dni_aux", "ch", "scaled", False),
    ("dni", "h_ch", "scaled", False), ("dni_aux", "h_ch", "scaled", False),
    ("dni", "h", "unscaled", False), ("dni_aux", "ch", "unscaled", False),
    ("dni_aux", "h_ch", "unscaled", False),
    ("dni", "h", "scaled", True), ("dni_aux", "h", "scaled", True),
    ("dni_aux", "ch", "unscaled", True), ("dni", "h_ch", "scaled", True)])
def test_bootstrapped_target_is_dJ_dstart(method, sg_on, bootstrap,
                                          target_net):
  """The target is ∂J_b/∂h(s₀) of the window objective with λ·M(h(s_T)) at
  its end ("scaled"), or with M(h(s_T)) there ("unscaled"), or, with a
  target network, λ·M̄ or M̄ there (the Aux head's target stays λ·M); the
  core's update is the same for all."""
  rdni, opt, state = _setup(method, sg_scale=0.3, sg_on=sg_on)
  rdni = dataclasses.replace(rdni, bootstrap=bootstrap,
                             target_decay=0.9 if target_net else 0.0)
  target_params = None
  if target_net:  # M̄: other parameters than M's
    target_params = _randomize(state.synth_params, 7)
    state = state.replace(synth_target_params=target_params)
  # The state's λ (what a sweep member carries) rules, not the static 0.3.
  state = state.replace(sg_scale=jnp.float32(0.5))
  end_scale = 0.5 if bootstrap == "scaled" else 1.0
  batch = _batch(2)
  core, synth = rdni.core, rdni.synthesizer
  # The part of the state the synthetic gradient sits on, and what the
  # synthesizer reads, written out.
  part = (lambda s: s[..., H:]) if sg_on == "h" else (lambda s: s)
  read = (lambda s: jnp.concatenate([jnp.zeros_like(s[..., :H]), s[..., H:]],
                                    -1)) if sg_on == "h_ch" else part

  def objective_b(s0_b, b):  # one example's J, written out by hand
    s0 = state.carry.at[b].set(s0_b)
    end, states, logits = _manual_unroll(core, state.params, s0,
                                         batch["inputs"])
    m_end = synth.apply({"params": state.synth_params},
                        jax.lax.stop_gradient(read(end)))
    m_boot = m_end if target_params is None else synth.apply(
        {"params": target_params}, jax.lax.stop_gradient(read(end)))
    delta = jax.lax.stop_gradient(0.5 * m_end)
    j = _loss(logits, batch)[0] + jnp.sum(
        jax.lax.stop_gradient(end_scale * m_boot) * part(end), -1)
    if core.with_aux:
      pred = core.apply(state.params, states, method="predict_aux")
      assert pred.shape[-1] == delta.shape[-1]
      j = j + jnp.mean(jnp.sum((pred - delta[:, None]) ** 2, -1), -1)
    return j[b]

  expected = jnp.stack([part(jax.grad(objective_b)(state.carry[b], b))
                        for b in range(B)])
  grads, target, _, _ = tbptt.window_grads(
      rdni, state.params, state.carry, batch, state.synth_params,
      state.synth_state, state.sg_scale, target_params)
  scaled_grads, scaled_target, _, _ = tbptt.window_grads(
      dataclasses.replace(rdni, bootstrap="scaled", target_decay=0.0),
      state.params, state.carry, batch, state.synth_params,
      state.synth_state, state.sg_scale)
  _tree_close(grads, scaled_grads, rtol=1e-6, atol=1e-7)
  if bootstrap == "unscaled" or target_net:  # the targets differ, this much
    assert np.abs(target - scaled_target).max() > 1e-3
  assert target.shape == (B, H if sg_on == "h" else 2 * H)
  if sg_on == "h_ch":  # the library's synthesizer input does not read c
    moved = state.carry.at[:, :H].add(1.0)
    np.testing.assert_array_equal(tbptt.sg_input(rdni, moved),
                                  tbptt.sg_input(rdni, state.carry))
    np.testing.assert_array_equal(tbptt.sg_input(rdni, state.carry),
                                  read(state.carry))
  np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6)
  assert np.abs(expected).max() > 1e-3

  # The synthesizer regresses M(h(s_start)) onto exactly that target.
  _, metrics = tbptt.train_step(state, batch, rdni=rdni, optimizers=opt)
  m_start = synth.apply({"params": state.synth_params}, read(state.carry))
  np.testing.assert_allclose(
      metrics["synth_loss"], jnp.sum((m_start - expected) ** 2) / B,
      rtol=1e-5)
  np.testing.assert_allclose(
      metrics["target_norm"], np.linalg.norm(expected, axis=-1).mean(),
      rtol=1e-5)
  np.testing.assert_allclose(  # against predicting zero, on the same window
      metrics["synth_loss_ratio"],
      jnp.sum((m_start - expected) ** 2) / jnp.sum(expected ** 2), rtol=1e-5)


@pytest.mark.parametrize("sg_on,bootstrap", [("h", "scaled"), ("ch", "scaled"),
                                              ("h", "unscaled")])
def test_target_network_bootstraps_from_its_own_parameters(sg_on, bootstrap):
  """With a target network ``M̄`` the target is the one ``M̄`` in ``M``'s place
  would give, while the core is still updated with ``λ·M(h(s_T))``."""
  rdni, opt, state = _setup("dni", sg_scale=0.3, sg_on=sg_on)
  rdni = dataclasses.replace(rdni, bootstrap=bootstrap)
  with_target = dataclasses.replace(rdni, target_decay=0.9)
  target_params = _randomize(state.synth_params, 7)
  batch = _batch(5)
  args = (state.params, state.carry, batch)

  grads, target, _, _ = tbptt.window_grads(
      with_target, *args, state.synth_params, state.synth_state,
      state.sg_scale, target_params)
  own_grads, own_target, _, _ = tbptt.window_grads(
      rdni, *args, state.synth_params, state.synth_state, state.sg_scale)
  _, expected, _, _ = tbptt.window_grads(
      rdni, *args, target_params, state.synth_state, state.sg_scale)
  _tree_close(grads, own_grads, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6)
  assert np.abs(target - own_target).max() > 1e-3  # the test can tell


def test_target_network_starts_as_the_synthesizer_and_follows_it():
  rdni, opt, _ = _setup("dni")
  with_target = dataclasses.replace(rdni, target_decay=0.9)
  state = tbptt.init_train_state(with_target, opt, jax.random.PRNGKey(0), B,
                                 jnp.zeros((B, D)))
  assert tbptt.init_train_state(
      rdni, opt, jax.random.PRNGKey(0), B,
      jnp.zeros((B, D))).synth_target_params is None
  _tree_close(state.synth_target_params, state.synth_params, rtol=0, atol=0)
  state = state.replace(carry=_randomize(state.carry, 1, 0.5),
                        synth_params=_randomize(state.synth_params, 2))
  state = state.replace(synth_target_params=state.synth_params)
  plain = state.replace(synth_target_params=None)
  batch = _batch(6)
  new, m = tbptt.train_step(state, batch, rdni=with_target, optimizers=opt)
  new_plain, m_plain = tbptt.train_step(plain, batch, rdni=rdni,
                                        optimizers=opt)
  # M̄ = M at first: the step is the plain one.
  _tree_close(new.params, new_plain.params, rtol=1e-6, atol=1e-7)
  _tree_close(new.synth_params, new_plain.synth_params, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(m["synth_loss"], m_plain["synth_loss"],
                             rtol=1e-6)
  # Then M̄ ← 0.9·M̄ + 0.1·M.
  _tree_close(new.synth_target_params, jax.tree_util.tree_map(
      lambda old, now: 0.9 * old + 0.1 * now, state.synth_params,
      new.synth_params), rtol=1e-6, atol=1e-7)
  assert _max_diff(new.synth_target_params, new.synth_params) > 1e-5
  with pytest.raises(ValueError, match="target_decay"):
    tbptt.build("dni", _core(), _loss, synthesizers.LinearSynthesizer(),
                target_decay=1.0)


def test_several_synthesizer_steps_repeat_the_regression_on_one_target():
  """``synth_steps = k``: the core's update is the one-step update, and ``M``
  takes k optax steps, each from its latest parameters, towards the window's
  one target (the first step's loss is the one logged)."""
  rdni, opt, state = _setup("dni", sg_scale=0.3)
  batch = _batch(7)
  one, m_one = tbptt.train_step(state, batch, rdni=rdni, optimizers=opt)
  three, m_three = tbptt.train_step(
      state, batch, rdni=dataclasses.replace(rdni, synth_steps=3),
      optimizers=opt)
  _tree_close(three.params, one.params, rtol=0, atol=0)
  np.testing.assert_array_equal(m_three["synth_loss"], m_one["synth_loss"])
  # By hand: two more regressions of M(h(s₀)) onto the same target.
  _, target, _, _ = tbptt.window_grads(
      rdni, state.params, state.carry, batch, state.synth_params,
      state.synth_state, state.sg_scale)
  sg = tbptt._interface(rdni, opt, state.sg_scale)
  h0 = tbptt.sg_input(rdni, state.carry)
  sg_state = interface.state_of(one)
  losses = [m_one["synth_loss"]]
  for _ in range(2):
    sg_state, loss = sg.regress(sg_state, sg.predict(sg_state, h0), target)
    losses.append(loss)
  _tree_close(three.synth_params, sg_state.params, rtol=1e-6, atol=1e-7)
  _tree_close(three.synth_opt_state, sg_state.opt_state, rtol=1e-6,
              atol=1e-7)
  assert losses[2] < losses[1] < losses[0]  # each step nears the target
  assert _max_diff(three.synth_params, one.synth_params) > 1e-4
  with pytest.raises(ValueError, match="synth_steps"):
    tbptt.build("dni", _core(), _loss, synthesizers.LinearSynthesizer(),
                synth_steps=0)


@pytest.mark.parametrize("method", ["dni", "dni_aux"])
def test_warmup_scales_lambda_linearly_with_the_window_count(method):
  """``sg_warmup = n``: window ``k`` is the step of ``λ·min(1, k/n)`` without
  a warm-up (core, synthesizer and metrics alike); window 0 updates the core
  as plain truncated BPTT does, and from window ``n`` on λ is whole."""
  rdni, opt, state = _setup(method, sg_scale=0.3)
  warm = dataclasses.replace(rdni, sg_warmup=4)
  batch = _batch(5)
  for k, fraction in [(0, 0.0), (1, 0.25), (3, 0.75), (4, 1.0), (9, 1.0)]:
    at_k = state.replace(step=jnp.asarray(k, jnp.int32))
    new, metrics = tbptt.train_step(at_k, batch, rdni=warm, optimizers=opt)
    ref, ref_metrics = tbptt.train_step(
        at_k.replace(sg_scale=jnp.asarray(0.3 * fraction, jnp.float32)),
        batch, rdni=rdni, optimizers=opt)
    _tree_close(new.replace(sg_scale=ref.sg_scale), ref, rtol=1e-6,
                atol=1e-7)
    _tree_close(metrics, ref_metrics, rtol=1e-6, atol=1e-7)
    assert float(new.sg_scale) == pytest.approx(0.3)  # λ itself is kept
  bptt_rdni, _, _ = _setup("bptt")
  first, _ = tbptt.train_step(state, batch, rdni=warm, optimizers=opt)
  plain, _ = tbptt.train_step(state, batch, rdni=dataclasses.replace(
      bptt_rdni, core=rdni.core), optimizers=opt)
  if method == "dni":  # dni_aux's first window still trains its Aux head
    _tree_close(first.params, plain.params, rtol=1e-6, atol=1e-7)
  with pytest.raises(ValueError, match="sg_warmup"):
    tbptt.build("dni", _core(), _loss, synthesizers.LinearSynthesizer(),
                sg_warmup=-1)


@pytest.mark.parametrize("method,sg_on", [("dni", "h"), ("dni_aux", "ch")])
def test_shuffled_control_gives_each_stream_the_previous_streams_prediction(
    method, sg_on):
  """``sg_shuffle``: the window's update and target are those of an oracle
  end gradient equal to ``λ·M(h(s_T))`` rolled by one stream across the
  batch (in the core's objective, the target and the Aux target alike)."""
  rdni, _, state = _setup(method, sg_scale=0.3, sg_on=sg_on)
  batch = _batch(3)
  end, _, _ = recurrent.unroll(rdni.core, state.params, state.carry,
                               batch["inputs"])
  sg_B = tbptt._end_delta(rdni, state.synth_params, state.synth_state, end,  # pylint: disable=protected-access
                          0.3)
  rolled = jnp.concatenate([sg_B[-1:], sg_B[:-1]])
  shuffled = dataclasses.replace(rdni, sg_shuffle=True)
  oracle = dataclasses.replace(rdni, oracle_end_grad=True)
  args = (state.params, state.carry)
  got = tbptt.window_grads(shuffled, *args, batch, state.synth_params,
                           state.synth_state, 0.3)
  want = tbptt.window_grads(oracle, *args, {**batch, "end_grad": rolled},
                            state.synth_params, state.synth_state, 0.3)
  _tree_close(got[0], want[0], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-7)
  # Not DNI's own update: the roll is seen.
  plain = tbptt.window_grads(rdni, *args, batch, state.synth_params,
                             state.synth_state, 0.3)
  assert _max_diff(plain[0]["params"]["rnn_cell"],
                   got[0]["params"]["rnn_cell"]) > 1e-5


@pytest.mark.parametrize("method,sg_on,bootstrap,decay",
                         [("dni", "h", "scaled", 0.0),
                          ("dni_aux", "ch", "unscaled", 0.0),
                          ("dni", "ch", "scaled", 0.9)])
def test_shuffled_core_only_keeps_the_synthesizers_own_target(
    method, sg_on, bootstrap, decay):
  """``shuffle_target=False``: the core's update is the whole control's (the
  rolled prediction), ``M``'s target is DNI's own (its stream's prediction),
  for every bootstrap and with a target network."""
  rdni, _, state = _setup(method, sg_scale=0.3, sg_on=sg_on)
  rdni = dataclasses.replace(rdni, bootstrap=bootstrap, target_decay=decay)
  batch = _batch(3)
  target_params = None
  if decay:  # a target network that differs from M
    target_params = jax.tree_util.tree_map(lambda p: 0.5 * p + 0.01,
                                           state.synth_params)
  args = (state.params, state.carry, batch, state.synth_params,
          state.synth_state, 0.3, target_params)
  whole = dataclasses.replace(rdni, sg_shuffle=True)
  core_only = dataclasses.replace(whole, shuffle_target=False)
  got = tbptt.window_grads(core_only, *args)
  want_update = tbptt.window_grads(whole, *args)
  want_target = tbptt.window_grads(rdni, *args)
  _tree_close(got[0], want_update[0], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got[1], want_target[1], rtol=1e-5, atol=1e-6)
  # The two controls' targets differ: the roll is seen in the whole one's.
  assert np.max(np.abs(np.asarray(want_update[1] - got[1]))) > 1e-5


def test_state_carries_across_windows():
  rdni, opt, state = _setup("dni")
  batch = _batch(3)
  new, metrics = tbptt.train_step(state, batch, rdni=rdni, optimizers=opt)
  end, _, _ = _manual_unroll(rdni.core, state.params, state.carry,
                             batch["inputs"])
  np.testing.assert_allclose(new.carry, end, rtol=1e-6, atol=1e-7)
  # ``state_norm`` reports the carried state's mean L2 norm.
  np.testing.assert_allclose(metrics["state_norm"],
                             np.linalg.norm(end, axis=-1).mean(), rtol=1e-5)
  # The next window starts from it: its loss differs from a fresh start's.
  again = _batch(4)
  _, m_carried = tbptt.train_step(new, again, rdni=rdni, optimizers=opt)
  fresh = new.replace(carry=jnp.zeros_like(new.carry))
  _, m_fresh = tbptt.train_step(fresh, again, rdni=rdni, optimizers=opt)
  assert not np.isclose(m_carried["loss"], m_fresh["loss"])


def test_aux_loss_changes_the_core_update():
  rdni_aux, opt, state = _setup("dni_aux")
  rdni_dni = dataclasses.replace(
      rdni_aux, core=dataclasses.replace(rdni_aux.core, with_aux=False))
  batch = _batch(5)
  args = (state.params, state.carry, batch, state.synth_params,
          state.synth_state)
  g_aux, _, _, m = tbptt.window_grads(rdni_aux, *args)
  g_dni, _, _, _ = tbptt.window_grads(rdni_dni, *args)
  assert m["aux_loss"] > 0
  assert _max_diff(g_aux["params"]["rnn_cell"],
                   g_dni["params"]["rnn_cell"]) > 1e-4
  # The readout is not upstream of the Aux head: it is unaffected.
  _tree_close(g_aux["params"]["readout"], g_dni["params"]["readout"],
              rtol=1e-6, atol=1e-8)


def test_jitted_task_step_traces_once():
  task = copy_tasks.CopyTask(batch_size=B, unroll=T, check_every=2)
  core = rnn.RecurrentCore("lstm", H, task.num_outputs)
  rdni = tbptt.build("dni_aux", core, task.loss,
                     synthesizers.LinearSynthesizer())
  opt = Optimizers(optax.adam(1e-3), optax.adam(1e-3))
  state = tbptt.init_train_state(rdni, opt, jax.random.PRNGKey(0), B,
                                 jnp.zeros((B, task.input_size)),
                                 task.init_state())
  traces = []
  real_window = task.window

  class Counting(type(task)):
    def window(self, *args):
      traces.append(1)
      return real_window(*args)
  counting = Counting(**dataclasses.asdict(task))
  step = tbptt.make_train_step(rdni, opt, counting)
  for _ in range(5):
    state, metrics = step(state, {})
  assert len(traces) == 1
  assert int(state.step) == 5 and np.isfinite(float(metrics["loss"]))
