"""experiments.two_networks_fit: how much of B's gradient a synthesizer can
predict from what it reads, per message slot."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from dni_jax.core import interface
from dni_jax.core import losses
from dni_jax.core import two_networks as tn_lib
from dni_jax.data import digit_stream
from dni_jax.training import experiment
from dni_jax.training import families
from dni_jax.training import train
from dni_jax.training import workdir as workdir_lib
from dni_jax.training.checkpoint import Checkpointer
from experiments import two_networks_fit
from test_train import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_fit_explains_a_function_of_its_inputs_and_not_noise():
  """Slot 0's target is a function of its inputs, slot 1's independent of
  them: the held-out R² is high for the one and about zero for the other."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 1200, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 2))
  noise = jax.random.normal(jax.random.PRNGKey(2), (1200, 2))
  y = jnp.stack([jnp.tanh(x[0] @ w), noise])
  r2 = two_networks_fit._fit_slots(  # pylint: disable=protected-access
      x[:, :1000], y[:, :1000], x[:, 1000:], y[:, 1000:], hidden=(32,),
      steps=800, batch_size=100, learning_rate=1e-2)
  assert r2[0] > 0.9, r2
  assert -0.2 < r2[1] < 0.05, r2


def test_r_squared_is_zero_for_the_mean_and_one_for_the_target():
  t = jax.random.normal(jax.random.PRNGKey(0), (50, 4))
  assert abs(float(losses.r_squared(
      jnp.broadcast_to(t.mean(0), t.shape), t))) < 1e-6
  assert float(losses.r_squared(t, t)) == 1.0


def test_b_states_before_are_the_states_m_reads():
  """Slot w's B state is B's after the first w messages (slot 0: B's
  initial state)."""
  config = tiny("two_networks", method="dni")
  tn = experiment.build_two_networks(config)
  state = families.family_of(config).loop.make_loop(config).init()
  messages = jax.random.normal(jax.random.PRNGKey(3),
                               (tn.T, 5, tn.message_width))
  got = tn_lib.b_states_before(tn, state.b_params, messages)
  b = tn.core_b.initial_state(5)
  for w in range(tn.T):
    np.testing.assert_allclose(got[w], b, rtol=1e-6, atol=1e-6)
    b, _ = tn.core_b.apply(state.b_params, b, messages[w])


def test_the_run_s_own_fit_is_its_held_out_evaluation_and_nothing_is_written(
    tmp_path):
  config = tiny("two_networks", method="dni")
  config.two_networks.sg_context = "label"
  train.train_and_evaluate(config, tmp_path)
  before = sorted(os.listdir(tmp_path))
  got = two_networks_fit.measure(
      str(tmp_path), episodes=64, eval_episodes=32, steps=5, batch_size=16,
      learning_rate=1e-3, hidden=(8,), contexts=("label", "b_state_label"))
  assert sorted(os.listdir(tmp_path)) == before
  tn = experiment.build_two_networks(workdir_lib.read_config(tmp_path))
  assert set(got["fits"]) == {"label", "b_state_label"}
  assert all(len(v) == tn.T for v in [got["own"], got["target_norm"],
                                       *got["fits"].values()])
  # the run's own M, scored again by hand on the same held-out episodes
  loop = families.family_of(config).loop.make_loop(config)
  checkpointer = Checkpointer(os.path.join(tmp_path, "checkpoints"))
  state = checkpointer.restore_at(got["step"], loop.init())
  checkpointer.close()
  _, held_out = experiment.load_digit_streams(config)
  batch = digit_stream.episodes(held_out, jax.random.PRNGKey(2), 32, tn.T)
  fit = tn_lib.evaluate(tn, state.a_params, state.b_params, batch,
                        interface.state_of(state))
  np.testing.assert_allclose(
      got["own"], [fit[f"sg_r2_slot{w}"] for w in range(tn.T)], rtol=1e-4)


def test_the_command_prints_a_row_per_context_and_refuses_other_runs(
    tmp_path):
  run = tmp_path / "tn"
  train.train_and_evaluate(tiny("two_networks", method="locked"), run)
  done = subprocess.run(
      [sys.executable, "-m", "experiments.two_networks_fit", str(run),
       "--episodes=64", "--eval_episodes=32", "--steps=3",
       "--batch_size=16", "--hidden=8", "--contexts=none,label"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "reads none" in done.stdout and "reads label" in done.stdout
  assert "own M" not in done.stdout  # a locked run has no synthesizer
  other = tmp_path / "copy"
  train.train_and_evaluate(tiny("copy", method="bptt", unroll=3), other)
  for args, says in (([str(other)], "not of the two-network system"),
                     ([str(run), "--contexts=label,slot"], "unknown slot")):
    done = subprocess.run(
        [sys.executable, "-m", "experiments.two_networks_fit", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("error: ") and says in done.stderr
    assert "Traceback" not in done.stderr
