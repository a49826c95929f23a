"""Two networks at two timescales: who updates when, and on what."""

import dataclasses
import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dni_jax as dni
from dni_jax.core import two_timescale as tt_lib
from dni_jax.data import digit_stream
from dni_jax.errors import ConfigError
from dni_jax.training import train
from dni_jax.training.metrics_log import read_metrics
import tiny

TOL = dict(rtol=1e-5, atol=1e-6)
D = 6  # input width


def _system(method, k=3, ticks=2, cell="rnn"):
  core_a = dni.RecurrentCore(cell, 5, 10)
  core_b = dni.RecurrentCore(cell, 4, k + 1)
  synth = dni.LinearSynthesizer() if method == "dni" else None
  return tt_lib.TwoTimescale(core_a, core_b, k, ticks, method, synth, 1.0)


def _opt(lr=1e-2):
  return dni.Optimizers(optax.adam(lr), optax.adam(lr))


def _batch(tt, size=4, seed=0):
  stream = digit_stream.DigitStream(
      jax.random.normal(jax.random.PRNGKey(99), (40, D)),
      jnp.arange(40, dtype=jnp.int32) % 10)
  return digit_stream.window(stream, jax.random.PRNGKey(seed), size, tt.k,
                             tt.ticks)


def _init(tt, size=4, seed=0):
  state = tt_lib.init_train_state(tt, _opt(), jax.random.PRNGKey(seed), size,
                                  D)
  if tt.synthesizer is not None:  # off zero, so that M matters
    leaves, tree = jax.tree_util.tree_flatten(state.synth_params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    state = state.replace(synth_params=jax.tree_util.tree_unflatten(
        tree, [0.1 * jax.random.normal(k_, l.shape) for k_, l in
               zip(keys, leaves)]))
  return state


def _step(tt, opt=None):
  return jax.jit(lambda s, b: tt_lib.train_step(s, b, tt=tt,
                                                optimizers=opt or _opt()))


def _differs(x, y) -> bool:
  return any(not np.allclose(u, v) for u, v in zip(
      jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)))


def _count(opt_state):
  return int(opt_state[0].count)  # adam's ScaleByAdamState


@pytest.mark.parametrize("method,a_updates,b_updates", [
    ("dni", 3 * 2, 2), ("locked", 2, 2), ("bptt", 1, 1)])
def test_who_updates_how_often(method, a_updates, b_updates):
  """One step of 2 ticks with k = 3: A's and B's number of updates."""
  tt = _system(method)
  state, _ = _step(tt)(_init(tt), _batch(tt))
  assert _count(state.a_opt_state) == a_updates
  assert _count(state.b_opt_state) == b_updates
  if method == "dni":
    assert _count(state.synth_opt_state) == a_updates


def _a_steps(tt, state, batch, b_params=None):
  """Runs dni_a_step over one tick's k steps, keeping every state."""
  if b_params is not None:
    state = state.replace(b_params=b_params)
  step = jax.jit(lambda s, x, y, z: tt_lib.dni_a_step(
      s, x, y, z, tt=tt, optimizers=_opt()), static_argnums=())
  plain = jax.jit(lambda s, x, y: tt_lib.dni_a_step(
      s, x, y, tt=tt, optimizers=_opt()))
  states = [state]
  for t in range(tt.k):
    x, y = batch["inputs"][:, t], batch["a_labels"][:, t]
    if t == tt.k - 1:
      state, _ = step(state, x, y, batch["b_labels"][:, 0])
    else:
      state, _ = plain(state, x, y)
    states.append(state)
  return states


def test_b_changes_only_at_its_tick_every_k_steps_of_a():
  tt = _system("dni", k=3, ticks=1)
  states = _a_steps(tt, _init(tt), _batch(tt))
  for before, after in zip(states[:-2], states[1:-1]):  # steps 1 … k-1
    chex.assert_trees_all_equal(after.b_params, before.b_params)
    assert _differs(after.a_params, before.a_params)
  assert _differs(states[-1].b_params, states[-2].b_params)


def test_dni_update_of_a_between_ticks_does_not_see_b():
  """Change B's parameters: A's update at a non-tick step is unchanged."""
  tt = _system("dni", k=3, ticks=1)
  state, batch = _init(tt), _batch(tt)
  other_b = jax.tree_util.tree_map(lambda p: p + 1.0, state.b_params)
  a = _a_steps(tt, state, batch)
  b = _a_steps(tt, state, batch, b_params=other_b)
  for t in range(1, tt.k):  # every step before the tick
    for name in ("a_params", "a_opt_state", "a_carry", "synth_params"):
      chex.assert_trees_all_equal(getattr(a[t], name), getattr(b[t], name))
  # At the tick B's true gradient reaches A (a control: the test can fail).
  assert _differs(a[-1].a_params, b[-1].a_params)
  # Between ticks A's update does follow its synthesizer.
  moved = state.replace(synth_params=jax.tree_util.tree_map(
      lambda p: p * 2.0, state.synth_params))
  c = _a_steps(tt, moved, batch)
  assert _differs(a[1].a_params, c[1].a_params)


def _reference(tt, state, batch, truncate_each_tick):
  """Locked / full BPTT by hand: a plain Python loop and one jax.grad."""
  tx = optax.adam(1e-2)
  a_params, b_params = state.a_params, state.b_params
  a_opt, b_opt = tx.init(a_params), tx.init(b_params)
  a, b = state.a_carry, state.b_carry

  def window_loss(ap, bp, a, b, w):
    total = 0.0
    for t in range(tt.k):
      i = w * tt.k + t
      a, logits = tt.core_a.apply(ap, a, batch["inputs"][:, i])
      total = total + optax.softmax_cross_entropy_with_integer_labels(
          logits, batch["a_labels"][:, i])
    b, logits = tt.core_b.apply(bp, b, a)
    total = total + optax.softmax_cross_entropy_with_integer_labels(
        logits, batch["b_labels"][:, w])
    return total, a, b

  if truncate_each_tick:
    for w in range(tt.ticks):
      def loss(ap, bp, a=a, b=b, w=w):
        total, a_end, b_end = window_loss(ap, bp, a, b, w)
        return total.mean(), (a_end, b_end)
      (ga, gb), (a, b) = jax.grad(loss, (0, 1), has_aux=True)(a_params,
                                                             b_params)
      ua, a_opt = tx.update(ga, a_opt, a_params)
      ub, b_opt = tx.update(gb, b_opt, b_params)
      a_params = optax.apply_updates(a_params, ua)
      b_params = optax.apply_updates(b_params, ub)
  else:
    def loss(ap, bp):
      total, a_, b_ = 0.0, a, b
      for w in range(tt.ticks):
        part, a_, b_ = window_loss(ap, bp, a_, b_, w)
        total = total + part
      return total.mean(), (a_, b_)
    (ga, gb), (a, b) = jax.grad(loss, (0, 1), has_aux=True)(a_params,
                                                           b_params)
    a_params = optax.apply_updates(a_params, tx.update(ga, a_opt, a_params)[0])
    b_params = optax.apply_updates(b_params, tx.update(gb, b_opt, b_params)[0])
  return a_params, b_params, a, b


@pytest.mark.parametrize("method", ["locked", "bptt"])
def test_locked_and_bptt_equal_a_hand_written_reference(method):
  tt = _system(method, k=3, ticks=2)
  state = _init(tt)
  # Carried states off zero, so that where gradients stop matters.
  state = state.replace(
      a_carry=jax.random.normal(jax.random.PRNGKey(3), state.a_carry.shape),
      b_carry=jax.random.normal(jax.random.PRNGKey(4), state.b_carry.shape))
  batch = _batch(tt)
  a_params, b_params, a, b = _reference(tt, state, batch,
                                        truncate_each_tick=method == "locked")
  new, _ = _step(tt)(state, batch)
  chex.assert_trees_all_close(new.a_params, a_params, **TOL)
  chex.assert_trees_all_close(new.b_params, b_params, **TOL)
  chex.assert_trees_all_close((new.a_carry, new.b_carry), (a, b), **TOL)


def test_locked_and_bptt_differ():
  """The two references are not the same thing (so the test above can fail)."""
  tt = _system("locked", k=3, ticks=2)
  state, batch = _init(tt), _batch(tt)
  locked = _reference(tt, state, batch, truncate_each_tick=True)
  full = _reference(tt, state, batch, truncate_each_tick=False)
  assert _differs(locked[0], full[0])


def test_window_labels_count_odd_digits():
  stream = digit_stream.DigitStream(jnp.zeros((10, 2)),
                                    jnp.arange(10, dtype=jnp.int32))
  batch = digit_stream.window(stream, jax.random.PRNGKey(0), 5, 4, 3)
  odd = np.asarray(batch["a_labels"]).reshape(5, 3, 4) % 2
  np.testing.assert_array_equal(batch["b_labels"], odd.sum(-1))
  assert batch["inputs"].shape == (5, 12, 2)


def _config(**overrides):
  config = importlib.import_module("configs.two_timescale").get_config()
  config.model.width = 8
  config.timescale.update(k=2, ticks=2, b_width=8, eval_ticks=3)
  config.update(batch_size=4, eval_batch_size=8, num_steps=4, log_every=2,
                eval_every=2, checkpoint_every=2)
  return tiny.override(config, **overrides)


def test_two_timescale_config_runs_every_method(tmp_path, capsys):
  summaries = train.train_and_evaluate(_config(), tmp_path)
  assert set(summaries) == {"dni", "locked", "bptt"}
  for method in summaries:
    records = read_metrics(tmp_path / method / "metrics.jsonl")
    test = [r for r in records if r["split"] == "test"]
    assert [r["step"] for r in test] == [2, 4]
    assert {"a_error", "b_error", "digits"} <= set(test[-1])
    assert test[-1]["digits"] == 4 * 4 * 2 * 2
  assert "B test err %" in capsys.readouterr().out


@pytest.mark.parametrize("overrides,message", [
    ({"timescale.k": 0}, "timescale.k must be a whole number >= 1"),
    ({"timescale.ticks": 0}, "timescale.ticks must be >= 1"),
    ({"method": "dni_aux"}, "unknown method 'dni_aux'"),
    ({"data.name": "cifar10"}, "unknown digit source"),
])
def test_bad_two_timescale_config_names_the_field(overrides, message,
                                                  tmp_path):
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(_config(**overrides), tmp_path)


def test_dni_system_learns_the_count_through_the_interface():
  """B's error falls well below its start on most seeds (window means).

  B can count odd digits only if A's state carries them, and A's own task
  never asks for that: only B's gradients (the true one at a tick, the
  synthetic one in between) shape A's state for it.
  """
  tt = dataclasses.replace(_system("dni", k=2, ticks=2, cell="lstm"),
                           core_a=dni.RecurrentCore("lstm", 32, 10),
                           core_b=dni.RecurrentCore("lstm", 16, 3))
  stream = digit_stream.DigitStream.from_dataset(
      digit_stream.synthetic_digits("train"))
  opt = _opt(3e-3)
  step = jax.jit(lambda s, key: tt_lib.train_step(
      s, digit_stream.window(stream, key, 32, tt.k, tt.ticks), tt=tt,
      optimizers=opt))
  wins = 0
  for seed in range(3):
    state = tt_lib.init_train_state(tt, opt, jax.random.PRNGKey(seed), 32,
                                    stream.input_size)
    errors = []
    for i in range(300):
      state, m = step(state, jax.random.fold_in(jax.random.PRNGKey(seed), i))
      errors.append(float(m["b_error"]))
    wins += np.mean(errors[-50:]) < 0.6 * np.mean(errors[:20])
  assert wins >= 2
