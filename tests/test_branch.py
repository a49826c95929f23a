"""A run branched from another's checkpoint (``--branch_from``)."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dni_jax.core import tbptt
from dni_jax.errors import CheckpointError
from dni_jax.errors import ConfigError
from dni_jax.errors import WorkdirError
from dni_jax.training import evaluate
from dni_jax.training import sweep as sweep_lib
from dni_jax.training import train
from dni_jax.training.metrics_log import read_metrics
from test_train import _final_state
from test_train import assert_same_run
from test_train import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _copy(**overrides):
  return tiny("copy", **{"method": "dni", "unroll": 3, "num_steps": 8,
                         "checkpoint_every": 4, "log_every": 2,
                         "windows_per_call": 2, "data.check_every": 2,
                         "data.threshold": 1e9, **overrides})


def _files(workdir):
  """Every file under ``workdir`` with its bytes."""
  found = {}
  for root, _, names in os.walk(workdir):
    for name in names:
      if name == ".lock":  # rewritten by every run that takes the workdir
        continue
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, workdir)] = f.read()
  return found


def test_a_branch_with_the_same_config_is_the_run_continued(tmp_path, capsys):
  """From step 4 of an 8-step run, a branch trained to 12 equals one run
  trained straight to 12: state bit for bit, and metrics.jsonl."""
  source, straight, branch = (tmp_path / n for n in ("src", "straight", "b"))
  train.train_and_evaluate(_copy(), source)
  before = _files(source)
  train.train_and_evaluate(_copy(num_steps=12), straight)
  train.train_and_evaluate(_copy(num_steps=12), branch, branch_from=source,
                           branch_step=4)
  assert_same_run(straight, branch, 12)
  assert int(assert_same_run(straight, branch, 12)["task"]["length"]) >= 3
  record = json.loads((branch / "branch.json").read_text())
  # Fields a resume may change (num_steps here) are not counted.
  assert record == {"source": str(source), "step": 4, "changed": []}
  assert _files(source) == before  # the source is only read
  # The same command again resumes the branch (already finished here).
  kept = _files(branch)
  train.train_and_evaluate(_copy(num_steps=12), branch, branch_from=source,
                           branch_step=4)
  assert "already finished at step 12" in capsys.readouterr().out
  assert _files(branch) == kept
  with pytest.raises(WorkdirError, match="not at --branch_step=8"):
    train.train_and_evaluate(_copy(num_steps=12), branch, branch_from=source,
                             branch_step=8)


def test_a_branch_takes_the_new_hyper_parameters_and_the_old_state(tmp_path):
  """λ and the learning rates are the new config's from the branch point on;
  the rest of the state is the source's: the branch equals the library's own
  steps from the source's restored state with those values set."""
  source, branch = tmp_path / "src", tmp_path / "b"
  train.train_and_evaluate(_copy(), source)
  new = _copy(num_steps=12, **{"dni.sg_scale": 0.5,
                               "opt.learning_rate": 3e-3,
                               "dni.synth_steps": 2})
  train.train_and_evaluate(new, branch, branch_from=source)
  record = json.loads((branch / "branch.json").read_text())
  assert record["step"] == 8 and record["changed"] == [
      "dni.sg_scale", "dni.synth_steps", "opt.learning_rate"]
  # By hand: restore the source at 8 and step 4 windows under the new config.
  config, task, data, _, _, state, step = evaluate.restore_run(str(source))
  assert step == 8 and float(state.sg_scale) == pytest.approx(0.1)
  from dni_jax.training import experiment  # pylint: disable=g-import-not-at-top
  rdni = experiment.build_recurrent(new, task)
  optimizers = experiment.build_optimizers(new)
  rate = lambda: {"learning_rate": jnp.float32(3e-3)}  # M's too
  state = state.replace(
      sg_scale=jnp.float32(0.5),
      opt_state=state.opt_state._replace(hyperparams=rate()),
      synth_opt_state=state.synth_opt_state._replace(hyperparams=rate()))
  step_fn = tbptt.make_train_step(rdni, optimizers, task)
  for _ in range(4):
    state, _ = step_fn(state, data)
  _, got = _final_state(branch)
  for a, b in zip(jax.tree_util.tree_leaves(got["params"]),
                  jax.tree_util.tree_leaves(state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(got["synth_params"]),
                  jax.tree_util.tree_leaves(state.synth_params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert float(got["sg_scale"]) == 0.5
  records = read_metrics(str(branch / "metrics.jsonl"))
  assert records[:4] == read_metrics(str(source / "metrics.jsonl"))[:4]
  assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]


def test_what_a_branch_refuses_writes_nothing(tmp_path):
  source = tmp_path / "src"
  train.train_and_evaluate(_copy(), source)
  wide = tmp_path / "wide"
  with pytest.raises(CheckpointError,
                     match=r"does not restore into the state .* differs from "
                     r"the source's in model.width\. Nothing"):
    train.train_and_evaluate(_copy(num_steps=12, **{"model.width": 24}),
                             wide, branch_from=source)
  assert os.listdir(wide) == [".lock"]  # the lock file only
  with pytest.raises(CheckpointError, match=r"of steps \[4, 8\]"):
    train.train_and_evaluate(_copy(num_steps=12), tmp_path / "at6",
                             branch_from=source, branch_step=6)
  assert os.listdir(tmp_path / "at6") == [".lock"]
  damaged = tmp_path / "damaged"  # a source whose step 8 fails its digest
  shutil.copytree(source, damaged)
  digest = damaged / "checkpoints" / "8" / "dni_digest.json"
  saved = json.loads(digest.read_text())
  saved["leaves"] = ["0" * len(d) for d in saved["leaves"]]
  digest.write_text(json.dumps(saved))
  with pytest.raises(CheckpointError, match=r"is damaged.*give "
                     r"--branch_step=<step> \(its checkpoints: \[4, 8\]\)"):
    train.train_and_evaluate(_copy(num_steps=12), tmp_path / "d",
                             branch_from=damaged)
  assert os.listdir(tmp_path / "d") == [".lock"]
  shutil.copytree(source, tmp_path / "sweep" / "seed=0")  # nested runs
  with pytest.raises(WorkdirError, match="holds the runs of a comparison"):
    train.train_and_evaluate(_copy(num_steps=12), tmp_path / "sweep",
                             branch_from=source)
  assert sorted(os.listdir(tmp_path / "sweep")) == [".lock", "seed=0"]
  with pytest.raises(WorkdirError, match="is --workdir itself"):
    train.train_and_evaluate(_copy(num_steps=12), source, branch_from=source)
  with pytest.raises(WorkdirError, match="has no config.json"):
    train.train_and_evaluate(_copy(num_steps=12), tmp_path / "x",
                             branch_from=tmp_path)
  other = tmp_path / "other"
  train.train_and_evaluate(_copy(num_steps=4), other)
  kept = _files(other)
  with pytest.raises(WorkdirError, match="already holds a run of its own"):
    train.train_and_evaluate(_copy(num_steps=12), other, branch_from=source)
  assert _files(other) == kept
  with pytest.raises(ConfigError, match="compares 2 methods"):
    train.train_and_evaluate(_copy(method="bptt,dni"), tmp_path / "y",
                             branch_from=source)
  # --overwrite replaces that run by the branch.
  train.train_and_evaluate(_copy(num_steps=10), other, overwrite=True,
                           branch_from=source)
  assert json.loads((other / "branch.json").read_text())["step"] == 8


@pytest.mark.parametrize("killed", ["after_claim", "after_config",
                                    "while_saving"])
def test_a_branch_stopped_before_its_checkpoint_is_made_again(tmp_path, capsys,
                                                              killed):
  """Whatever a kill leaves before the branch's checkpoint is complete, the
  same command branches again (and a rerun without --branch_from refuses
  rather than train from scratch)."""
  source, branch = tmp_path / "src", tmp_path / "b"
  train.train_and_evaluate(_copy(), source)
  train.train_and_evaluate(_copy(num_steps=12), branch, branch_from=source)
  _, done = _final_state(branch)
  ckpts = branch / "checkpoints"
  (branch / "summary.json").unlink()
  shutil.rmtree(ckpts / "12")
  if killed == "while_saving":  # Orbax committed step 8, no digest yet
    (ckpts / "8" / "dni_digest.json").unlink()
    (ckpts / ".8.saving").write_text("")
  else:
    shutil.rmtree(ckpts)
    (branch / "metrics.jsonl").unlink()
    for name in os.listdir(branch):
      if name.startswith("events."):
        (branch / name).unlink()
    if killed == "after_claim":
      (branch / "config.json").unlink()
  with pytest.raises(WorkdirError, match="stopped before its first "
                     "checkpoint was saved. Rerun the branch's command"):
    train.train_and_evaluate(_copy(num_steps=12), branch)
  if killed == "after_config":  # --overwrite alone: a run from scratch
    scratch = tmp_path / "scratch"
    shutil.copytree(branch, scratch)
    train.train_and_evaluate(_copy(num_steps=12), scratch, overwrite=True)
    assert not (scratch / "branch.json").exists()
    assert "(a branch stopped before its first checkpoint" in (
        capsys.readouterr().out)
  train.train_and_evaluate(_copy(num_steps=12), branch, branch_from=source)
  _, again = _final_state(branch)
  jax.tree_util.tree_map(np.testing.assert_array_equal, done, again)
  assert [r["step"] for r in read_metrics(str(branch / "metrics.jsonl"))] == [
      2, 4, 6, 8, 10, 12]


def test_a_sweep_refuses_a_member_folder_holding_a_stopped_branch(tmp_path,
                                                                  capsys):
  """A vmapped group's member folder holding a branch (of another λ)
  stopped before its checkpoint is refused before any member is written;
  --overwrite trains that member from scratch, as a fresh sweep does."""
  source, swept = tmp_path / "src", tmp_path / "sweep"
  train.train_and_evaluate(_copy(seed=1), source)
  member = swept / "seed=1"  # the last member: the others come first
  train.train_and_evaluate(_copy(seed=1, num_steps=12, **{"dni.sg_scale": 0.5}),
                           member, branch_from=source)
  for name in os.listdir(member):  # as a kill after config.json leaves it
    if name not in ("branch.json", "config.json"):
      path = member / name
      shutil.rmtree(path) if path.is_dir() else path.unlink()
  seeds = [{"seed": 0}, {"seed": 1}]
  before = _files(swept)
  with pytest.raises(WorkdirError, match="seed=1 holds a branch of .* "
                     "stopped before its first checkpoint.* --branch_step=8"):
    sweep_lib.run_sweep(_copy(num_steps=12), seeds, str(swept))
  assert _files(swept) == before and not (swept / "seed=0").exists()
  (member / "config.json").unlink()  # as a kill before config.json leaves it
  sweep_lib.run_sweep(_copy(num_steps=12), seeds, str(swept), overwrite=True)
  assert "vmapped group: seed=0, seed=1" in capsys.readouterr().out
  assert not (member / "branch.json").exists()
  fresh = tmp_path / "fresh"
  sweep_lib.run_sweep(_copy(num_steps=12), seeds, str(fresh))
  for name in ("seed=0", "seed=1"):
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           _final_state(swept / name)[1],
                           _final_state(fresh / name)[1])


def test_a_sweep_resumes_a_group_from_a_members_branch_step_or_apart(
    tmp_path, capsys):
  """A vmapped group resumes its members' branches where every member holds
  the branch step; where it holds none in common with the others (another
  member holding nothing, or a run --overwrite deletes) the branch resumes
  on its own, as it would alone, and is not started over; a branch of
  another config --overwrite deletes."""
  sources = [tmp_path / f"src{s}" for s in (0, 1)]
  for seed, source in enumerate(sources):
    train.train_and_evaluate(_copy(seed=seed), source)
  seeds, later = [{"seed": 0}, {"seed": 1}], _copy(num_steps=16)

  swept, alone = tmp_path / "one_branched", tmp_path / "alone"  # seed=0 empty
  for where in (swept, alone):
    train.train_and_evaluate(_copy(seed=1, num_steps=12), where / "seed=1",
                             branch_from=sources[1])
  train.train_and_evaluate(_copy(seed=1, num_steps=16), alone / "seed=1")
  sweep_lib.run_sweep(later, seeds, str(swept))
  assert (swept / "seed=1" / "branch.json").exists()
  assert_same_run(alone / "seed=1", swept / "seed=1", 16)
  assert _final_state(swept / "seed=0")[0] == 16

  other = tmp_path / "other_config"  # seed=0: a run --overwrite deletes
  train.train_and_evaluate(_copy(seed=0, num_steps=12,
                                 **{"dni.sg_scale": 0.5}), other / "seed=0")
  train.train_and_evaluate(_copy(seed=1, num_steps=12), other / "seed=1",
                           branch_from=sources[1])
  sweep_lib.run_sweep(later, seeds, str(other), overwrite=True)
  assert (other / "seed=1" / "branch.json").exists()
  assert_same_run(alone / "seed=1", other / "seed=1", 16)
  with open(other / "seed=0" / "config.json") as f:
    assert json.load(f)["dni"]["sg_scale"] == later.dni.sg_scale

  both = tmp_path / "both_branched"  # every member branched at step 8
  for seed, source in enumerate(sources):
    train.train_and_evaluate(_copy(seed=seed, num_steps=12),
                             both / f"seed={seed}", branch_from=source)
  capsys.readouterr()
  sweep_lib.run_sweep(later, seeds, str(both))
  assert "resuming 2 members from step 12" in capsys.readouterr().out
  for seed in (0, 1):
    assert (both / f"seed={seed}" / "branch.json").exists()
    assert _final_state(both / f"seed={seed}")[0] == 16

  changed = tmp_path / "branch_of_another_config"  # --overwrite deletes it
  train.train_and_evaluate(_copy(seed=1, num_steps=12,
                                 **{"dni.sg_scale": 0.5}),
                           changed / "seed=1", branch_from=sources[1])
  sweep_lib.run_sweep(later, seeds, str(changed), overwrite=True)
  assert not (changed / "seed=1" / "branch.json").exists()
  assert _final_state(changed / "seed=1")[0] == 16


def test_overwrite_branches_again_under_a_changed_config(tmp_path):
  source, branch = tmp_path / "src", tmp_path / "b"
  train.train_and_evaluate(_copy(), source)
  train.train_and_evaluate(_copy(num_steps=12), branch, branch_from=source)
  changed = _copy(num_steps=12, **{"dni.sg_scale": 0.5})
  with pytest.raises(WorkdirError, match="made by another config"):
    train.train_and_evaluate(changed, branch, branch_from=source)
  train.train_and_evaluate(changed, branch, overwrite=True,
                           branch_from=source)
  record = json.loads((branch / "branch.json").read_text())
  assert record["step"] == 8 and record["changed"] == ["dni.sg_scale"]
  _, got = _final_state(branch)
  assert float(got["sg_scale"]) == 0.5
  records = read_metrics(str(branch / "metrics.jsonl"))
  assert records[:4] == read_metrics(str(source / "metrics.jsonl"))[:4]
  with pytest.raises(ConfigError, match="keeps the source's seed"):
    train.train_and_evaluate(_copy(num_steps=12, seed=1), tmp_path / "s1",
                             branch_from=source)


def test_the_command_line_branch(tmp_path):
  source = tmp_path / "src"
  train.train_and_evaluate(_copy(), source)
  args = [sys.executable, "-m", "experiments.main", "--config=configs/copy.py",
          f"--workdir={tmp_path / 'b'}", "--config.method=dni",
          "--config.unroll=3", "--config.num_steps=10",
          "--config.checkpoint_every=4", "--config.log_every=2",
          "--config.windows_per_call=2", "--config.batch_size=8",
          "--config.model.width=16", "--config.data.check_every=2",
          "--config.data.threshold=1e9", "--config.dni.sg_scale=0.0",
          f"--branch_from={source}"]
  done = subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                        timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"branched from {source} at step 8 (changed: " in done.stdout
  assert "dni.sg_scale" in done.stdout.split("branched from")[1].split(")")[0]
  assert "resuming from step 8" in done.stdout
  done = subprocess.run(args[:-1] + ["--branch_step=4"], cwd=REPO,
                        capture_output=True, text=True, timeout=600,
                        check=False)
  assert done.returncode == 2 and "give --branch_from" in done.stderr
