"""experiments.reproduce: the tables' cells, and a small budget end to end."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import reproduce  # noqa: E402  pylint: disable=g-import-not-at-top


def _reproduce(*flags: str, timeout: int = 600):
  """``python -m experiments.reproduce <flags>`` from the repository root."""
  return subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", *flags], cwd=ROOT,
      capture_output=True, text=True, timeout=timeout)


def test_tables_have_the_papers_cells():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS(["reproduce"])  # defaults
  copy = reproduce.cells("copy", "full")
  assert len(copy) == 2 * 4 * 3
  assert {(c.data.name, c.unroll, c.method) for _, _, c in copy} == {
      (task, t, m) for task in ("copy", "repeat_copy") for t in (2, 3, 4, 5)
      for m in ("bptt", "dni", "dni_aux")}
  assert {c.num_steps for _, _, c in copy} == {100_000}
  assert {c.num_steps for _, _, c in reproduce.cells("copy", "paper")} == {
      2_500_000}
  fcn = reproduce.cells("mnist_fcn", "full")
  assert {(c.model.depth, c.method) for _, _, c in fcn} == {
      (d, m) for d in (3, 4, 5, 6) for m in ("backprop", "dni", "cdni")}
  assert all(c.num_steps == 24 for _, _, c in reproduce.cells("copy", "small"))
  for table, data in (("mnist_cnn", "mnist"), ("cifar10_cnn", "cifar10")):
    for budget, features, steps in (("full", 32, 6000),
                                    ("paper", 128, 40_000), ("small", 4, 24)):
      cnn = reproduce.cells(table, budget)
      assert [(r, c.method) for r, _, c in cnn] == [
          (f"{features} filters", m)
          for m in ("backprop", "dni", "cdni", "cdni_unlocked")]
      assert {(c.data.name, c.model.features, c.num_steps)
              for _, _, c in cnn} == {(data, features, steps)}
    assert "the CNN at 32 filters" in reproduce.describe(
        table, "full", range(3), "/w")
    assert "the paper's CNN (128 filters)" in reproduce.describe(
        table, "paper", range(3), "/w")
  # The CNN's table shows test error and each run's wall time.
  assert reproduce.value("mnist_cnn", {"test": {"accuracy": 0.99},
                                       "seconds": 60.0}) == {
                                           "test error %": pytest.approx(1.0),
                                           "wall s": 60.0}


def test_small_budget_table_runs_end_to_end(tmp_path):
  out = _reproduce("--table=binary_addition", "--budget=small", "--seeds=2",
                   f"--workdir={tmp_path}", "--set=opt.learning_rate=2e-2")
  assert out.returncode == 0, out.stderr[-2000:]
  # What the small budget is, before any run.
  assert out.stdout.splitlines()[:3] == [
      "[reproduce] table binary_addition, budget small: 3 cells × 2 seeds = "
      "6 runs of 24 steps each (batch 16), narrow networks (width 16, "
      "synthesizer hidden (8,)): a check that the table runs, not its "
      f"numbers; into {tmp_path}/binary_addition",
      "[reproduce] cells: binary addition × backprop, dni, cdni",
      "[reproduce] every cell with opt.learning_rate=2e-2 (over the values "
      "above)"], out.stdout
  assert "| binary addition: bit acc % |" in out.stdout
  # The table says which field was set, on screen and in its file.
  written = (tmp_path / "binary_addition_small.md").read_text()
  assert written.endswith("Every cell with opt.learning_rate=2e-2.\n")
  lr = lambda: json.load(open(tmp_path / "binary_addition"  # noqa: E731
                              / "binary_addition_dni" / "seed=1"
                              / "config.json"))["opt"]["learning_rate"]
  assert lr() == 2e-2
  # The table without --set finds runs of another config: one paragraph that
  # names the folder, the runs kept; --overwrite starts the cells over.
  again = _reproduce("--table=binary_addition", "--budget=small",
                     "--seeds=2", f"--workdir={tmp_path}")
  assert again.returncode == 1, again.stderr[-2000:]
  assert again.stderr.startswith(
      f"error: --workdir={tmp_path}/binary_addition/binary_addition_backprop/"
      "seed=0 holds a run made by another config (opt.learning_rate: 0.02 "
      "-> 0.01)"), again.stderr
  assert len(again.stderr.strip().splitlines()) == 1
  assert lr() == 2e-2
  again = _reproduce("--table=binary_addition", "--budget=small",
                     "--seeds=2", f"--workdir={tmp_path}", "--overwrite")
  assert again.returncode == 0, again.stderr[-2000:]
  assert lr() == 1e-2
  # Each cell is a sweep of ordinary runs, one folder per seed.
  assert sorted(n for n in os.listdir(
      tmp_path / "binary_addition" / "binary_addition_cdni")
                if not n.startswith(".")) == ["seed=0", "seed=1"]
  # --first_seed: fresh seeds, named as they are in every cell.
  later = _reproduce("--table=binary_addition", "--budget=small", "--seeds=1",
                     "--first_seed=2", f"--workdir={tmp_path / 'later'}")
  assert later.returncode == 0, later.stderr[-2000:]
  assert "3 cells × 1 seed (2) = 3 runs" in later.stdout.splitlines()[0]
  assert "| binary_addition (small, 1 seed (2), mean ± std) |" in later.stdout
  assert sorted(n for n in os.listdir(
      tmp_path / "later" / "binary_addition" / "binary_addition_cdni")
                if not n.startswith(".")) == ["seed=2"]


def test_cifar10_cnn_small_budget_runs_on_local_files(tmp_path):
  """The CIFAR-10 CNN table's command, on files in --data_dir."""
  import test_data  # pylint: disable=g-import-not-at-top
  test_data.write_cifar(tmp_path, per_file=16)
  out = _reproduce("--table=cifar10_cnn", "--budget=small", "--seeds=1",
                   f"--data_dir={tmp_path}", f"--workdir={tmp_path / 'runs'}")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "| 4 filters: test error % |" in out.stdout
  for method in ("backprop", "dni", "cdni", "cdni_unlocked"):
    folder = tmp_path / "runs" / "cifar10_cnn" / f"4_filters_{method}"
    with open(folder / "seed=0" / "config.json") as f:
      config = json.load(f)
    assert (config["data"]["name"], config["data"]["dir"]) == (
        "cifar10", str(tmp_path))


def test_help_states_both_budgets():
  out = _reproduce("--help", timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  text = " ".join(out.stdout.split())
  assert "small: 24 steps per run (Copy and PTB: windows of T time steps), " \
         "batch 16, narrow networks" in text
  assert ("full: the README's, each config's own steps per run (mnist_fcn "
          "40000, mnist_cnn 6000, cifar10_cnn 6000, binary_addition 12000, "
          "ptb_char 40000, "
          "ptb_speed 30720: the windows at T = 8 of the 7.86 M characters "
          "every ptb_speed and ptb_table1 cell trains on;") in text
  assert ("two_networks not the config's own but 40000 episodes per run, A "
          "of 128 units, Adam 0.0001") in text
  assert "--copy_windows (default 100000) windows per Copy run" in text


def test_copy_full_budget_is_described_in_windows():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS(["reproduce"])  # defaults
  lines = reproduce.describe("copy", "full", range(3), "/w").splitlines()
  assert lines[0].startswith("[reproduce] table copy, budget full: 24 cells × "
                             "3 seeds = 72 runs of 100000 windows each")
  assert lines[1] == ("[reproduce] cells: copy T=2, copy T=3, copy T=4, "
                      "copy T=5, repeat_copy T=2, repeat_copy T=3, "
                      "repeat_copy T=4, repeat_copy T=5 × bptt, dni, dni_aux")
  paper = reproduce.describe("copy", "paper", range(3), "/w").splitlines()[0]
  assert "72 runs of 2500000 windows each" in paper


def test_ptb_speed_cells_have_one_character_budget():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS(["reproduce"])
  speed = reproduce.cells("ptb_speed", "full")
  assert [(c.method, c.unroll) for _, _, c in speed] == [
      ("bptt", 5), ("bptt", 8), ("bptt", 20), ("bptt", 40), ("dni", 5),
      ("dni", 8), ("dni_aux", 5), ("dni_aux", 8)]
  for _, _, c in speed:  # the same characters and evaluation points
    assert c.num_steps * c.batch_size * c.unroll == 12 * 2_560 * 32 * 8
    assert c.eval_every * c.batch_size * c.unroll == 2_560 * 32 * 8
    assert c.eval_every % c.windows_per_call == 0  # whole calls


def test_ptb_table1_cells_are_the_papers_windows_at_one_character_budget():
  """Table 1's PTB row: every method at T = 2, 3, 4, 5, 8, each run the
  speed table's characters, evaluated at the same characters in whole calls
  (at T = 3 the whole calls below them)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS(["reproduce"])
  table1 = reproduce.cells("ptb_table1", "full")
  assert [(r, m) for r, m, _ in table1] == [
      (f"ptb_char T={t}", m) for t in (2, 3, 4, 5, 8)
      for m in ("bptt", "dni", "dni_aux")]
  every = {}
  for row, method, c in table1:
    assert (c.method, f"ptb_char T={c.unroll}") == (method, row)
    chars = c.eval_every * c.batch_size * c.unroll
    assert c.eval_every % c.windows_per_call == 0
    assert 0 <= 2_560 * 32 * 8 - chars < c.windows_per_call * 32 * c.unroll
    assert c.num_steps == 12 * c.eval_every
    assert c.checkpoint_every == c.eval_every and c.patience == 3
    every[c.unroll] = c.eval_every
  assert every == {2: 10_240, 3: 6_824, 4: 5_120, 5: 4_096, 8: 2_560}
  speed = {(c.method, c.unroll): c for _, _, c in reproduce.cells(
      "ptb_speed", "full")}
  for _, _, c in table1:  # the cells both tables have are the same runs
    if (c.method, c.unroll) in speed:
      assert c.to_dict() == speed[(c.method, c.unroll)].to_dict()
  lines = reproduce.describe("ptb_table1", "full", range(3),
                            "/w").splitlines()
  assert lines[0].startswith("[reproduce] table ptb_table1, budget full: 15 "
                             "cells × 3 seeds = 45 runs of 30720–122880 "
                             "windows each (batch 32)")


def _tiny_ptb(tmp_path):
  """A folder of tiny ``ptb.char.*.txt`` files."""
  from test_sequence_data import _write_ptb  # pylint: disable=g-import-not-at-top
  ptb = tmp_path / "ptb"
  ptb.mkdir()
  text = "".join(" ".join("abc_defg_hij") + "\n" for _ in range(200))
  _write_ptb(ptb, train=text, valid=text[:300], test=text[:300])
  return ptb


def test_ptb_table1_small_budget_runs_a_row_end_to_end(tmp_path):
  ptb = _tiny_ptb(tmp_path)
  out = _reproduce("--table=ptb_table1", "--budget=small", "--seeds=1",
                   "--rows=ptb_char T=3", f"--workdir={tmp_path / 'runs'}",
                   f"--data_dir={ptb}", timeout=900)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "| ptb_table1 (small, 1 seed, mean ± std) | bptt | dni | dni_aux |" \
      in out.stdout
  for key in ("best valid bpc", "test bpc"):
    assert f"| ptb_char T=3: {key} | " in out.stdout
  for method in ("bptt", "dni", "dni_aux"):
    with open(tmp_path / "runs" / "ptb_table1" / f"ptb_char_T3_{method}" /
              "seed=0" / "config.json") as f:
      config = json.load(f)
    assert (config["method"], config["unroll"], config["data"]["dir"]) == (
        method, 3, str(ptb))


def test_ptb_speed_table_reads_characters_and_wall_time():
  from experiments import ptb_speed  # pylint: disable=g-import-not-at-top

  def run(curve, best, test):
    records = [{"split": "valid", "chars": c, "bpc": b} for c, b in curve]
    return records, {"best_valid_bpc": best, "test_bpc_at_best_valid": test}
  runs = {"bptt_T20": [run([(1e6, 2.0), (2e6, 1.5)], 1.5, 1.45)],
          "dni_T8": [run([(1e6, 1.8), (2e6, 1.4)], 1.4, 1.35)]}
  curve = ptb_speed.valid_curve(runs["dni_T8"][0][0])
  assert ptb_speed.chars_to_reach(curve, 1.5) == 2e6
  assert ptb_speed.chars_to_reach(curve, 1.0) is None
  text = ptb_speed.table(runs, {"bptt_T20": 2e-6, "dni_T8": 1e-6})
  assert "BPTT-20's best valid BPC 1.5000" in text
  assert "the easier level every run reaches 1.5000" in text
  # dni_T8 reaches 1.5 at 2 M characters: 2 s at 1 µs per character.
  assert "| dni_T8 | 1 | 1.4 ± 0 | 1.35 ± 0 | 2 ± 0 | 2 ± 0 |" in text


def test_ptb_speed_small_budget_runs_end_to_end(tmp_path):
  ptb = _tiny_ptb(tmp_path)
  out = _reproduce("--table=ptb_speed", "--budget=small", "--seeds=1",
                   f"--workdir={tmp_path / 'runs'}", f"--data_dir={ptb}",
                   timeout=900)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "| cell | seeds | best valid BPC |" in out.stdout
  for cell in ("bptt_T5", "bptt_T8", "bptt_T20", "bptt_T40", "dni_T5",
               "dni_T8", "dni_aux_T5", "dni_aux_T8"):
    assert f"| {cell} | 1 |" in out.stdout
    assert f"- {cell}: " in out.stdout  # its measured time per window
  # The seconds per character, for `experiments.plot --x=wall`.
  with open(tmp_path / "runs" / "ptb_speed" / "seconds_per_char.json") as f:
    per_char = json.load(f)
  assert set(per_char) == {"bptt_T5", "bptt_T8", "bptt_T20", "bptt_T40",
                           "dni_T5", "dni_T8", "dni_aux_T5", "dni_aux_T8"}
  assert all(v > 0 for v in per_char.values())
  plotted = subprocess.run(
      [sys.executable, "-m", "experiments.plot",
       str(tmp_path / "runs" / "ptb_speed"), "--x=wall",
       f"--out={tmp_path / 'wall.png'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert plotted.returncode == 0, plotted.stderr[-2000:]
  assert (tmp_path / "wall.png").exists()


def test_two_networks_cells_are_the_set_up_that_met_the_papers_targets():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS(["reproduce", "--data_dir=/mnist"])
  try:
    full = reproduce.cells("two_networks", "full")
    described = reproduce.describe("two_networks", "full", range(3), "/w")
  finally:
    flags.FLAGS(["reproduce", "--data_dir="])
  assert [(r, c.two_networks.T, c.method) for r, _, c in full] == [
      (f"T={t}", t, m) for t in (2, 3, 4) for m in ("locked", "dni", "no_dni")]
  assert {(c.model.width, c.opt.learning_rate, c.num_steps, c.data.name,
           c.data.dir) for _, _, c in full} == {
               (128, 1e-4, 40_000, "mnist", "/mnist")}
  # Only dni has a synthesizer to choose; the others keep the config's.
  assert {(c.method, c.two_networks.sg_context, c.dni.synthesizer,
           tuple(c.dni.hidden), c.dni.use_batch_norm, c.dni.sg_scale)
          for _, _, c in full} == {
              ("locked", "none", "linear", (1024, 1024), False, 1.0),
              ("dni", "label", "mlp", (256,), False, 1.0),
              ("no_dni", "none", "linear", (1024, 1024), False, 1.0)}
  assert described.splitlines()[0].startswith(
      "[reproduce] table two_networks, budget full: 9 cells × 3 seeds = 27 "
      "runs of 40000 episodes each (batch 32), A of 128 units, Adam 0.0001, "
      "dni's synthesizer an MLP of 256 units reading B's label")
  assert "on MNIST digits" in described
  assert {c.data.name for _, _, c in reproduce.cells(
      "two_networks", "small")} == {"synthetic_digits"}


def test_two_networks_small_budget_runs_end_to_end(tmp_path):
  out = _reproduce("--table=two_networks", "--budget=small", "--seeds=1",
                   f"--workdir={tmp_path}", timeout=900)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "| T | method | seeds | A's error % | B's error % |" in out.stdout
  for t in (2, 3, 4):
    for method in ("locked", "dni (label, dni.synthesizer=mlp)", "no_dni"):
      assert f"| {t} | {method} | 1 |" in out.stdout, out.stdout
      assert (tmp_path / "two_networks" / f"T{t}" / method.split()[0] /
              "seed=0" / "summary.json").exists()
  assert (tmp_path / "two_networks_small.md").exists()


def test_paper_budget_is_refused_where_the_paper_gives_none():
  out = _reproduce("--table=mnist_fcn", "--budget=paper", timeout=120)
  assert out.returncode == 2
  assert ("--budget=paper (the paper's Copy iterations, the paper's CNN) "
          "applies to --table=copy, mnist_cnn and cifar10_cnn only; use "
          "--budget=full "
          "for mnist_fcn") in out.stderr


def _with_flags(*argv):
  """Parses reproduce's flags ``argv``; the context restores the defaults."""
  import contextlib  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  @contextlib.contextmanager
  def parsed():
    flags.FLAGS(["reproduce", *argv])
    try:
      yield
    finally:
      for name in ("set", "rows"):
        flags.FLAGS[name].unparse()
  return parsed()


def test_rows_and_set_pick_cells_and_change_every_cell():
  with _with_flags("--rows=copy T=3", "--set=dni.sg_state=ch",
                   "--set=opt.learning_rate=1e-4", "--set=num_steps=700000",
                   "--set=config.dni.hidden=64", "--set=dni.hidden=32",
                   "--set=dni.track_alignment"):
    copy = reproduce.cells("copy", "paper")
    described = reproduce.describe("copy", "paper", range(3),
                                   "/w").splitlines()
  assert [(r, m) for r, m, _ in copy] == [
      ("copy T=3", m) for m in ("bptt", "dni", "dni_aux")]
  # Read as --config.<field> reads them: a repeated tuple field collects its
  # values, a bare bool field is True.
  assert {(c.data.name, c.unroll, c.dni.sg_state, c.opt.learning_rate,
           c.num_steps, c.dni.hidden, c.dni.track_alignment)
          for _, _, c in copy} == {
              ("copy", 3, "ch", 1e-4, 700_000, (64, 32), True)}
  assert {type(c.num_steps) for _, _, c in copy} == {int}
  assert "3 cells × 3 seeds = 9 runs of 700000 windows" in described[0]
  assert described[2].startswith(
      "[reproduce] every cell with dni.sg_state=ch, opt.learning_rate=1e-4, "
      "num_steps=700000, config.dni.hidden=64, dni.hidden=32, "
      "dni.track_alignment")
  # Without the flags every row is back, at the config's own values.
  assert len(reproduce.cells("copy", "paper")) == 24
  assert {c.dni.sg_state for _, _, c in reproduce.cells("copy", "paper")} == {
      "h"}


def test_set_of_the_cnns_width_names_the_rows_after_it():
  with _with_flags("--set=model.features=8"):
    cnn = reproduce.cells("mnist_cnn", "full")
  assert {(r, c.model.features) for r, _, c in cnn} == {("8 filters", 8)}


@pytest.mark.parametrize("argv, message", [
    (["--rows=copy T=9"], "--rows names 'copy T=9', not a row of this table; "
     "its rows are 'copy T=2'"),
    (["--set=dni.sg_stat=ch"], "the table's configs have no field "
     "'dni.sg_stat'; did you mean dni.sg_state"),
    (["--set=opt.learning_rate=fast"], "'fast' is not a value for "
     "opt.learning_rate, a float field (now 0.001); give a float"),
    (["--set=num_steps=None"], "a value for num_steps, an int field"),
    (["--set=num_steps=True"], "a value for num_steps, an int field"),
    (["--set=opt.synth_learning_rate=fast"], "a float field (now None)"),
    (["--set=dni.track_alignment=maybe"], "a bool field"),
    (["--set=dni.sg_state"], "gives dni.sg_state no value"),
    (["--set=dni={'sg_state': 'ch'}"], "dni is a group of fields; set one "
     "of them, e.g. dni."),
    (["--set=unroll=4"], "changes unroll, which names the table's cells or "
     "seeds; give --rows instead"),
    (["--set=seed=4"], "give --seeds and --first_seed instead"),
    (["--set=dni.sg_state=xyz"], "cell copy T=2 × bptt: unknown dni.sg_state "
     "'xyz'"),
])
def test_bad_rows_or_set_is_one_message_before_any_run(argv, message):
  with _with_flags(*argv):
    with pytest.raises(ValueError) as e:
      reproduce._check_cells("copy", "small")  # pylint: disable=protected-access
  assert message in str(e.value)
  assert "\n" not in str(e.value)


def test_bad_set_exits_with_one_error_line_and_writes_nothing(tmp_path):
  out = _reproduce("--table=copy", "--set=dni.sg_stat=ch",
                   f"--workdir={tmp_path / 'w'}", timeout=300)
  assert out.returncode == 2
  assert out.stderr.startswith("error: --set='dni.sg_stat=ch': the table's "
                               "configs have no field"), out.stderr
  assert len(out.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "w").exists()


def test_no_seeds_or_a_negative_first_seed_is_one_error_line(tmp_path):
  for flags in (["--seeds=0"], ["--first_seed=-1"]):
    out = _reproduce("--table=copy", *flags, f"--workdir={tmp_path / 'w'}",
                     timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: --seeds="), out.stderr
    assert "needs at least one seed" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "w").exists()


def test_set_of_a_nested_group_names_one_of_its_fields():
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(
      {"opt": {"schedule": {"kind": "cosine", "warmup": 10}}})
  with pytest.raises(ValueError, match=r"opt\.schedule is a group of fields; "
                     r"set one of them, e\.g\. opt\.schedule\.kind"):
    reproduce.set_fields(config, ["opt.schedule=1"])
  reproduce.set_fields(config, ["opt.schedule.warmup=5"])
  assert config.opt.schedule.warmup == 5
