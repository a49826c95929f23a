"""Sweeps: vmapped members equal their separate runs; grouping, resume, errors."""

import importlib
import os
import shutil

import jax
import numpy as np
import pytest

from dni_jax.errors import ConfigError
from dni_jax.errors import TrainingDivergedError
from dni_jax.errors import WorkdirError
from dni_jax.training import batching
from dni_jax.training import experiment
from dni_jax.training import families
from dni_jax.training import sweep
from dni_jax.training import train
from dni_jax.training.checkpoint import Checkpointer
from dni_jax.training.metrics_log import read_metrics
import test_sequence_data
import test_train
import tiny


def _config(name="binary_addition", **overrides):
  config = importlib.import_module(f"configs.{name}").get_config()
  config.model.update(hidden=(8, 8), width=16)
  config.dni.hidden = (4,)
  config.update(method="cdni", batch_size=8, eval_batch_size=64, num_steps=6,
                log_every=2, eval_every=3, checkpoint_every=3)
  return tiny.override(config, **overrides)


def _state(run_dir):
  ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"))
  restored = ckpt._manager.restore(ckpt.latest_step())  # pylint: disable=protected-access
  ckpt.close()
  return restored


def _assert_close_runs(a_dir, b_dir, rtol=1e-4, atol=1e-5, only_in_a=None):
  """``only_in_a``: metrics ``a``'s log has beside ``b``'s, with the value
  each must have wherever it is logged."""
  only_in_a = only_in_a or {}
  ra, rb = (read_metrics(os.path.join(d, "metrics.jsonl")) for d in (a_dir, b_dir))
  assert [(r["step"], r["split"]) for r in ra] == [(r["step"], r["split"])
                                                   for r in rb]
  for x, y in zip(ra, rb):
    for k in x:
      if k in only_in_a:
        assert k not in y and x[k] == only_in_a[k], (k, x[k])
      elif k not in ("step", "split"):
        np.testing.assert_allclose(x[k], y[k], rtol=rtol, atol=atol, err_msg=k)
  jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol),
      _state(a_dir), _state(b_dir))


@pytest.mark.parametrize("name,overrides,sweep_list", [
    ("binary_addition", {}, [{"seed": s} for s in range(3)]),
    ("binary_addition", {}, [{"opt.learning_rate": 1e-2, "seed": 1},
                             {"opt.learning_rate": 3e-3, "dni.sg_scale": 0.5}]),
    ("copy", {"method": "dni", "unroll": 3, "data.check_every": 2},
     [{"seed": 0}, {"seed": 1, "dni.sg_scale": 0.5,
                    "opt.synth_learning_rate": 3e-3}]),
    ("two_networks", {"method": "dni", "two_networks.T": 2,
                      "two_networks.message_width": 3,
                      "two_networks.b_width": 8},
     [{"seed": 0}, {"seed": 1, "dni.sg_scale": 0.5,
                    "opt.learning_rate": 3e-3}]),
    # A population over the update probability (the paper's Fig. 7): each
    # member's probabilities are traced; a member at 1 flips coins that
    # always come up heads, and its run is the ordinary one.
    ("binary_addition", {}, [{"dni.update_prob": 0.3, "seed": 0},
                             {"seed": 1},
                             {"dni.stage_update_probs": (1.0, 0.5, 0.2),
                              "name": "per_stage"}]),
    ("binary_addition", {"method": "cdni_unlocked"},
     [{"dni.update_prob": 0.4}, {"dni.update_prob": 1.0, "seed": 1}]),
])
def test_vmapped_members_equal_their_separate_runs(tmp_path, name, overrides,
                                                   sweep_list):
  config = _config(name, **overrides)
  members = sweep.members(config, sweep_list)
  assert len(sweep.groups(members)) == 1  # one vmapped program
  sweep.run_sweep(config, sweep_list, str(tmp_path / "sweep"))
  population = len({str(experiment.update_probs(m.config))
                    for m in members}) > 1
  for m in members:
    train.train_and_evaluate(m.config, str(tmp_path / "single" / m.name))
    at_one = population and experiment.update_probs(m.config) == 1.0
    _assert_close_runs(tmp_path / "sweep" / m.name,
                       tmp_path / "single" / m.name,
                       only_in_a={"update_rate": 1.0} if at_one else None)


# One feed-forward and one recurrent task: the two batched loops.
_EACH_LOOP = pytest.mark.parametrize("name,overrides", [
    ("binary_addition", {}),
    ("copy", {"method": "dni", "unroll": 3, "data.check_every": 2}),
])


def _early_stopping_sweep(tmp_path, **overrides):
  """A tiny PTB group with patience 2: the member at learning rate 1e-30
  never improves on its first valid bpc and stops at step 6, the other
  improves at every evaluation and trains on."""
  config = test_train.tiny(
      "ptb_char", method="dni", num_steps=12, patience=2,
      checkpoint_every=4, **{"data.dir": str(tmp_path / "ptb")}, **overrides)
  if not (tmp_path / "ptb").exists():
    (tmp_path / "ptb").mkdir()
    text = "".join(" ".join("abc_defg_hij") + "\n" for _ in range(30))
    test_sequence_data._write_ptb(tmp_path / "ptb", train=text,
                                  valid=text[:200], test=text[:300])
  return config, [{"seed": 0, "opt.learning_rate": 1e-30}, {"seed": 1}]


def test_members_stop_early_where_their_own_runs_stop(tmp_path, monkeypatch):
  """Under early stopping a vmapped member stops where its single run does,
  with the same records, checkpoint and summary, while the group trains the
  others on; killed after a member stopped, the rerun leaves that member
  as it is and resumes the rest."""
  config, sweep_list = _early_stopping_sweep(tmp_path)
  members = sweep.members(config, sweep_list)
  assert len(sweep.groups(members)) == 1  # one vmapped program
  summaries = sweep.run_sweep(config, sweep_list, str(tmp_path / "sweep"))
  assert {n: (s["step"], s["stopped_early"]) for n, s in summaries.items()
          } == {members[0].name: (6, True), members[1].name: (12, False)}
  for m in members:
    single = tmp_path / "single" / m.name
    alone = train.train_and_evaluate(m.config, str(single))[m.config.method]
    assert alone["stopped_early"] == summaries[m.name]["stopped_early"]
    _assert_close_runs(tmp_path / "sweep" / m.name, single)
    assert Checkpointer(single / "checkpoints").all_steps() == Checkpointer(
        tmp_path / "sweep" / m.name / "checkpoints").all_steps()

  # Killed at step 10, after the first member stopped: the rerun finds it
  # stopped and resumes the other from its checkpoint of step 8.
  real = sweep._GroupRecorder.flush_train  # pylint: disable=protected-access

  def crashing(self, step):
    if step == 10:
      raise KeyboardInterrupt("simulated interruption")
    real(self, step)

  monkeypatch.setattr(sweep._GroupRecorder, "flush_train", crashing)  # pylint: disable=protected-access
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(config, sweep_list, str(tmp_path / "killed"))
  monkeypatch.undo()
  stopped = tmp_path / "killed" / members[0].name
  before = read_metrics(stopped / "metrics.jsonl")
  again = sweep.run_sweep(config, sweep_list, str(tmp_path / "killed"))
  assert {n: s["step"] for n, s in again.items()} == {
      members[0].name: 6, members[1].name: 12}
  assert read_metrics(stopped / "metrics.jsonl") == before
  for m in members:
    _assert_close_runs(tmp_path / "killed" / m.name,
                       tmp_path / "sweep" / m.name)


def test_a_member_that_stopped_keeps_its_state_and_is_not_evaluated(
    tmp_path):
  config, sweep_list = _early_stopping_sweep(tmp_path)
  configs = [m.config for m in sweep.members(config, sweep_list)]
  loop = families.family_of(configs[0]).loop.make_batched_loop(configs)
  state, _ = loop.step(loop.init(), 0)
  before = jax.device_get(state)
  loop.freeze(0)
  state, _ = loop.step(state, 1)
  after = jax.device_get(state)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         batching.unstack(after, 0), batching.unstack(before, 0))
  assert int(batching.unstack(after, 1).step) == 2
  valid = loop.evaluate(state, 2)["valid"]["bpc"]
  assert np.isnan(valid[0]) and np.isfinite(valid[1])


def test_a_group_whose_members_all_stop_ends_there(tmp_path, capsys):
  config, _ = _early_stopping_sweep(tmp_path)
  sweep_list = [{"seed": s, "opt.learning_rate": 1e-30} for s in (0, 1)]
  summaries = sweep.run_sweep(config, sweep_list, str(tmp_path / "sweep"))
  assert [(s["step"], s["stopped_early"]) for s in summaries.values()] == [
      (6, True), (6, True)]
  out = capsys.readouterr().out
  assert "vmapped group: seed=0" in out
  assert "early stop at step 6: every member of the group" in out
  assert sweep.run_sweep(config, sweep_list, str(tmp_path / "sweep")) == (
      summaries)  # stopped: nothing is trained again


def test_member_devices_divide_the_group_evenly():
  # The suite runs on 4 fake CPU devices (conftest.py).
  assert len(jax.local_devices()) == 4
  assert [batching.member_devices(n) for n in (1, 2, 3, 4, 5, 6, 8, 12)] == [
      1, 2, 3, 4, 1, 3, 4, 4]


@_EACH_LOOP
def test_a_group_is_split_over_the_devices_member_by_member(name, overrides):
  configs = [m.config for m in sweep.members(
      _config(name, **overrides), [{"seed": s} for s in range(8)])]
  loop = families.family_of(configs[0]).loop.make_batched_loop(configs)
  state, metrics = loop.step(loop.init(), 0)
  for leaf in jax.tree_util.tree_leaves((state, metrics)):
    assert len(leaf.sharding.device_set) == 4
    # Each device holds two whole members.
    assert {s.data.shape[0] for s in leaf.addressable_shards} == {2}


@_EACH_LOOP
def test_a_split_groups_step_moves_nothing_between_devices(
    monkeypatch, name, overrides):
  calls = []
  jit = jax.jit

  def recording_jit(fun, **kwargs):
    jitted = jit(fun, **kwargs)

    def call(*args):
      calls.append((jitted, args))
      return jitted(*args)
    return call

  monkeypatch.setattr(jax, "jit", recording_jit)
  configs = [m.config for m in sweep.members(
      _config(name, **overrides), [{"seed": s} for s in range(8)])]
  loop = families.family_of(configs[0]).loop.make_batched_loop(configs)
  state = loop.init()
  calls.clear()
  loop.step(state, 0)
  (jitted, args), = calls
  hlo = jitted.lower(*args).compile().as_text()
  assert "num_partitions=4" in hlo
  for collective in ("all-gather", "all-reduce", "all-to-all",
                     "collective-permute", "reduce-scatter"):
    assert collective not in hlo


def test_single_member_sweep_is_the_plain_run_bitwise(tmp_path):
  config = _config()
  sweep.run_sweep(config, [{"seed": 2}], str(tmp_path / "sweep"))
  config.seed = 2
  train.train_and_evaluate(config, str(tmp_path / "plain"))
  assert read_metrics(tmp_path / "sweep/seed=2/metrics.jsonl") == read_metrics(
      tmp_path / "plain/metrics.jsonl")
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         _state(tmp_path / "sweep/seed=2"),
                         _state(tmp_path / "plain"))


def test_mixed_sweep_runs_a_vmapped_group_and_a_static_one(tmp_path, capsys):
  config = _config()
  sweep_list = [{"seed": 0}, {"seed": 1},
                {"model.hidden": (4, 4), "name": "narrow"}]
  groups = sweep.groups(sweep.members(config, sweep_list))
  assert [[m.name for m in g] for g in groups] == [["seed=0", "seed=1"],
                                                   ["narrow"]]
  summaries = sweep.run_sweep(config, sweep_list, str(tmp_path))
  # The members and the budget, before anything trains.
  out = capsys.readouterr().out.splitlines()
  assert out[:4] == [
      f"[sweep] 3 members into {tmp_path}, as 2 groups run one after "
      "another (1 vmapped, 1 single run):",
      "[sweep]   1. vmapped group of 2, 6 steps of batch 8: seed=0; seed=1",
      "[sweep]   2. single run, 6 steps of batch 8: narrow",
      "[sweep] budget: 12 steps of the groups in all (18 member steps); "
      "finished members are not trained again."], out
  assert set(summaries) == {"seed=0", "seed=1", "narrow"}
  for name in summaries:
    assert summaries[name]["step"] == 6
    assert os.path.exists(tmp_path / name / "config.json")


@pytest.mark.parametrize("arg,methods", [
    (None, ["dni", "cdni"]), ("dni_unlocked,cdni_unlocked",
                              ["dni_unlocked", "cdni_unlocked"])])
def test_the_update_population_is_one_vmapped_group_per_method(arg, methods):
  """configs/update_population.py (the paper's Fig. 7): per method, ``SIZE``
  members at distinct p in [0, 1), member k with seed k, one program."""
  population = importlib.import_module("configs.update_population")
  config = population.get_config(arg)
  groups = sweep.groups(sweep.members(config, population.get_sweep(arg)))
  assert [[m.config.method for m in g] for g in groups] == [
      [m] * population.SIZE for m in methods]
  for group in groups:
    probs = [m.config.dni.update_prob for m in group]
    assert probs == list(population.UPDATE_PROBS)
    assert len(set(probs)) == len(probs) and all(0 <= p < 1 for p in probs)
    assert [m.config.seed for m in group] == list(range(population.SIZE))
    assert all(m.config.model.depth == 4 for m in group)


def test_cnn_seeds_run_one_after_another_on_a_cpu_and_say_so():
  # XLA:CPU runs a convolution vmapped over kernels as a grouped one, far
  # slower than the members' own (experiments.benchmark --members).
  fcn = importlib.import_module("configs.mnist_fcn").get_config()
  cnn = importlib.import_module("configs.mnist_cnn").get_config()
  seeds = [{"seed": s} for s in range(3)]
  assert [len(g) for g in sweep.groups(sweep.members(fcn, seeds))] == [3]
  cnn_groups = sweep.groups(sweep.members(cnn, seeds))
  on_cpu = jax.default_backend() == "cpu"
  assert [len(g) for g in cnn_groups] == ([1, 1, 1] if on_cpu else [3])
  if on_cpu:
    assert ("[sweep]   1. single run (this kind of run is not vmapped here)"
            in sweep.plan(cnn_groups, "w"))


def test_half_finished_sweep_resumes_member_by_member(tmp_path, monkeypatch):
  # log_every 1: a train average spanning the resume point would cover
  # fewer steps after it (as for a single run).
  config = _config(num_steps=8, log_every=1)
  sweep_list = [{"seed": 0}, {"seed": 1}, {"model.hidden": (4, 4)}]
  sweep.run_sweep(config, sweep_list, str(tmp_path / "straight"))

  undo = tiny.crash_batches_at(monkeypatch, 5)
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(config, sweep_list, str(tmp_path / "resumed"))
  assert not os.path.exists(tmp_path / "resumed/model.hidden=_4,_4_")
  undo()
  sweep.run_sweep(config, sweep_list, str(tmp_path / "resumed"))
  members = [n for n in os.listdir(tmp_path / "straight")
             if not n.startswith(".")]  # .lock: the sweep's workdir lock
  assert len(members) == len(sweep_list)
  for name in members:
    a, b = tmp_path / "straight" / name, tmp_path / "resumed" / name
    assert read_metrics(a / "metrics.jsonl") == read_metrics(
        b / "metrics.jsonl"), name
    jax.tree_util.tree_map(np.testing.assert_array_equal, _state(a),
                           _state(b))
  # A finished sweep trains nothing again.
  again = sweep.run_sweep(config, sweep_list, str(tmp_path / "resumed"))
  assert {s["step"] for s in again.values()} == {8}


def test_members_that_trained_apart_resume_apart_not_started_over(tmp_path):
  """A group whose members share no checkpoint step (they ran as separate
  runs, or the sweep gained members) is not started over from step 0: each
  member resumes from its own newest step, exactly as its run alone would,
  a finished member is not trained again, and nothing is set aside."""
  both = [{"seed": 0}, {"seed": 1}]
  sweep.run_sweep(_config(num_steps=6), both, str(tmp_path / "s"))  # [3, 6]
  shutil.copytree(tmp_path / "s" / "seed=0", tmp_path / "alone" / "seed=0")
  sweep.run_sweep(_config(num_steps=12), both[1:], str(tmp_path / "s"))
  sweep.run_sweep(_config(num_steps=12), both[:1], str(tmp_path / "alone"))
  seed1 = read_metrics(tmp_path / "s" / "seed=1" / "metrics.jsonl")
  seed0 = read_metrics(tmp_path / "s" / "seed=0" / "metrics.jsonl")
  with pytest.raises(WorkdirError, match="no checkpoint step in common"):
    sweep.run_group(sweep.members(_config(num_steps=12), both),
                    str(tmp_path / "s"))  # as one group: refused, not moved
  summaries = sweep.run_sweep(_config(num_steps=12), both, str(tmp_path / "s"))
  assert {n: s["step"] for n, s in summaries.items()} == {
      "seed=0": 12, "seed=1": 12}
  a, b = tmp_path / "alone" / "seed=0", tmp_path / "s" / "seed=0"
  records = read_metrics(b / "metrics.jsonl")
  assert records[:len(seed0)] == seed0 and records[-1]["step"] == 12
  assert read_metrics(a / "metrics.jsonl") == records
  jax.tree_util.tree_map(np.testing.assert_array_equal, _state(a), _state(b))
  assert read_metrics(tmp_path / "s" / "seed=1" / "metrics.jsonl") == seed1
  assert Checkpointer(tmp_path / "s" / "seed=1" / "checkpoints").all_steps(
      ) == [9, 12]
  assert not list((tmp_path / "s").glob("*/checkpoints/*.ahead"))


def test_a_sweep_that_gains_a_member_resumes_the_old_ones(tmp_path, capsys,
                                                         monkeypatch):
  """Members added to a trained sweep start at step 0 while the old ones
  resume, vmapped together, from their newest step; killed and rerun once
  the old ones have finished, the sweep does not train them again."""
  old = [{"seed": 0}, {"seed": 1}]
  sweep.run_sweep(_config(num_steps=6), old, str(tmp_path))
  before = {m: read_metrics(tmp_path / m / "metrics.jsonl")
            for m in ("seed=0", "seed=1")}
  capsys.readouterr()
  sweep.run_sweep(_config(num_steps=9), old + [{"seed": 2}], str(tmp_path))
  assert "resuming 2 members from step 6" in capsys.readouterr().out
  for member, records in before.items():
    after = read_metrics(tmp_path / member / "metrics.jsonl")
    assert after[:len(records)] == records and after[-1]["step"] == 9
  finished = {m: read_metrics(tmp_path / m / "metrics.jsonl")
              for m in ("seed=0", "seed=1")}
  # seed=3 joins and is killed at step 7, beside members finished at 9.
  undo = tiny.crash_batches_at(monkeypatch, 7)
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(_config(num_steps=9), old + [{"seed": 3}], str(tmp_path))
  undo()
  # It shares step 6 with the finished members: as one group they would
  # all resume from there, the finished ones trained again.
  assert 6 in Checkpointer(tmp_path / "seed=3" / "checkpoints").all_steps()
  sweep.run_sweep(_config(num_steps=9), old + [{"seed": 3}], str(tmp_path))
  for member, records in finished.items():
    assert read_metrics(tmp_path / member / "metrics.jsonl") == records
  assert read_metrics(tmp_path / "seed=3" / "metrics.jsonl")[-1]["step"] == 9
  assert not list(tmp_path.glob("*/checkpoints/*.ahead"))


@pytest.mark.parametrize("sweep_list,message", [
    ([{"opt.learning_rat": 1e-3}], "no field 'opt.learning_rat'"),
    ([{"optim.learning_rate": 1e-3}], "no field 'optim'"),
    ([{"seed": "one"}], "wrong type"),
    ([{"seed": 1}, {"seed": 1}], "both named 'seed=1'"),
    ([{"seed": 0}, {"name": "a", "seed": 1}, {"name": "a", "seed": 2}],
     "both named 'a'"),
    ([{"dni.update_prob": 1.5}], r"must lie in \[0, 1\]"),
    ([{"seed": 0}, {"dni.stage_update_probs": (1.0, 0.5)}],  # one group
     "has 2 values for the network's 3 stages"),
    ([], "non-empty list"),
])
def test_bad_sweeps_are_refused_before_any_work(tmp_path, sweep_list, message):
  with pytest.raises(ConfigError, match=message):
    sweep.run_sweep(_config(), sweep_list, str(tmp_path))
  assert not os.listdir(tmp_path)


def test_a_diverging_member_stops_its_group_naming_that_member(tmp_path):
  with pytest.raises(TrainingDivergedError,
                     match=r"at step 2 \(method cdni opt.learning_rate=1e\+30"):
    sweep.run_sweep(_config(), [{"opt.learning_rate": 1e-2},
                                {"opt.learning_rate": 1e30}], str(tmp_path))
