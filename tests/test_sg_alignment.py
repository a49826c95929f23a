"""dni_jax.core.sg_alignment against plain jax.grad, and its command."""

import functools
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dni_jax.core import losses
from dni_jax.core import offline_fit
from dni_jax.core import sg_alignment
from dni_jax.core import tbptt
from dni_jax.training import train
from test_tbptt import B, H, T, _batch, _core, _cut_cell_state, _loss, \
    _manual_unroll, _setup
from test_train import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATER = 2  # the horizon: windows after window 0


def _flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def _batches():
  joined = _batch(5, steps=(1 + LATER) * T)
  return jax.tree_util.tree_map(
      lambda x: jnp.stack([x[:, k * T:(k + 1) * T] for k in range(1 + LATER)]),
      joined)


@pytest.mark.parametrize("cell,sg_on", [("lstm", "h"), ("lstm", "ch"),
                                        ("rnn", "h")])
def test_the_future_gradients_are_those_of_the_losses_over_the_horizon(
    cell, sg_on):
  """``g_win + g_all`` is the gradient, w.r.t. the parameters as window 0
  uses them, of the losses of window 0 and the next windows (full BPTT
  across them, the later windows at fixed parameters); ``g_win + g_fut`` the
  same with an LSTM's ``c`` cut at window 0's end under ``sg_on="h"``;
  ``g_win + g_fix`` the same with window k's loss weighted by λ^(k−1) and
  ``c`` cut at every boundary; ``future_B``, ``fixed_B`` the per-example
  gradients of those later losses w.r.t. ``h(s_T)``."""
  core = _core(cell, sg_on)
  lam = 0.3
  rdni, _, state = _setup("dni", cell, sg_scale=lam, sg_on=sg_on)
  batches = _batches()
  fixed = state.params
  cut = cell == "lstm" and sg_on == "h"

  def later_loss(s, cut_every, discount):
    total = 0.0
    for k in range(1, 1 + LATER):
      if cut_every:
        s = _cut_cell_state(s)
      later = jax.tree_util.tree_map(lambda x, k=k: x[k], batches)
      s, _, logits = _manual_unroll(core, fixed, s, later["inputs"])
      total = total + discount ** (k - 1) * _loss(logits, later)[0].mean()
    return total

  def horizon_loss(p, cut_first, cut_every=False, discount=1.0):
    first = jax.tree_util.tree_map(lambda x: x[0], batches)
    s, _, logits = _manual_unroll(core, p, state.carry, first["inputs"])
    if cut_first:
      s = _cut_cell_state(s)
    return (_loss(logits, first)[0].mean() +
            later_loss(s, cut_every, discount))

  got, end = sg_alignment.gradients(rdni, state.params, state.carry, batches,
                                     state.synth_params, state.synth_state,
                                     state.sg_scale)
  whole = _flat(jax.grad(horizon_loss)(state.params, False))
  np.testing.assert_allclose(got["g_win"] + got["g_all"], whole, rtol=1e-4,
                             atol=1e-6)
  through_sg = _flat(jax.grad(horizon_loss)(state.params, cut))
  np.testing.assert_allclose(got["g_win"] + got["g_fut"], through_sg,
                             rtol=1e-4, atol=1e-6)
  fix = _flat(jax.grad(horizon_loss)(state.params, cut, cut, lam))
  np.testing.assert_allclose(got["g_win"] + got["g_fix"], fix, rtol=1e-4,
                             atol=1e-6)
  if cut:  # c's share is real: the test can tell the two apart
    assert np.abs(whole - through_sg).max() > 1e-4
  else:
    np.testing.assert_allclose(got["g_fut"], got["g_all"], rtol=1e-6)
  assert np.abs(through_sg - fix).max() > 1e-4  # the discount is real
  # Per example, on h(s_T): B times the gradient of the batch-mean losses.
  s_end, _, _ = _manual_unroll(core, fixed, state.carry,
                               batches["inputs"][0])
  h = (lambda s: s[:, H:]) if cut else (lambda s: s)
  for key, args in (("future_B", (False, 1.0)), ("fixed_B", (cut, lam))):
    expected = B * h(jax.grad(later_loss)(s_end, *args))
    np.testing.assert_allclose(got[key], expected, rtol=1e-4, atol=1e-6)
  # The state after window 0, where the next probe starts, and the whole
  # state the offline fits may read beside M's input.
  np.testing.assert_allclose(end, s_end, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got["state_B"], end)


@pytest.mark.parametrize("sg_on", ["h", "ch", "h_ch"])
def test_window_plus_synthetic_is_the_update_dni_applies(sg_on):
  rdni, _, state = _setup("dni", sg_scale=0.3, sg_on=sg_on)
  batches = _batches()
  first = jax.tree_util.tree_map(lambda x: x[0], batches)
  got, _ = sg_alignment.gradients(rdni, state.params, state.carry, batches,
                                  state.synth_params, state.synth_state,
                                  state.sg_scale)
  applied, _, _, _ = tbptt.window_grads(
      rdni, state.params, state.carry, first, state.synth_params,
      state.synth_state, state.sg_scale)
  np.testing.assert_allclose(got["g_win"] + got["g_syn"], _flat(applied),
                             rtol=1e-5, atol=1e-7)
  assert np.linalg.norm(got["g_syn"]) > 1e-4  # a synthesizer that is not zero
  figures = sg_alignment.compare(got)
  for k in ("cos_syn_fut", "cos_syn_all", "cos_syn_fix", "cos_bptt",
            "cos_dni", "cos_state", "cos_state_fix", "cos_state_own"):
    assert -1.0 - 1e-6 <= float(figures[k]) <= 1.0 + 1e-6


def test_a_synthetic_gradient_equal_to_the_future_one_is_aligned():
  """Replace M's prediction by the exact future gradient: cosine 1, and DNI's
  update is the horizon's (under ``sg_on="ch"``, where nothing else is cut)."""
  rdni, _, state = _setup("dni", sg_scale=1.0, sg_on="ch")
  batches = _batches()
  got, _ = sg_alignment.gradients(rdni, state.params, state.carry, batches,
                                  state.synth_params, state.synth_state)
  exact = dict(got, g_syn=got["g_fut"], g_fix=got["g_fut"],
               sg_B=got["future_B"], fixed_B=got["future_B"])
  figures = sg_alignment.compare(exact)
  for k in ("cos_syn_fut", "cos_syn_all", "cos_syn_fix", "cos_dni",
            "cos_state", "cos_state_fix"):
    np.testing.assert_allclose(figures[k], 1.0, rtol=1e-5)
  assert float(figures["cos_bptt"]) < 1.0 - 1e-4
  # And the real, untrained synthesizer here is not.
  assert float(sg_alignment.compare(got)["cos_syn_fut"]) < 0.999


def test_bptt_has_no_synthetic_part():
  rdni, _, state = _setup("bptt")
  got, _ = sg_alignment.gradients(rdni, state.params, state.carry, _batches())
  assert not np.any(got["g_syn"])
  assert np.linalg.norm(got["g_fut"]) > 0


def test_the_offline_fit_finds_a_linear_target_and_not_noise():
  kx, kw, kn = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (600, 8))
  w = jax.random.normal(kw, (8, 5))
  y = x @ w + 2.0
  noise = jax.random.normal(kn, (600, 5))
  fit = sg_alignment.held_out_fit(x[:500], y[:500], x[500:], y[500:],
                                  0.1 * y[:500], 0.1 * y[500:])
  np.testing.assert_allclose(fit["r2_linear"], 1.0, atol=1e-3)
  np.testing.assert_allclose(fit["r2_own"], 1.0, atol=1e-4)  # λ·M rescaled
  fit = sg_alignment.held_out_fit(x[:500], noise[:500], x[500:], noise[500:],
                                  -y[:500], -y[500:])
  assert float(fit["r2_linear"]) < 0.05
  assert float(fit["r2_own"]) < 0.05


def test_the_mlp_fit_finds_a_nonlinear_target_that_no_linear_map_does():
  kx, kw, kn = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (3000, 8))
  y = jnp.tanh(x @ jax.random.normal(kw, (8, 5))) * jnp.sin(x[:, :5])
  noise = jax.random.normal(kn, (3000, 5))
  kwargs = {"hidden": (64, 64), "steps": 2000, "batch_size": 256}
  assert float(sg_alignment.held_out_fit(
      x[:2500], y[:2500], x[2500:], y[2500:])["r2_linear"]) < 0.05
  assert sg_alignment.held_out_mlp_fit(
      x[:2500], 1e-3 * y[:2500], x[2500:], 1e-3 * y[2500:], **kwargs) > 0.8
  assert abs(sg_alignment.held_out_mlp_fit(
      x[:2500], noise[:2500], x[2500:], noise[2500:], **kwargs)) < 0.05


def test_the_online_fit_learns_a_still_stream_at_a_fast_rate_only():
  """One Adam step per window, from zero: a fast rate finds a stationary
  linear target, a slow one is still near its start (R² of 0 for a
  zero-mean target)."""
  kx, kw = jax.random.split(jax.random.PRNGKey(3))
  x = jax.random.normal(kx, (500, 16, 6))
  y = x @ jax.random.normal(kw, (6, 3))
  weights, biases = sg_alignment.online_linear_fit(x[:400], y[:400],
                                                   [3e-2, 1e-6], clip_norm=1.0)
  xe, ye = x[400:].reshape(-1, 6), y[400:].reshape(-1, 3)
  r2 = [float(losses.r_squared(xe @ w + b, ye))
        for w, b in zip(weights, biases)]
  assert r2[0] > 0.95, r2
  assert abs(r2[1]) < 0.01, r2


def test_the_online_fit_takes_adam_steps_in_stream_order_with_clipping():
  """Two windows by hand: clip each window's gradient to the global norm,
  then Adam, from zero."""
  kx, ky = jax.random.split(jax.random.PRNGKey(4))
  x = jax.random.normal(kx, (2, 5, 3))
  y = 10.0 * jax.random.normal(ky, (2, 5, 2))  # gradients well above 0.5
  weights, biases = sg_alignment.online_linear_fit(x, y, [1e-2], clip_norm=0.5)
  tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-2))
  p = (jnp.zeros((3, 2)), jnp.zeros(2))
  state = tx.init(p)
  for w in range(2):
    g = jax.grad(lambda q: jnp.mean(jnp.sum(jnp.square(
        x[w] @ q[0] + q[1] - y[w]), -1)))(p)
    u, state = tx.update(g, state)
    p = optax.apply_updates(p, u)
  np.testing.assert_allclose(weights[0], p[0], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(biases[0], p[1], rtol=1e-5, atol=1e-7)


def test_early_stopping_scores_the_parameters_of_the_lowest_validation_loss():
  """The minibatches are the same with and without validation, so the fit
  stopped early scores as the plain fit of as many steps as the check
  with the lowest validation loss."""
  kx, kw, kn = jax.random.split(jax.random.PRNGKey(1), 3)
  x = jax.random.normal(kx, (700, 4))
  y = jnp.tanh(x @ jax.random.normal(kw, (4, 2))) + jax.random.normal(
      kn, (700, 2))  # learnable, and noisy enough to overfit 200 examples
  fit = functools.partial(offline_fit.mlp_r2, key=jax.random.PRNGKey(2),
                          hidden=(64, 64), batch_size=50, learning_rate=1e-3)
  train, val, held = slice(0, 200), slice(200, 300), slice(300, None)
  stopped = float(fit(x[train], y[train], x[held], y[held], steps=300,
                      x_val=x[val], y_val=y[val], check_every=20))
  # The step count traced, not static: one compile per evaluation set, not
  # one per fit.
  fit_k = jax.jit(lambda x_eval, y_eval, k: fit(
      x[train], y[train], x_eval, y_eval, steps=k))
  plain = [(float(fit_k(x[val], y[val], k)), float(fit_k(x[held], y[held], k)))
           for k in range(20, 320, 20)]
  best = max(range(len(plain)), key=lambda i: plain[i][0])  # R² ~ -loss
  assert 0 < best < len(plain) - 1, plain  # neither the first nor the last
  np.testing.assert_allclose(stopped, plain[best][1], rtol=1e-4, atol=1e-5)
  assert stopped != plain[-1][1]


def test_early_stopping_keeps_an_unpredictable_target_near_zero():
  """Fitted long on few examples, an MLP learns noise by heart; stopped
  where the examples kept out of the fit say, it scores about the best
  constant's R² of 0."""
  kx, ky = jax.random.split(jax.random.PRNGKey(1))
  x = jax.random.normal(kx, (1400, 8))
  y = jax.random.normal(ky, (1400, 4))
  fit = functools.partial(offline_fit.mlp_r2, key=jax.random.PRNGKey(2),
                          hidden=(128, 128), steps=1500, batch_size=100,
                          learning_rate=1e-2)
  overfitted = float(fit(x[:300], y[:300], x[400:], y[400:]))
  stopped = float(fit(x[:300], y[:300], x[400:], y[400:], x_val=x[300:400],
                      y_val=y[300:400]))
  assert overfitted < -0.3, overfitted
  assert -0.05 < stopped <= 0.02, stopped


def test_the_probes_read_the_run_s_own_stream(tmp_path):
  """The probed windows are the ones training would see next."""
  from dni_jax.training import evaluate  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(tiny("copy", method="dni", unroll=3), tmp_path)
  _, task, data, _, _, state, step = evaluate.restore_run(str(tmp_path))
  assert int(state.step) == step > 0
  got = sg_alignment.stream_windows(task, data, state.task, state.step + 3, 2)
  for k in range(2):
    expected = task.window(state.task, data, state.step + 3 + k)
    for name in expected:
      np.testing.assert_array_equal(got[name][k], expected[name])


def _run(folder, *flags):
  return subprocess.run(
      [sys.executable, "-m", "experiments.sg_alignment", str(folder),
       *flags], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("method,sg_state", [("dni", "h"), ("dni", "ch"),
                                             ("bptt", "h")])
def test_the_command_reads_a_run_and_writes_nothing(tmp_path, method,
                                                    sg_state):
  config = tiny("copy", method=method, unroll=3)
  config.dni.sg_state = sg_state
  if method == "bptt":  # a run without Adam's moments
    config.opt.name = "momentum"
  train.train_and_evaluate(config, tmp_path)
  before = sorted(os.listdir(tmp_path))
  mlp = ["--probes=10", "--mlp_hidden=8", "--mlp_steps=20",
         "--online_lrs=1e-3,1e-2"]
  done = _run(tmp_path, "--horizon=2",
              *(mlp if method == "dni" else ["--probes=3"]))
  assert done.returncode == 0, done.stderr[-2000:]
  assert "truncated BPTT's cosine" in done.stdout
  assert "held-out R²" in done.stdout
  assert "nan" not in done.stdout.lower()
  assert ("synthetic vs future gradient" in done.stdout) == (method == "dni")
  assert ("as steps of Adam" in done.stdout) == (method == "dni")
  assert ("synthetic vs future cosine" in done.stdout) == (method == "dni")
  # The report names the part of the end state the synthetic gradient
  # sits on.
  on = "h_T" if sg_state == "h" else "(c_T, h_T)"
  assert (f"through {on}): cosine" in done.stdout) == (method == "dni")
  # The gradient through the whole state is another figure only under h.
  assert ("through the whole state (c, h): cosine" in done.stdout) == (
      method == "dni" and sg_state == "h")
  assert f"held-out R² (the last fifth of the probes) of ∂(future)/∂{on}" \
      in done.stdout
  # Under sg_state=h, where M reads h alone, the fits from the whole state
  # (c, h) too.
  assert ("from the whole state (c, h): linear" in done.stdout) == (
      sg_state == "h")
  assert ("an MLP 8 " in done.stdout) == (method == "dni")
  assert ("trained online on the first 8 probes" in done.stdout) == (
      method == "dni")
  assert sorted(os.listdir(tmp_path)) == before


def test_a_run_in_its_warm_up_is_probed_with_the_lambda_its_step_used(
    tmp_path):
  """Halfway through a λ warm-up (``dni.sg_warmup``) the synthetic gradient
  probed is half that of the same checkpoint read without a warm-up: the
  tool uses the λ the run's train step used, not the configured one."""
  config = tiny("copy", method="dni", unroll=3, num_steps=4)
  config.dni.sg_scale = 1.0
  config.dni.sg_warmup = 8
  train.train_and_evaluate(config, tmp_path / "warm")
  shutil.copytree(tmp_path / "warm", tmp_path / "plain")
  saved = json.loads((tmp_path / "plain" / "config.json").read_text())
  saved["dni"]["sg_warmup"] = 0
  (tmp_path / "plain" / "config.json").write_text(json.dumps(saved))
  norms = []
  for run in ("warm", "plain"):
    done = _run(tmp_path / run, "--probes=3", "--horizon=1")
    assert done.returncode == 0, done.stderr[-2000:]
    norms.append(float(re.search(r"norms per window: synthetic (\S+),",
                                 done.stdout).group(1)))
  assert norms[1] > 0
  assert norms[0] == pytest.approx(0.5 * norms[1], rel=2e-3)


def test_maps_fitted_at_one_checkpoint_are_scored_at_a_later_one(tmp_path):
  config = tiny("copy", method="dni", unroll=3)
  train.train_and_evaluate(config, tmp_path / "early")
  shutil.copytree(tmp_path / "early", tmp_path / "later")
  config.num_steps = 8
  train.train_and_evaluate(config, tmp_path / "later")
  train.train_and_evaluate(tiny("copy", method="bptt", unroll=3),
                           tmp_path / "bptt")
  done = _run(tmp_path / "early", "--probes=5", "--horizon=2",
              "--online_lrs=1e-3", f"--score_on={tmp_path / 'later'}")
  assert done.returncode == 0, done.stderr[-2000:]
  assert (f"at {tmp_path / 'later'} (step 8), held-out R² of M's fixed "
          "point: the linear map fitted at step 4") in done.stdout
  assert "the online maps fitted at step 4: lr 0.001" in done.stdout
  done = _run(tmp_path / "early", "--probes=5",
              f"--score_on={tmp_path / 'bptt'}")
  assert done.returncode == 1 and (
      "is not a later checkpoint of the run" in done.stderr
      and "method: 'bptt' -> 'dni'" in done.stderr), (
      done.stderr[-2000:])
  assert "Traceback" not in done.stderr


def test_a_feedforward_run_or_a_bad_flag_is_one_error_line(tmp_path):
  train.train_and_evaluate(tiny("binary_addition", method="dni"), tmp_path)
  for flags, says in ((["--probes=2"], "no recurrent core"),
                      (["--horizon=0"], "--horizon=0"),
                      (["--probes=5", "--mlp_hidden=8"], "at least 10 probes"),
                      (["--probes=5", "--online_lrs=0"],
                       "positive learning rates")):
    done = _run(tmp_path, *flags)
    assert done.returncode == 1 and says in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_the_report_names_where_the_synthetic_gradient_sits_and_what_m_reads():
  from dni_jax.models import rnn  # pylint: disable=g-import-not-at-top
  cores = [rnn.RecurrentCore(cell=c, sg_on=on) for c, on in (
      ("lstm", "h"), ("lstm", "ch"), ("lstm", "h_ch"), ("rnn", "h"),
      ("rnn", "ch"))]
  assert [sg_alignment.part_names(core) for core in cores] == [
      ("h_T", "h_T"), ("(c_T, h_T)", "c_T, h_T"), ("(c_T, h_T)", "h_T"),
      ("h_T", "h_T"), ("h_T", "h_T")]


def test_adam_scale_is_the_step_size_of_adams_first_update():
  """After one update, optax.adam's step is ``−lr·g·adam_scale``."""
  params = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array([3.0])}
  grad = {"w": jnp.array([0.1, -3.0, 1e-4]), "b": jnp.array([-0.2])}
  tx = optax.inject_hyperparams(lambda learning_rate: optax.chain(
      optax.clip_by_global_norm(100.0), optax.adam(learning_rate)))(
          learning_rate=0.01)
  state = tx.init(params)
  assert sg_alignment.adam_scale(optax.sgd(0.1).init(params)) is None
  update, state = tx.update(grad, state, params)
  np.testing.assert_allclose(
      _flat(update), -0.01 * _flat(grad) * sg_alignment.adam_scale(state),
      rtol=1e-5)


def test_scaled_figures_are_those_of_the_scaled_gradients():
  rng = np.random.default_rng(0)
  grads = {k: jnp.asarray(rng.normal(size=20), jnp.float32)
           for k in ("g_win", "g_syn", "g_fut", "g_all", "g_fix")}
  grads.update({k: jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
                for k in ("sg_B", "future_B", "fixed_B")})
  plain = sg_alignment.compare(grads)
  assert not any(k.startswith("adam_") for k in plain)
  # A uniform step size leaves every direction as it was.
  uniform = sg_alignment.compare(grads, jnp.full((20,), 3.0))
  for k in ("cos_syn_fut", "cos_bptt", "cos_dni"):
    np.testing.assert_allclose(uniform["adam_" + k], plain[k], rtol=1e-5)
  # The stream's own part: a prediction equal to the future gradient plus
  # any vector shared by every stream is fully aligned.
  shared = dict(grads, sg_B=grads["future_B"] + jnp.array([5.0, -2, 0, 1]))
  own = sg_alignment.compare(shared)
  np.testing.assert_allclose(own["cos_state_own"], 1.0, rtol=1e-5)
  assert float(own["cos_state"]) < 0.9
  one = {k: (v[:1] if k.endswith("_B") else v) for k, v in grads.items()}
  assert np.isnan(sg_alignment.compare(one)["cos_state_own"])
  for k in ("norm_syn", "norm_fut", "norm_win"):
    np.testing.assert_allclose(uniform["adam_" + k], 3.0 * plain[k],
                               rtol=1e-5)
  scale = jnp.asarray(rng.uniform(0.01, 100.0, size=20), jnp.float32)
  got = sg_alignment.compare(grads, scale)
  g = {k: np.asarray(v, np.float64) * np.asarray(scale, np.float64)
       for k, v in grads.items() if k.startswith("g_")}

  def cos(a, b):
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)
  np.testing.assert_allclose(got["adam_cos_syn_fut"],
                             cos(g["g_syn"], g["g_fut"]), rtol=1e-4)
  np.testing.assert_allclose(got["adam_cos_dni"], cos(
      g["g_win"] + g["g_syn"], g["g_win"] + g["g_all"]), rtol=1e-4)
  np.testing.assert_allclose(got["adam_norm_syn"], np.linalg.norm(
      g["g_syn"]), rtol=1e-4)
