"""Two networks at two timescales: who updates when, and from what gradient."""

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dni_jax as dni
from dni_jax.core import two_networks as tn_lib
from dni_jax.data import digit_stream
from dni_jax.errors import ConfigError
from dni_jax.parallel import two_networks as parallel_tn
from dni_jax.training import experiment
from dni_jax.training import train
from dni_jax.training import two_networks as tn_training
from dni_jax.training.metrics_log import read_metrics
import tiny
from test_train import assert_same_run

TOL = dict(rtol=1e-5, atol=1e-6)
D = 6  # input width
M = 3  # message width


def _system(method, T=2, cell="rnn", sg_slots="each", reset_a=False):
  core_a = dni.RecurrentCore(cell, 5, T + 1 + M)
  core_b = dni.RecurrentCore(cell, 4, T * T + 1)
  synth = dni.LinearSynthesizer() if method == "dni" else None
  return tn_lib.TwoNetworks(core_a, core_b, T, M, method, synth, 1.0,
                            sg_slots, reset_a)


def _opt(lr=1e-2, synth_lr=None):
  return dni.Optimizers(optax.sgd(lr), optax.sgd(
      lr if synth_lr is None else synth_lr))


def _batch(tn, size=4, seed=0):
  stream = digit_stream.DigitStream(
      jax.random.normal(jax.random.PRNGKey(99), (40, D)),
      jnp.arange(40, dtype=jnp.int32) % 10)
  return digit_stream.episodes(stream, jax.random.PRNGKey(seed), size, tn.T)


def _init(tn, opt=None, size=4, seed=0):
  state = tn_lib.init_train_state(tn, opt or _opt(), jax.random.PRNGKey(seed),
                                  size, D)
  if tn.synthesizer is not None:  # off zero, so that M matters
    state = state.replace(synth_params=tiny.randomize(state.synth_params, 7))
  return state


def _step(tn, opt=None):
  return jax.jit(lambda s, b: tn_lib.train_step(s, b, tn=tn,
                                                optimizers=opt or _opt()))


def _reference_episode(tn, a_params, b_params, batch):
  """The system written out step by step (no scan, no library code but the
  cores): ``(mean over the batch of A's losses + B's loss, messages [T, B,
  M])``. A's state carries over the whole episode unless ``tn.reset_a``."""
  size = batch["inputs"].shape[0]
  a, messages, total = tn.core_a.initial_state(size), [], 0.0
  for t in range(tn.episode):
    if tn.reset_a and t % tn.T == 0:
      a = tn.core_a.initial_state(size)
    a, out = tn.core_a.apply(a_params, a, batch["inputs"][:, t])
    if t % tn.T == tn.T - 1:
      total = total + optax.softmax_cross_entropy_with_integer_labels(
          out[:, :tn.T + 1], batch["a_labels"][:, t // tn.T])
      messages.append(out[:, tn.T + 1:])
  b = tn.core_b.initial_state(size)
  for message in messages:
    b, logits = tn.core_b.apply(b_params, b, message)
  total = total + optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["b_labels"])
  return total.mean(), jnp.stack(messages)


def _grads_of_sgd_step(old, new):
  """The gradient an SGD step with learning rate 1 applied."""
  return jax.tree_util.tree_map(lambda o, n: o - n, old, new)


def test_episode_labels_count_odd_digits_per_window_and_3s_per_episode():
  stream = digit_stream.DigitStream(jnp.zeros((10, 2)),
                                    jnp.arange(10, dtype=jnp.int32))
  key = jax.random.PRNGKey(0)
  batch = digit_stream.episodes(stream, key, 5, 3)
  digits = np.asarray(stream.labels[jax.random.randint(key, (5, 9), 0, 10)])
  np.testing.assert_array_equal(batch["a_labels"],
                                (digits.reshape(5, 3, 3) % 2).sum(-1))
  np.testing.assert_array_equal(batch["b_labels"], (digits == 3).sum(-1))
  assert batch["inputs"].shape == (5, 9, 2)


@pytest.mark.parametrize("method,a_updates", [
    ("locked", 1), ("dni", 3), ("no_dni", 3)])
def test_who_updates_how_often(method, a_updates):
  tn = _system(method, T=3)
  opt = dni.Optimizers(optax.adam(1e-2), optax.adam(1e-2))
  state = _init(tn, opt)
  step = _step(tn, opt)
  for i in range(2):
    state, _ = step(state, _batch(tn, seed=i))
  count = lambda opt_state: int(opt_state[0].count)  # noqa: E731
  assert count(state.a_opt_state) == 2 * a_updates
  assert count(state.b_opt_state) == 2
  assert tn.a_updates_per_step == a_updates
  if method == "dni":  # each slot's M once per episode
    np.testing.assert_array_equal(state.synth_opt_state[0].count, [2, 2, 2])


@pytest.mark.parametrize("reset_a", [False, True])
def test_locked_is_backprop_through_both_networks_over_the_episode(reset_a):
  tn = _system("locked", T=3, reset_a=reset_a)
  state, batch = _init(tn, _opt(1.0)), _batch(tn)
  new, metrics = _step(tn, _opt(1.0))(state, batch)
  (loss, _), (a_grads, b_grads) = (
      _reference_episode(tn, state.a_params, state.b_params, batch),
      jax.grad(lambda a, b: _reference_episode(tn, a, b, batch)[0],
               argnums=(0, 1))(state.a_params, state.b_params))
  jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(x, y, **TOL), a_grads,
      _grads_of_sgd_step(state.a_params, new.a_params))
  jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(x, y, **TOL), b_grads,
      _grads_of_sgd_step(state.b_params, new.b_params))
  np.testing.assert_allclose(
      3 * metrics["a_loss"] + metrics["b_loss"], loss, **TOL)


def test_dni_with_the_true_gradient_of_each_message_is_locked_for_a():
  """A resetting its state every window: A's T window updates, each from its
  own loss plus B's true gradient w.r.t. its message as the synthetic
  gradient, sum (at fixed parameters) to the locked system's gradient."""
  tn = _system("dni", T=3, reset_a=True)
  state, batch = _init(tn), _batch(tn)
  a_params, b_params = state.a_params, state.b_params
  locked = jax.grad(lambda a: _reference_episode(tn, a, b_params, batch)[0])(
      a_params)
  _, messages = _reference_episode(tn, a_params, b_params, batch)
  size = messages.shape[1]

  def b_loss(messages_TxBxM):
    logits = tn_lib.b_answer(tn, b_params, jnp.swapaxes(messages_TxBxM, 0, 1))
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch["b_labels"]).mean()
  true = jax.grad(b_loss)(messages)  # [T, B, M]
  x = batch["inputs"].reshape(size, 3, 3, D)
  total = None
  for w in range(3):
    oracle = lambda m, w=w: size * true[w]  # per-example units  # noqa: E731
    g = jax.grad(lambda a, w=w, oracle=oracle: tn_lib.a_objective(
        tn, a, tn.core_a.initial_state(size), x[:, w],
        batch["a_labels"][:, w], oracle)[0])(a_params)
    total = g if total is None else jax.tree_util.tree_map(jnp.add, total, g)
  jax.tree_util.tree_map(
      lambda x_, y: np.testing.assert_allclose(x_, y, **TOL), total, locked)


@pytest.mark.parametrize("sg_slots", ["each", "shared"])
@pytest.mark.parametrize("sg_context",
                         ["none", "b_state", "label", "b_state_label"])
def test_each_synthesizer_regresses_onto_b_s_gradient_of_its_message(
    sg_slots, sg_context):
  """A and B frozen (learning rate 0), every M zero: one step moves each
  linear M by SGD on ‖M(m_w, c_w) − B·∂L_B/∂m_w‖², the target from B's true
  gradient with respect to the message the step sent in slot w, and c_w
  B's state before that message, B's label, or both."""
  tn = dataclasses.replace(_system("dni", T=3, sg_slots=sg_slots),
                           sg_context=sg_context)
  opt = dni.Optimizers(optax.sgd(0.0), optax.sgd(1.0))
  state = tn_lib.init_train_state(tn, opt, jax.random.PRNGKey(0), 4, D)
  batch = _batch(tn)
  new, metrics = _step(tn, opt)(state, batch)
  _, messages = _reference_episode(tn, state.a_params, state.b_params, batch)
  targets = 4 * jax.grad(
      lambda m: _reference_episode_b(tn, state, batch, m))(messages)
  inputs = [messages]
  if sg_context in ("b_state", "b_state_label"):
    b, before = tn.core_b.initial_state(4), []
    for m in messages:
      before.append(b)
      b, _ = tn.core_b.apply(state.b_params, b, m)
    inputs.append(jnp.stack(before))
  if sg_context in ("label", "b_state_label"):
    inputs.append(jnp.broadcast_to(jax.nn.one_hot(batch["b_labels"], 10),
                                   (3, 4, 10)))
  if sg_slots == "shared":
    inputs.append(jnp.broadcast_to(jnp.eye(3)[:, None], (3, 4, 3)))
  inputs = jnp.concatenate(inputs, -1)
  # ‖W z + b − t‖² / B at zero: its gradient is −2/B Σ z tᵀ.
  kernels = 2 / 4 * jnp.einsum("wbi,wbj->wij", inputs, targets)
  kernel = new.synth_params["output"]["kernel"]
  np.testing.assert_allclose(
      kernel, kernels if sg_slots == "each" else kernels.mean(0), **TOL)
  np.testing.assert_allclose(
      metrics["synth_loss"],
      jnp.mean(jnp.sum(jnp.square(targets), -1).sum(-1) / 4), **TOL)
  jax.tree_util.tree_map(np.testing.assert_array_equal, new.a_params,
                         state.a_params)


def _reference_episode_b(tn, state, batch, messages_TxBxM):
  logits = tn_lib.b_answer(tn, state.b_params,
                           jnp.swapaxes(messages_TxBxM, 0, 1))
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["b_labels"]).mean()


def test_no_dni_sends_a_nothing_from_b_and_dni_does():
  batch = _batch(_system("no_dni"))
  results = {}
  for method in ("no_dni", "dni"):
    tn = _system(method)
    state = _init(tn)
    other_b = state.replace(b_params=tiny.randomize(state.b_params, 3))
    results[method] = [_step(tn)(s, batch)[0].a_params
                       for s in (state, other_b)]
  # no_dni: A's update is the same whatever B is, and differs from dni's.
  jax.tree_util.tree_map(np.testing.assert_array_equal, *results["no_dni"])
  assert any(not np.allclose(x, y) for x, y in zip(
      jax.tree_util.tree_leaves(results["no_dni"][0]),
      jax.tree_util.tree_leaves(results["dni"][0])))


def test_dni_with_a_zero_synthetic_gradient_is_no_dni_for_both_networks():
  batch = _batch(_system("dni"))
  dni_tn = dataclasses.replace(_system("dni"), sg_scale=0.0)
  no_tn = _system("no_dni")
  state = _init(dni_tn)
  plain = tn_lib.init_train_state(no_tn, _opt(), jax.random.PRNGKey(0), 4, D)
  a, _ = _step(dni_tn)(state, batch)
  b, _ = _step(no_tn)(plain, batch)
  for x, y in ((a.a_params, b.a_params), (a.b_params, b.b_params)):
    jax.tree_util.tree_map(
        lambda x_, y_: np.testing.assert_allclose(x_, y_, **TOL), x, y)


def _config(**overrides):
  config = importlib.import_module("configs.two_networks").get_config()
  config.model.width = 8
  config.two_networks.update(T=2, message_width=3, b_width=8)
  config.update(batch_size=4, eval_batch_size=16, num_steps=4, log_every=2,
                eval_every=2, checkpoint_every=2)
  return tiny.override(config, **overrides)


def test_two_networks_config_runs_every_method_and_counts_updates(
    tmp_path, capsys):
  summaries = train.train_and_evaluate(_config(), tmp_path)
  assert set(summaries) == {"locked", "dni", "no_dni"}
  for method in summaries:
    records = read_metrics(tmp_path / method / "metrics.jsonl")
    test = [r for r in records if r["split"] == "test"]
    assert [r["step"] for r in test] == [2, 4]
    last = test[-1]
    assert {"a_error", "b_error", "b_majority_error"} <= set(last)
    assert last["time_steps"] == 4 * 4 and last["b_updates"] == 4
    assert last["a_updates"] == (4 if method == "locked" else 8)
    assert ("sg_cosine" in last) == (method == "dni")
  assert "B majority %" in capsys.readouterr().out


@pytest.mark.parametrize("method,delay", [("locked", 0), ("dni", 0),
                                          ("no_dni", 0), ("dni", 2)])
def test_resume_after_interruption_equals_uninterrupted(tmp_path, monkeypatch,
                                                        method, delay):
  config = _config(method=method, num_steps=6, checkpoint_every=3,
                   log_every=1, eval_every=3,
                   **{"dni.synth_delay": delay})
  train.train_and_evaluate(config, tmp_path / "straight")
  real = tn_training.make_loop

  def crashing(config):
    loop = real(config)

    def step(state, i):
      if i == 5:
        raise KeyboardInterrupt("simulated interruption")
      return loop.step(state, i)
    return dataclasses.replace(loop, step=step)

  monkeypatch.setattr(tn_training, "make_loop", crashing)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path / "resumed")
  monkeypatch.setattr(tn_training, "make_loop", real)
  train.train_and_evaluate(config, tmp_path / "resumed")
  assert_same_run(tmp_path / "straight", tmp_path / "resumed", 6)


@pytest.mark.parametrize("overrides,message", [
    ({"two_networks.T": 0},
     "two_networks.T must be a whole number of at least 1, got 0."),
    ({"opt.decay_factor": float("inf")},
     "opt.decay_factor must be a finite number, 0 or more, got inf"),
    ({"two_networks.sg_slots": "one"}, "unknown two_networks.sg_slots"),
    ({"two_networks.sg_context": "b"}, "unknown two_networks.sg_context"),
    ({"method": "bptt"}, "unknown method 'bptt'"),
    ({"data.name": "cifar10"}, "unknown digit source"),
    ({"two_networks.T": True}, "two_networks.T must be a whole number"),
    ({"dni.update_prob": 0.5}, "apply to feed-forward configs"),
    ({"dni.sg_scale": float("nan")}, "dni.sg_scale must be finite"),
    ({"two_networks.oracle": True, "method": "no_dni"},
     "two_networks.oracle .* needs --config.method=dni"),
    ({"dni.synth_delay": 1, "method": "locked,no_dni"},
     "dni.synth_delay=1 .* needs dni among the methods"),
    ({"dni.synth_delay": 1, "method": "dni", "two_networks.oracle": True},
     "dni.synth_delay=1 .* two_networks.oracle off"),
    ({"dni.synth_delay": True, "method": "dni"},
     "dni.synth_delay must be a whole number"),
    ({"dni.synth_delay": -1, "method": "dni"},
     "dni.synth_delay must be a whole number of at least 0"),
])
def test_bad_two_networks_config_names_the_field(overrides, message,
                                                 tmp_path):
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(_config(**overrides), tmp_path)


def test_the_benchmark_times_every_method_projects_and_measures_two_processes():
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark_two_networks", "--T=2",
       "--batch=4", "--rounds=1", "--steps=2",
       "--two_processes=locked,dni"],
      cwd=root, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  for name in ("locked:", "dni:", "no_dni:", "a_phase:", "b_phase:"):
    assert name in done.stdout
  assert "projected speedup dni(2 devices)/locked=" in done.stdout
  if len(os.sched_getaffinity(0)) >= 2:  # on one and on two processes
    measured = done.stdout.split("measured, each process pinned")[1]
    for method in ("locked", "dni"):
      row = [l.split() for l in measured.splitlines()
             if l.split()[:1] == [method]]
      assert len(row) == 1 and all(float(x) > 0 for x in row[0][1:]), (
          done.stdout)
    assert "two processes measured: dni/locked speedup=" in measured


def test_the_table_gives_final_errors_and_steps_to_locked_s_error(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from experiments import two_networks_table  # pylint: disable=g-import-not-at-top
  curves = {"locked": ([0.5, 0.2, 0.1, 0.1], [0.6, 0.4, 0.3, 0.3]),
            "dni": ([0.3, 0.1, 0.1, 0.1], [0.6, 0.6, 0.6, 0.6]),
            "dni_oracle": ([0.3, 0.1, 0.1, 0.1], [0.6, 0.3, 0.3, 0.3])}
  for name, (a, b) in curves.items():
    for seed in range(2):
      folder = tmp_path / name / f"seed={seed}"
      os.makedirs(folder)
      tn = {"T": 4}  # as written before the oracle field existed
      if name == "dni_oracle":
        tn["oracle"] = True
      config = {"method": name[:3] if name != "locked" else name,
                "seed": seed, "two_networks": tn}
      if name != "locked":  # a synthesizer field that varies: dni's only
        config["dni"] = {"synthesizer": "mlp" if name == "dni" else "linear"}
      (folder / "config.json").write_text(json.dumps(config))
      (folder / "metrics.jsonl").write_text("".join(
          json.dumps({"step": 100 * (i + 1), "split": "test", "a_error": x,
                      "b_error": y, "b_majority_error": 0.6}) + "\n"
          for i, (x, y) in enumerate(zip(a, b))))
  rows = two_networks_table.table(str(tmp_path), last=2).splitlines()
  assert rows[2].startswith("| 4 | locked | 2 | 10.00 ± 0.00 | 30.00 ± 0.00")
  # locked reaches 1.1 × its final A error at step 300, dni at 200: 0.67.
  assert "| 300 (2/2) | 1.00 |" in rows[2]
  assert rows[3].startswith("| 4 | dni (dni.synthesizer=mlp) | 2 |")
  assert "| 200 (2/2) | 0.67 | not reached (0/2) |" in rows[3]
  assert rows[4].startswith("| 4 | dni (oracle, dni.synthesizer=linear) | 2 |")
  assert "| 200 (2/2) | 0.67 | 200 (2/2) |" in rows[4]
  # a run started but not yet evaluated (no test records) is counted as a
  # seed and read as having reached nothing yet
  late = tmp_path / "dni" / "seed=2"
  os.makedirs(late)
  (late / "config.json").write_text(json.dumps(
      {"method": "dni", "seed": 2, "two_networks": {"T": 4},
       "dni": {"synthesizer": "mlp"}}))
  (late / "metrics.jsonl").write_text(json.dumps(
      {"step": 10, "split": "train", "a_error": 0.5}) + "\n")
  rows = two_networks_table.table(str(tmp_path), last=2).splitlines()
  assert rows[3].startswith("| 4 | dni (dni.synthesizer=mlp) | 3 |")
  assert "| 200 (2/2) | 0.67 | not reached (0/2) |" in rows[3]


@pytest.mark.parametrize("sg_slots,sg_context", [
    ("each", "none"), ("each", "label"), ("shared", "b_state"),
    ("each", "b_state_label")])
def test_a_updates_after_each_window_from_its_slot_s_synthetic_gradient(
    sg_slots, sg_context):
  """A's phase, window by window by hand: SGD (rate 1) on A's loss plus
  ⟨λ·M_w(m_w, c_w), m_w⟩ with slot w's model and context."""
  from dni_jax.core import interface  # pylint: disable=g-import-not-at-top
  tn = dataclasses.replace(_system("dni", T=3, sg_slots=sg_slots),
                           sg_context=sg_context, sg_scale=0.5)
  opt = dni.Optimizers(optax.sgd(1.0), optax.sgd(0.0))
  state, batch = _init(tn, opt), _batch(tn)
  new, sent = tn_lib.a_phase(state, batch, tn=tn, optimizers=opt)
  sg = interface.Interface(tn.synthesizer, opt.synth, 0.5)
  x = batch["inputs"].reshape(4, 3, 3, D)
  a_params, a, b = state.a_params, tn.core_a.initial_state(4), (
      tn.core_b.initial_state(4))
  for w in range(3):
    slot = interface.state_of(state)
    if sg_slots == "each":
      slot = jax.tree_util.tree_map(lambda leaf, w=w: leaf[w], slot)
    label = jax.nn.one_hot(batch["b_labels"], 10)
    context = {"none": [], "label": [label], "b_state": [b],
               "b_state_label": [b, label]}[sg_context]
    if sg_slots == "shared":
      context.append(jnp.broadcast_to(jnp.eye(3)[w], (4, 3)))
    context = jnp.concatenate(context, -1) if context else None
    synthetic = lambda m, slot=slot, context=context: sg.delta(  # noqa: E731
        sg.predict(slot, m, context, train=False).value)
    grads, (a, message, _, _) = jax.grad(
        lambda p, a=a, w=w, synthetic=synthetic: tn_lib.a_objective(
            tn, p, a, x[:, w], batch["a_labels"][:, w], synthetic),
        has_aux=True)(a_params)
    a_params = jax.tree_util.tree_map(lambda p, g: p - g, a_params, grads)
    np.testing.assert_allclose(sent.messages[w], message, **TOL)
    b, _ = tn.core_b.apply(state.b_params, b, message)
  jax.tree_util.tree_map(
      lambda x_, y: np.testing.assert_allclose(x_, y, **TOL), new.a_params,
      a_params)


def test_the_oracle_gives_a_b_s_true_gradients_of_the_episode_s_start():
  """oracle: A's window-w update uses B's true gradient w.r.t. the message
  A sends in slot w with the episode's start parameters (what locked
  backpropagates), not M's prediction; with A frozen, its T updates sum to
  locked's gradient of A (A resetting every window)."""
  tn = dataclasses.replace(_system("dni", T=3, reset_a=True), oracle=True,
                           sg_scale=0.5)
  opt = dni.Optimizers(optax.sgd(1.0), optax.sgd(0.0))
  state, batch = _init(tn, opt), _batch(tn)
  new, _ = tn_lib.a_phase(state, batch, tn=tn, optimizers=opt)
  messages = tn_lib.a_episode(tn, state.a_params, batch)[0]
  true = 4 * jax.grad(lambda m: tn_lib.b_outcome(
      tn, state.b_params, m, batch["b_labels"])[0].mean())(messages)
  x = batch["inputs"].reshape(4, 3, 3, D)
  a_params = state.a_params
  for w in range(3):
    synthetic = lambda m, w=w: 0.5 * true[w]  # noqa: E731
    grads = jax.grad(lambda p, w=w, synthetic=synthetic: tn_lib.a_objective(
        tn, p, tn.core_a.initial_state(4), x[:, w], batch["a_labels"][:, w],
        synthetic)[0])(a_params)
    a_params = jax.tree_util.tree_map(lambda p, g: p - g, a_params, grads)
  jax.tree_util.tree_map(
      lambda x_, y: np.testing.assert_allclose(x_, y, **TOL), new.a_params,
      a_params)
  # at fixed parameters, the T window gradients (λ = 1) sum to locked's
  total = jax.tree_util.tree_map(jnp.zeros_like, state.a_params)
  for w in range(3):
    synthetic = lambda m, w=w: true[w]  # noqa: E731
    g = jax.grad(lambda p, w=w, synthetic=synthetic: tn_lib.a_objective(
        tn, p, tn.core_a.initial_state(4), x[:, w], batch["a_labels"][:, w],
        synthetic)[0])(state.a_params)
    total = jax.tree_util.tree_map(jnp.add, total, g)
  locked = jax.grad(lambda a: tn_lib.locked_objective(
      tn, a, state.b_params, batch)[0])(state.a_params)
  jax.tree_util.tree_map(
      lambda x_, y: np.testing.assert_allclose(x_, y, **TOL), total, locked)


@pytest.mark.parametrize("sg_slots,sg_context", [
    ("each", "b_state_label"), ("shared", "label")])
def test_synthesizer_fit_scores_each_slot_against_b_s_true_gradient(
    sg_slots, sg_context):
  """sg_cosine and sg_r2, by hand: slot w's M (reading B's state before
  message w, or its label) against B's true gradient of message w."""
  from dni_jax.core import interface  # pylint: disable=g-import-not-at-top
  tn = dataclasses.replace(_system("dni", T=3, sg_slots=sg_slots),
                           sg_context=sg_context)
  state, batch = _init(tn), _batch(tn, size=8)
  sg_state = interface.state_of(state)
  fit = tn_lib.evaluate(tn, state.a_params, state.b_params, batch, sg_state)
  messages = tn_lib.a_episode(tn, state.a_params, batch)[0]
  true = 8 * jax.grad(lambda m: tn_lib.b_outcome(
      tn, state.b_params, m, batch["b_labels"])[0].mean())(messages)
  # the held-out errors are the locked objective's, fit or no fit
  plain = tn_lib.evaluate(tn, state.a_params, state.b_params, batch)
  _, outcome = tn_lib.locked_objective(tn, state.a_params, state.b_params,
                                       batch)
  for metrics in (fit, plain):
    for name, value in zip(("a_loss", "a_error", "b_loss", "b_error"),
                           outcome):
      np.testing.assert_allclose(metrics[name], value.mean(), **TOL)
  assert fit["b_majority_error"] == plain["b_majority_error"]
  sg = interface.Interface(tn.synthesizer, None, 1.0)
  b, cosines, r2s = tn.core_b.initial_state(8), [], []
  for w in range(3):
    label = jax.nn.one_hot(batch["b_labels"], 10)
    parts = [b, label] if sg_context == "b_state_label" else [label]
    slot = sg_state
    if sg_slots == "each":
      slot = jax.tree_util.tree_map(lambda leaf, w=w: leaf[w], slot)
    else:
      parts.append(jnp.broadcast_to(jnp.eye(3)[w], (8, 3)))
    p = np.asarray(sg.predict(slot, messages[w], jnp.concatenate(parts, -1),
                              train=False).value)
    t = np.asarray(true[w])
    cosines.append(np.mean(np.sum(p * t, -1) / (
        np.linalg.norm(p, axis=-1) * np.linalg.norm(t, axis=-1))))
    r2s.append(1 - np.sum((p - t) ** 2) / np.sum((t - t.mean(0)) ** 2))
    b, _ = tn.core_b.apply(state.b_params, b, messages[w])
  np.testing.assert_allclose(fit["sg_cosine"], np.mean(cosines), rtol=1e-4)
  np.testing.assert_allclose(fit["sg_r2"], np.mean(r2s), rtol=1e-4)
  for w in range(3):
    np.testing.assert_allclose(fit[f"sg_r2_slot{w}"], r2s[w], rtol=1e-4)
  assert abs(float(fit["sg_cosine"])) > 1e-3  # M is off zero: it scores


def test_a_shared_synthesizer_keeps_its_batch_norm_statistics_moving():
  tn = dataclasses.replace(_system("dni", sg_slots="shared"),
                           synthesizer=dni.MLPSynthesizer((4,)))
  state = _init(tn)
  new, _ = _step(tn)(state, _batch(tn))
  assert any(not np.allclose(x, y) for x, y in zip(
      jax.tree_util.tree_leaves(new.synth_state),
      jax.tree_util.tree_leaves(state.synth_state)))


def test_a_two_timescale_config_is_refused_naming_its_replacement(tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = _config()
  del config["two_networks"]
  config.timescale = ml_collections.ConfigDict({"k": 4})
  with pytest.raises(ConfigError, match="configs/two_networks.py"):
    train.train_and_evaluate(config, tmp_path)


def test_the_oracle_is_refused_but_for_dni_on_one_device():
  with pytest.raises(ValueError, match="needs method 'dni'"):
    dataclasses.replace(_system("no_dni"), oracle=True)
  tn = dataclasses.replace(_system("dni"), oracle=True)
  with pytest.raises(ConfigError, match="one-device diagnostic"):
    parallel_tn.TwoDeviceSystem(tn, _opt(), (None, None), None)


# --- A and B on two devices (dni_jax.parallel.two_networks) ---------------


def _two_devices(tn, opt, state, batches, episodes):
  """Runs ``episodes`` episodes with A on device 0 and B on device 1;
  returns the merged state and each episode's metrics."""
  system = parallel_tn.TwoDeviceSystem(tn, opt, jax.devices()[:2],
                                       batches(0))
  run, metrics = system.init(state), []
  for t in range(episodes):
    if tn.method == "locked":
      run, m = system.step(run, t, batches)
    else:
      run, m = system.tick(run, t, batches)
    metrics.append(m)
  if tn.method != "locked":
    run, m = system.drain(run, episodes, batches)
    metrics = metrics[1:] + [m]  # B reports episode t at tick t + 1
  return system.merged(run["nets"]), metrics


def _assert_close(x, y):
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, **TOL), x, y)


@pytest.mark.parametrize("method", ["locked", "no_dni", "dni"])
def test_on_two_devices_a_step_is_train_step_where_nothing_is_stale(method):
  """locked and no_dni on two devices train as ``train_step`` does (Adam:
  the optimiser states too); so does dni while its synthesizers do not learn
  (learning rate 0), since then A's staler copy of them is the same."""
  tn = _system(method, T=2)
  opt = dni.Optimizers(optax.adam(1e-2),  # with state, so that it is checked
                       optax.adam(0.0 if method == "dni" else 1e-2))
  state = _init(tn, opt)
  batches = lambda t: _batch(tn, seed=t)  # noqa: E731
  step = _step(tn, opt)
  want, want_metrics = state, []
  for t in range(3):
    want, m = step(want, batches(t))
    want_metrics.append(m)
  got, got_metrics = _two_devices(tn, opt, state, batches, 3)
  _assert_close(got, want)
  for g, w in zip(got_metrics, want_metrics):
    for name in ("a_loss", "a_error", "b_loss", "b_error"):
      np.testing.assert_allclose(g[name], w[name], **TOL)


@pytest.mark.parametrize("sg_context", ["none", "b_state_label"])
def test_on_two_devices_dni_s_a_uses_synthesizers_one_episode_staler(
    sg_context):
  """dni on two devices: A's episode t uses the synthesizers (and, reading
  B's state, B's parameters) as they were after B learned from episode
  t − 2, where ``train_step`` uses those after episode t − 1; all else is
  ``a_phase`` and ``b_phase`` in turn."""
  tn = dataclasses.replace(_system("dni", T=2), sg_context=sg_context)
  opt = _opt()
  state = _init(tn, opt)
  batches = lambda t: _batch(tn, seed=t)  # noqa: E731
  a_phase = jax.jit(lambda s, b: tn_lib.a_phase(s, b, tn=tn, optimizers=opt))
  b_phase = jax.jit(lambda s, b, sent: tn_lib.b_phase(s, b, sent, tn=tn,
                                                      optimizers=opt))
  a_side, b_side, sent, seen_by_a = state, state, None, state
  for t in range(4):  # the reference, one device, phases by hand
    a_side = a_side.replace(synth_params=seen_by_a.synth_params,
                            synth_state=seen_by_a.synth_state,
                            b_params=(seen_by_a.b_params
                                      if sg_context != "none"
                                      else a_side.b_params))
    a_side, new_sent = a_phase(a_side, batches(t))
    if t > 0:
      b_side, _ = b_phase(b_side, batches(t - 1), sent)
    seen_by_a, sent = b_side, new_sent
  b_side, _ = b_phase(b_side, batches(3), sent)
  got, _ = _two_devices(tn, opt, state, batches, 4)
  _assert_close(got.a_params, a_side.a_params)
  _assert_close((got.b_params, got.synth_params),
                (b_side.b_params, b_side.synth_params))
  # and it is not train_step: the staleness is real
  step = _step(tn, opt)
  want = state
  for t in range(4):
    want, _ = step(want, batches(t))
  leaves = jax.tree_util.tree_leaves
  assert not all(np.allclose(g, w, **TOL) for g, w in
                 zip(leaves(got.a_params), leaves(want.a_params)))


@pytest.mark.parametrize("delay", [1, 2])
def test_a_stale_interface_gives_a_b_s_side_of_d_episodes_before(delay):
  """With ``synth_delay = d``, A's episode t runs ``a_phase`` on B's side
  (synthesizers, and B's parameters where M reads B's state) as it stood
  before episode t − d (the initial one while t ≤ d); B's side is
  ``b_phase``'s, as without a delay."""
  tn = dataclasses.replace(_system("dni", T=2), sg_context="b_state_label",
                           synth_delay=delay)
  opt = _opt()
  fresh_state = tn_lib.init_train_state(tn, opt, jax.random.PRNGKey(0), 4, D)
  assert len(fresh_state.seen_by_a) == delay
  for seen in fresh_state.seen_by_a:
    _assert_close(seen, tn_lib.b_side(tn, fresh_state))
  state = _init(tn, opt)
  state = state.replace(seen_by_a=(tn_lib.b_side(tn, state),) * delay)
  batches = lambda t: _batch(tn, seed=t)  # noqa: E731
  step = _step(tn, opt)
  a_phase = jax.jit(lambda s, b: tn_lib.a_phase(s, b, tn=tn, optimizers=opt))
  b_phase = jax.jit(lambda s, b, sent: tn_lib.b_phase(s, b, sent, tn=tn,
                                                      optimizers=opt))
  states = [state]
  for t in range(4):
    states.append(step(states[-1], batches(t))[0])
  for t in range(4):
    before, after = states[t], states[t + 1]
    seen = tn_lib.b_side(tn, states[max(t - delay, 0)])
    a_side, sent = a_phase(tn_lib.with_b_side(before, seen), batches(t))
    _assert_close(after.a_params, a_side.a_params)
    b_side, _ = b_phase(before, batches(t), sent)
    _assert_close(tn_lib.b_side(tn, after), tn_lib.b_side(tn, b_side))
  # the delay is real: A differs from the one that reads B's side now
  fresh = _step(dataclasses.replace(tn, synth_delay=0), opt)
  want = dataclasses.replace(states[0], seen_by_a=())
  for t in range(4):
    want, _ = fresh(want, batches(t))
  leaves = jax.tree_util.tree_leaves
  assert not all(np.allclose(g, w, **TOL) for g, w in
                 zip(leaves(states[-1].a_params), leaves(want.a_params)))


@pytest.mark.parametrize("sg_context", ["none", "b_state_label"])
def test_a_stale_interface_of_one_episode_trains_as_two_devices_do(
    sg_context):
  """``synth_delay = 1`` on one device is the two-device dni system: the
  same networks and synthesizers after the same episodes. So one device
  draws that system's learning curves."""
  tn = dataclasses.replace(_system("dni", T=2), sg_context=sg_context)
  opt = _opt()
  state = _init(tn, opt)
  batches = lambda t: _batch(tn, seed=t)  # noqa: E731
  got, _ = _two_devices(tn, opt, state, batches, 4)
  stale = dataclasses.replace(tn, synth_delay=1)
  want = state.replace(seen_by_a=(tn_lib.b_side(tn, state),))
  step = _step(stale, opt)
  for t in range(4):
    want, _ = step(want, batches(t))
  _assert_close((got.a_params, got.b_params, got.synth_params),
                (want.a_params, want.b_params, want.synth_params))


def test_a_stale_interface_in_a_comparison_applies_to_dni_alone(tmp_path):
  config = _config(method="locked,dni", num_steps=2, eval_every=2,
                   checkpoint_every=2, **{"dni.synth_delay": 1})
  summaries = train.train_and_evaluate(config, tmp_path)
  assert set(summaries) == {"locked", "dni"}
  built = {m: experiment.build_two_networks(tiny.override(config, method=m))
           for m in summaries}
  assert built["dni"].synth_delay == 1 and built["locked"].synth_delay == 0


def test_two_devices_refuse_a_stale_interface_of_their_own():
  tn = dataclasses.replace(_system("dni", T=2), synth_delay=1)
  with pytest.raises(ConfigError, match="synth_delay=1: .* set synth_delay=0"):
    parallel_tn.TwoDeviceSystem(tn, _opt(), (None, None), None)


def test_the_per_seed_table_sets_each_seed_against_locked_s_same_seed(
    tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  from experiments import two_networks_table  # pylint: disable=g-import-not-at-top
  # (root, method, seed): (A's curve, B's curve), evaluated at 100, 200, ...
  curves = {("r1", "locked", 0): ([0.5, 0.2, 0.1, 0.1], [0.5, 0.4, 0.3, 0.3]),
            ("r1", "locked", 1): ([0.5, 0.3, 0.1, 0.1], [0.5, 0.3, 0.2, 0.2]),
            ("r1", "dni", 0): ([0.3, 0.1, 0.1, 0.1], [0.5, 0.4, 0.31, 0.31]),
            ("r2", "dni", 1): ([0.5, 0.2, 0.1, 0.1], [0.5, 0.4, 0.25, 0.25]),
            ("r2", "dni", 2): ([0.1, 0.1, 0.1, 0.1], [0.5, 0.4, 0.2, 0.2]),
            ("r1", "locked", 3): ([0.5, 0.2, 0.1, 0.1], [0.5, 0.4, 0.3, 0.3]),
            ("r2", "dni", 3): ([0.5, 0.5, 0.5, 0.5], [0.5, 0.4, 0.3, 0.3])}
  for (root, method, seed), (a, b) in curves.items():
    folder = tmp_path / root / method / f"seed={seed}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(
        {"method": method, "seed": seed, "two_networks": {"T": 4}}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"step": 100 * (i + 1), "split": "test", "a_error": x,
                    "b_error": y, "b_majority_error": 0.6}) + "\n"
        for i, (x, y) in enumerate(zip(a, b))))
  roots = [str(tmp_path / "r1"), str(tmp_path / "r2")]  # seeds pooled
  rows = two_networks_table.per_seed(roots, last=2).splitlines()
  # A's target is 1.1 × locked's final A error (0.11): locked reaches it at
  # step 300 on both seeds; dni's seed 0 at 200, seed 1 at 300.
  assert rows[2] == "| 4 | dni | 0 | 10.00 | 31.00 | +1.00 | 200 | 0.67 |"
  assert rows[3] == "| 4 | dni | 1 | 10.00 | 25.00 | +5.00 | 300 | 1.00 |"
  # no locked run of seed 2: its own figures, nothing to set them against
  assert rows[4] == "| 4 | dni | 2 | 10.00 | 20.00 | — | 100 | — |"
  # never reaches A's target: a miss of the claim, left out of the mean
  assert rows[5] == ("| 4 | dni | 3 | 50.00 | 30.00 | +0.00 | not reached "
                     "| not reached |")
  # gaps 1, 5 and 0: mean 2, sd 2.65, t(0.975, 2) = 4.303 → 2 ± 6.57;
  # ratios 0.67 and 1: mean 0.83, sd 0.24, t(0.975, 1) = 12.706 → ± 2.12
  assert rows[7] == (
      "- T = 4, dni: B − locked B mean 2.00, sd 2.65, 95 % interval -4.57 "
      "to 8.57 (n = 3), 1 of 3 over 2 points; A's steps ÷ locked's mean "
      "0.83, sd 0.24, 95 % interval -1.28 to 2.95 (n = 2), 3 of 3 over 0.5 "
      "(1 never reached A's target).")
  # the pooled main table counts four dni seeds
  assert "| 4 | dni | 4 |" in two_networks_table.table(roots, last=2)
  # a seed run twice (here a copy in a third root) is named, not averaged
  shutil.copytree(tmp_path / "r1" / "dni", tmp_path / "r3" / "dni")
  with pytest.raises(ValueError, match="at seed 0"):
    two_networks_table.per_seed(roots + [str(tmp_path / "r3")])
