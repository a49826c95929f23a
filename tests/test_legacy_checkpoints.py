"""Workdirs saved by older code.

``tests/legacy_workdirs`` holds three tiny runs saved before the
hyper-parameters lived in the train state (3 steps each): a binary-addition
cDNI run, its two-member vmapped sweep (learning rate 3e-3) and a Copy dni
run. Today's state keeps λ (``sg_scale``) and the learning rates (optax's
``inject_hyperparams``) in it; those checkpoints have neither. A fourth,
``copy_lambda``, is a Copy dni run saved with λ in the state but before the
recurrent state held a target network (``synth_target_params``). A fifth,
``two_networks``, is a two-network dni run saved before its state could
hold a stale interface (``seen_by_a``). Three hold a stale interface
(``dni.synth_delay=2``) saved while its history was a queue of ``d``
copies, before the ring (``dni_jax.core.stale``), all binary-addition cDNI:
``ff_stale``, a two-member sweep; ``ff_stale_legacy``, a run saved before
the hyper-parameters lived in the state as well; ``pipe_stale``, a run
pipelined over two devices whose second device holds no synthesizer (its
queue: ``d`` empty entries). ``uninterrupted.json`` holds the training
records of steps 4 and 5 of each of those three run on to 5 steps by the
code that saved it, without a stop. They must resume, their arrays intact.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from dni_jax.training import checkpoint
from dni_jax.training import feedforward
from dni_jax.training import workdir as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
LEGACY = ROOT / "tests" / "legacy_workdirs"


def _copy(name, tmp_path):
  target = tmp_path / name
  shutil.copytree(LEGACY / name, target)
  return target


def _config(workdir):
  with open(workdir / "config.json") as f:
    return ml_collections.ConfigDict(json.load(f))


def test_an_older_checkpoint_restores_its_arrays_and_takes_the_configs_hyperparameters(
    tmp_path):
  workdir = _copy("ff", tmp_path)
  config = _config(workdir)
  state = feedforward.make_loop(config).init()
  raw = ocp.StandardCheckpointer().restore(
      str(workdir / "checkpoints" / "3" / "default"))
  restored, step = checkpoint.Checkpointer(
      str(workdir / "checkpoints")).restore_or(state)
  assert step == 3
  assert int(restored.step) == 3
  # Every array of the old checkpoint, in its place.
  for field in ("stage_params", "synth_params", "stage_state", "synth_state"):
    old = jax.tree_util.tree_leaves(raw[field])
    new = jax.tree_util.tree_leaves(getattr(restored, field))
    assert len(old) == len(new)
    assert old or field.endswith("_state")  # (no BatchNorm here)
    for a, b in zip(old, new):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for old_opt, new_opt in zip(raw["stage_opt_state"],
                              restored.stage_opt_state):
    assert isinstance(new_opt, optax.InjectStatefulHyperparamsState)
    old_leaves = jax.tree_util.tree_leaves(old_opt)
    new_leaves = jax.tree_util.tree_leaves(new_opt.inner_state)
    assert len(old_leaves) == len(new_leaves)
    for a, b in zip(old_leaves, new_leaves):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(new_opt.hyperparams["learning_rate"],
                               config.opt.learning_rate, rtol=1e-6)
  np.testing.assert_allclose(restored.sg_scale, config.dni.sg_scale)


def test_the_older_layout_drops_exactly_the_hyperparameters(tmp_path):
  workdir = _copy("ff", tmp_path)
  state = feedforward.make_loop(_config(workdir)).init()
  legacy = checkpoint.legacy_layout(state)
  leaves = jax.tree_util.tree_leaves(state)
  kept = jax.tree_util.tree_leaves(legacy)
  # Per optimiser state: the injected learning rate and its count; and λ.
  opt_states = (len(state.stage_opt_state) + len(state.synth_opt_state)
                + len(state.input_opt_state))
  assert len(leaves) - len(kept) == 2 * opt_states + 1
  rebuilt = checkpoint.upgrade(state, kept)
  for a, b in zip(leaves, jax.tree_util.tree_leaves(rebuilt)):
    assert a is b
  with pytest.raises(ValueError, match="older layout"):
    checkpoint.upgrade(state, kept[:-1])


def _run(module, workdir, *flags):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  if "--config.parallel.num_devices=2" in flags:
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  return subprocess.run(
      [sys.executable, "-m", module, f"--workdir={workdir}", *flags],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _records(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


_STALE = ["--config=configs/binary_addition.py", "--config.method=cdni",
          "--config.model.hidden=(8,8)", "--config.dni.synth_delay=2",
          "--config.log_every=1"]


@pytest.mark.parametrize("name, module, flags", [
    ("ff", "experiments.main",
     ["--config=configs/binary_addition.py", "--config.method=cdni",
      "--config.model.hidden=(8,8)"]),
    ("sweep", "experiments.sweep",
     ["--config=configs/binary_addition.py", "--seeds=2",
      "--config.method=dni", "--config.model.hidden=(8,8)",
      "--config.opt.learning_rate=3e-3"]),
    ("copy", "experiments.main",
     ["--config=configs/copy.py", "--config.method=dni",
      "--config.model.width=8"]),
    ("copy_lambda", "experiments.main",
     ["--config=configs/copy.py", "--config.method=dni",
      "--config.model.width=8"]),
    ("ff_stale", "experiments.sweep", _STALE + ["--seeds=2"]),
    ("ff_stale_legacy", "experiments.main", _STALE),
    ("pipe_stale", "experiments.main",
     _STALE + ["--config.parallel.num_devices=2"]),
    ("two_networks", "experiments.main",
     ["--config=configs/two_networks.py", "--config.method=dni",
      "--config.model.width=8", "--config.two_networks.b_width=8",
      "--config.two_networks.message_width=3", "--config.two_networks.T=2",
      "--config.batch_size=4", "--config.eval_batch_size=16",
      "--config.checkpoint_every=3", "--config.eval_every=3",
      "--config.log_every=1"]),
])
def test_an_older_workdir_resumes(tmp_path, name, module, flags):
  workdir = _copy(name, tmp_path)
  sweep = module == "experiments.sweep"
  runs = [workdir / "seed=0", workdir / "seed=1"] if sweep else [workdir]
  before = [_records(r / "metrics.jsonl") for r in runs]
  done = _run(module, workdir, *flags, "--config.num_steps=5")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "Traceback" not in done.stderr
  for r, old in zip(runs, before):
    after = _records(r / "metrics.jsonl")
    assert after[:len(old)] == old  # what was saved is kept
    assert max(rec["step"] for rec in after) == 5
    assert all(np.isfinite(v) for rec in after for v in rec.values()
               if isinstance(v, float))
    assert any("loss" in rec or "a_loss" in rec for rec in after[len(old):])
    assert "5" in os.listdir(r / "checkpoints")
  assert ("resuming 2 members from step 3" if sweep
          else "resuming from step 3") in done.stdout
  uninterrupted = json.loads((LEGACY / "uninterrupted.json").read_text())
  if name in uninterrupted:  # as if the run had never stopped
    expected = uninterrupted[name]
    for r in runs:
      got = [rec for rec in _records(r / "metrics.jsonl")
             if rec["split"] == "train" and rec["step"] > 3]
      assert [g["step"] for g in got] == [4, 5]
      for g, e in zip(got, expected[r.name if sweep else "."]):
        assert g.keys() == e.keys()
        np.testing.assert_allclose([g[k] for k in e if k != "split"],
                                   [e[k] for k in e if k != "split"],
                                   rtol=1e-4, atol=1e-7)


def test_a_stale_history_saved_as_a_queue_restores_as_the_ring(tmp_path):
  """Each slot of the queue lands where the ring reads it: at step 3 with
  d = 2 the stages' synthesizers are the queue's oldest (those of step 1),
  and the ring holds both slots unchanged."""
  from dni_jax.core import stale  # pylint: disable=g-import-not-at-top
  run = _copy("ff_stale", tmp_path) / "seed=1"
  config = _config(run)
  state = feedforward.make_loop(config).init()
  assert stale.delay(state.synth_history) == 2
  raw = ocp.StandardCheckpointer().restore(
      str(run / "checkpoints" / "3" / "default"))
  restored, step = checkpoint.Checkpointer(
      str(run / "checkpoints")).restore_or(state)
  assert step == 3 and int(restored.step) == 3
  queue = raw["synth_history"]
  assert len(queue) == 2
  ring = restored.synth_history
  for slot, saved in zip(stale.to_queue(ring, restored.step), queue):
    new, old = jax.tree_util.tree_leaves(slot), jax.tree_util.tree_leaves(saved)
    assert len(new) == len(old) > 0
    for a, b in zip(new, old):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for a, b in zip(jax.tree_util.tree_leaves(stale.oldest(ring)),
                  jax.tree_util.tree_leaves(queue[0])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The ring is not the queue stacked as it was: at step 3 the oldest
  # sits in slot 1.
  for a, b in zip(jax.tree_util.tree_leaves(ring["ring"]),
                  jax.tree_util.tree_leaves(queue[0])):
    np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b))


def test_a_nested_state_of_the_older_layout_restores(tmp_path):
  """A pipeline's checkpoint nests train states (one per device group):
  each loses its λ and its optimisers' hyper-parameters in the older
  layout, at any depth."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from typing import Any  # pylint: disable=g-import-not-at-top
  import flax.struct  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import dni_jax as dni  # pylint: disable=g-import-not-at-top
  from dni_jax.core.train_state import TrainState  # pylint: disable=g-import-not-at-top
  import tiny  # pylint: disable=g-import-not-at-top

  tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
  net = tiny.network()
  saved = tiny.init(net, "dni", opt=dni.Optimizers(tx, tx))
  saved = saved.replace(stage_params=tiny.randomize(saved.stage_params, 3))
  # The older code's TrainState: the same fields but sg_scale.
  old_cls = flax.struct.dataclass(type("TrainState", (), {"__annotations__": {
      f.name: Any for f in dataclasses.fields(TrainState)
      if f.name != "sg_scale"}}))

  def older(state):
    layout = checkpoint.legacy_layout(state)
    return old_cls(**{f.name: getattr(layout, f.name)
                      for f in dataclasses.fields(old_cls)})
  on_disk = {"groups": (older(saved), older(saved)), "inbox": jnp.arange(3.)}
  checkpoint.Checkpointer(str(tmp_path)).save(7, on_disk)

  # This run's template: other values, λ 2 in the second group.
  fresh = tiny.init(net, "dni", seed=1, opt=dni.Optimizers(tx, tx))
  template = {"groups": (fresh, fresh.replace(sg_scale=jnp.float32(2.0))),
              "inbox": jnp.zeros(3)}
  restored, step = checkpoint.Checkpointer(str(tmp_path)).restore_or(template)
  assert step == 7
  for group, scale in zip(restored["groups"], (1.0, 2.0)):
    assert float(group.sg_scale) == scale  # this run's hyper-parameters
    for a, b in zip(jax.tree_util.tree_leaves(older(group)),
                    jax.tree_util.tree_leaves(older(saved))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(restored["inbox"], np.arange(3.))


@pytest.mark.parametrize("name", ["copy", "ff"])
def test_a_reader_rebuilds_a_run_saved_before_later_fields(tmp_path, name):
  """``experiments.evaluate`` on a run whose config.json lacks fields added
  since (the LSTM's forget_bias and peepholes, ...): they read as the
  values that behave as the code did then."""
  from dni_jax.training import evaluate  # pylint: disable=g-import-not-at-top
  run = _copy(name, tmp_path)
  saved = json.loads((run / "config.json").read_text())
  assert "forget_bias" not in saved["model"]
  config = workdir_lib.read_config(str(run))
  assert config.model.forget_bias == 0.0 and not config.model.peepholes
  (result,) = evaluate.evaluate_workdir(str(run)).values()
  assert result["step"] == 3


def test_read_defaults_are_the_base_configs():
  from configs import base  # pylint: disable=g-import-not-at-top
  flat = workdir_lib.config_fields(base.get_config())
  for key, value in workdir_lib.READ_DEFAULTS.items():
    assert workdir_lib.ADDED_FIELDS[key] is workdir_lib.ANY or callable(
        workdir_lib.ADDED_FIELDS[key])
    assert flat[key] == (list(value) if isinstance(value, tuple) else value)
