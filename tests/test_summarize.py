"""Seeds into error bars: experiments.summarize and experiments.plot_seeds."""

import csv
import json
import os
import subprocess
import sys

import pytest

from dni_jax.training import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(folder, config, test_accuracies):
  os.makedirs(folder)
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config, f)
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
    for step, acc in enumerate(test_accuracies, 1):
      f.write(json.dumps({"step": 100 * step, "split": "test",
                          "accuracy": acc, "loss": 1.0 - acc}) + "\n")
      f.write(json.dumps({"step": 100 * step, "split": "train",
                          "loss": 2.0}) + "\n")


@pytest.fixture
def sweep(tmp_path):
  """Two methods × three seeds; one old run without a newer field."""
  finals = {"dni": (0.90, 0.92, 0.94), "cdni": (0.97, 0.98, 0.99)}
  for method, accs in finals.items():
    for seed, acc in enumerate(accs):
      config = {"method": method, "seed": seed, "num_steps": 200 + seed,
                "dni": {"update_prob": 0.5}}
      if seed == 0:
        del config["dni"]  # written before dni.update_prob existed
      _run(tmp_path / f"p/{method}/seed{seed}", config, [acc - 0.1, acc])
  return tmp_path


def test_groups_differ_only_in_method_and_carry_seed_statistics(sweep):
  rows = results.summarize(str(sweep), metrics=("error", "accuracy"))
  by = {(r["group"], r["metric"]): r for r in rows}
  assert {g for g, _ in by} == {"method=dni", "method=cdni"}
  final = by[("method=dni", "accuracy")]["final"]
  assert final["n"] == 3
  assert final["mean"] == pytest.approx(0.92)
  assert final["std"] == pytest.approx(0.02)  # sample std (n - 1)
  assert (final["min"], final["max"]) == pytest.approx((0.90, 0.94))
  # Best: the maximum accuracy, the minimum error.
  assert by[("method=cdni", "error")]["best"]["mean"] == pytest.approx(0.02)


def test_summarize_writes_markdown_and_csv(sweep):
  out = subprocess.run([sys.executable, "-m", "experiments.summarize",
                        str(sweep), "--metrics=error", "--scale=100"],
                       cwd=ROOT, capture_output=True, text=True, check=True)
  assert "| method=dni | error | test | 8 ± 2 |" in out.stdout
  with open(sweep / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert {r["group"] for r in rows} == {"method=dni", "method=cdni"}
  assert (sweep / "summary.md").read_text().startswith("| group |")


def test_plot_seeds_draws_error_bars_and_bands(sweep, tmp_path):
  for extra in (["--x_field=dni.update_prob"], ["--curves"]):
    out = tmp_path / f"{extra[0][2:8]}.png"
    subprocess.run([sys.executable, "-m", "experiments.plot_seeds",
                    str(sweep), f"--out={out}", *extra],
                   cwd=ROOT, check=True, capture_output=True)
    assert out.stat().st_size > 1000


def test_varying_fields_ignore_seed_resumable_and_missing_fields():
  configs = [{"seed": 0, "num_steps": 1, "a": 1},
             {"seed": 1, "num_steps": 2, "a": 1, "b": 3},
             {"seed": 2, "num_steps": 3, "a": 2, "b": 3}]
  assert results.varying_fields(configs) == ["a"]


def test_no_runs_is_a_clear_error(tmp_path):
  out = subprocess.run([sys.executable, "-m", "experiments.summarize",
                        str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True)
  assert out.returncode != 0
  assert out.stderr.startswith(f"error: no runs under {tmp_path}:")


def test_a_missing_folder_is_said_to_be_missing(tmp_path):
  missing = tmp_path / "no_such_folder"
  out = subprocess.run([sys.executable, "-m", "experiments.summarize",
                        str(missing)], cwd=ROOT, capture_output=True,
                       text=True)
  assert out.returncode != 0 and not out.stdout
  assert out.stderr == (f"error: {missing} does not exist: give the --workdir "
                        "of a sweep (experiments.sweep) or a folder of runs "
                        "(experiments.main).\n")
  assert not missing.exists()  # nothing written there


def test_a_group_of_one_seed_shows_n_1_not_a_spread(tmp_path):
  _run(tmp_path / "dni" / "seed0", {"method": "dni", "seed": 0}, [0.8, 0.9])
  _run(tmp_path / "cdni" / "seed0", {"method": "cdni", "seed": 0}, [0.9, 1.0])
  _run(tmp_path / "cdni" / "seed1", {"method": "cdni", "seed": 1}, [0.9, 0.98])
  table = results.markdown(results.summarize(str(tmp_path),
                                             metrics=("accuracy",)))
  assert "| method=dni | accuracy | test | 0.9 (n = 1) | 0.9 (n = 1) |" in table
  assert "| method=cdni | accuracy | test | 0.99 ± 0.014 |" in table
  assert "± 0 " not in table and "± 0|" not in table


def test_a_prefixed_accuracy_is_best_at_its_maximum(tmp_path):
  """synthetic/accuracy (an unlocked net's evaluation) is an accuracy."""
  folder = tmp_path / "run"
  os.makedirs(folder)
  with open(folder / "config.json", "w") as f:
    json.dump({"method": "cdni_unlocked", "seed": 0}, f)
  with open(folder / "metrics.jsonl", "w") as f:
    for step, acc in ((100, 0.5), (200, 0.9), (300, 0.8)):
      f.write(json.dumps({"step": step, "split": "test",
                          "synthetic/accuracy": acc,
                          "input_error/0": 1.0 - acc}) + "\n")
  rows = {r["metric"]: r for r in results.summarize(str(tmp_path))}
  assert rows["synthetic/accuracy"]["best"]["mean"] == pytest.approx(0.9)
  assert rows["input_error/0"]["best"]["mean"] == pytest.approx(0.1)


def test_runs_without_held_out_records_are_read_on_train(tmp_path):
  """Copy and Repeat Copy log only train records: with the split unset
  their group reads them, beside a group that reads its test records, and
  the table says which; asking for test alone names the splits there are."""
  for seed, solved in enumerate((4.0, 6.0)):
    folder = tmp_path / f"copy/seed{seed}"
    os.makedirs(folder)
    with open(folder / "config.json", "w") as f:
      json.dump({"task": "copy", "seed": seed}, f)
    with open(folder / "metrics.jsonl", "w") as f:
      for step in (100, 200):
        f.write(json.dumps({"step": step, "split": "train",
                            "max_task_length_solved": solved * step / 200,
                            "bits_per_seq": 1.0}) + "\n")
  _run(tmp_path / "mnist/seed0", {"task": "mnist", "seed": 0}, [0.8, 0.9])
  rows = {(r["group"], r["metric"]): r
          for r in results.summarize(str(tmp_path), None)}
  copy = rows[("task=copy", "max_task_length_solved")]
  assert copy["split"] == "train"
  assert copy["final"]["mean"] == pytest.approx(5)
  assert rows[("task=mnist", "accuracy")]["split"] == "test"
  assert ("task=mnist", "max_task_length_solved") not in rows
  out = subprocess.run([sys.executable, "-m", "experiments.summarize",
                        str(tmp_path / "copy")], cwd=ROOT,
                       capture_output=True, text=True, check=True)
  assert "| all | max_task_length_solved | train | 5 ± 1.4 |" in out.stdout
  with open(tmp_path / "copy" / "summary.csv") as f:
    assert {r["split"] for r in csv.DictReader(f)} == {"train"}
  out = subprocess.run([sys.executable, "-m", "experiments.summarize",
                        str(tmp_path / "copy"), "--split=test"], cwd=ROOT,
                       capture_output=True, text=True)
  assert out.returncode == 1 and not out.stdout
  assert out.stderr.startswith("error: no 'test' records under ")
  assert "log 'train'. Give --split=train" in out.stderr


def test_at_reads_every_run_as_it_stood_at_that_step(sweep):
  # Each run logs test accuracy acc - 0.1 at step 100 and acc at 200.
  rows = results.summarize(str(sweep), metrics=("accuracy",), at=150)
  by = {r["group"]: r for r in rows}
  assert by["method=dni"]["final"]["mean"] == pytest.approx(0.82)
  assert by["method=dni"]["best"]["mean"] == pytest.approx(0.82)
  assert by["method=cdni"]["final"]["n"] == 3
  assert results.summarize(str(sweep), metrics=("accuracy",), at=200) == (
      results.summarize(str(sweep), metrics=("accuracy",)))


def test_at_past_a_run_s_last_record_names_the_run(sweep):
  before = sorted(os.listdir(sweep))
  out = subprocess.run([sys.executable, "-m", "experiments.summarize",
                        str(sweep), "--at=300"],
                       cwd=ROOT, capture_output=True, text=True)
  assert out.returncode != 0
  assert "error:" in out.stderr and "up to step 200" in out.stderr
  assert "--at=300" in out.stderr and "seed" in out.stderr
  assert sorted(os.listdir(sweep)) == before  # no summary written
  with pytest.raises(results.DNIError, match=r"first 'test' record is at "
                     r"step 100, after --at=99: give an --at of 100"):
    results.summarize(str(sweep), at=99)
  empty = sweep / "p" / "dni" / "seed9"
  _run(empty, {"method": "dni", "seed": 9}, [])  # started, not evaluated
  with pytest.raises(results.DNIError, match=r"seed9 has no 'test' records "
                     "yet"):
    results.summarize(str(sweep), at=200)


def test_a_synthesizer_s_fit_is_best_at_its_maximum(tmp_path):
  folder = tmp_path / "r"
  os.makedirs(folder)
  (folder / "config.json").write_text(json.dumps({"method": "dni"}))
  with open(folder / "metrics.jsonl", "w") as f:
    for step, (r2, cos, err) in enumerate(
        [(-2.0, 0.1, 0.5), (0.4, 0.6, 0.2), (0.3, 0.5, 0.3)], 1):
      f.write(json.dumps({"step": step, "split": "test", "sg_r2": r2,
                          "sg_r2_slot0": r2, "sg_cosine": cos,
                          "grad_cosine/0": cos, "b_error": err}) + "\n")
  best = {r["metric"]: r["best"]["mean"]
          for r in results.summarize(str(tmp_path))}
  assert best == pytest.approx({"sg_r2": 0.4, "sg_r2_slot0": 0.4,
                                "sg_cosine": 0.6, "grad_cosine/0": 0.6,
                                "b_error": 0.2})
