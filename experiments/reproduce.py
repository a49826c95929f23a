"""The README's tables with error bars: 3 seeds per cell, each cell one vmapped sweep.

  python -m experiments.reproduce --table=<name> --budget=<small|full|paper> \\
      [--workdir=/tmp/dni_jax/reproduce] [--data_dir=../shared/data/mnist] \\
      [--seeds=3 [--first_seed=0]] \\
      [--rows='copy T=3'] [--set=dni.sg_state=ch --set=opt.learning_rate=1e-4]

Tables (``--table``):

- ``mnist_fcn``: MNIST FCN test error (%), depth 3–6 × {backprop, DNI, cDNI}.
- ``mnist_cnn``: MNIST CNN test error (%) and wall seconds per run (as
  its summary records them: a resumed run's last sitting; a vmapped
  group's members each show the group's), {backprop, DNI, cDNI,
  complete-unlock cDNI}; ``full``: 3 stages of 32 filters, 6k steps
  (``configs/mnist_cnn.py``'s ``get_cpu_config()``); ``paper``: the paper's
  128 filters at the config's 40k steps (an accelerator's budget).
- ``cifar10_cnn``: the same cells on CIFAR-10 (``configs/cifar10_cnn.py``;
  ``--data_dir`` with ``cifar-10-batches-py/`` or ``cifar-10-batches-bin/``,
  else tensorflow-datasets); ``paper``: the paper's 128 filters.
- ``binary_addition``: held-out whole-sum accuracy and bit accuracy,
  {backprop, DNI, cDNI}.
- ``copy``: Copy and Repeat Copy, the paper's T_task of the longest level
  solved (``max_task_length_solved``: N + 3, Repeat Copy N·R_max + 3) and its
  length N, T ∈ {2, 3, 4, 5} × {BPTT, DNI, DNI+Aux}.
- ``ptb_char``: PTB characters, T = 8, best valid BPC and its test BPC,
  {BPTT, DNI, DNI+Aux} (``--data_dir`` with ``ptb.char.*.txt``).
- ``ptb_speed``: PTB characters, BPTT at T = 5, 8, 20, 40, DNI and DNI+Aux at
  T = 5 and 8, each cell the same characters (``experiments.ptb_speed``):
  best valid BPC, its test BPC, and the characters and wall time to reach
  BPTT-20's best and an easier common level (``--data_dir``).
- ``ptb_table1``: PTB characters, the paper's Table 1 row: T = 2, 3, 4, 5, 8
  × {BPTT, DNI, DNI+Aux}, best valid BPC and its test BPC, every cell the
  speed table's characters and evaluation points (``--data_dir``).
- ``two_networks``: the paper's two-network system (its Fig. 5), T ∈ {2, 3,
  4} × {locked, dni, no_dni}: A's and B's final test error and the episodes
  each needs to come within 10 % of the locked system's final error
  (``experiments.two_networks_table``). ``full`` (not the config's own
  budget): A of 128 units, Adam 1e-4, 40k episodes, dni's synthesizer an
  MLP (256, no BatchNorm) reading B's label, the set-up with which
  docs/results.md meets the paper's targets at T = 4; MNIST digits with
  ``--data_dir``, else generated ones. Runs go to
  ``<workdir>/two_networks/T<T>/<method>/seed=<s>/``.

``--budget=full`` is what the README reports (the configs' own step
budgets; Copy: ``--copy_windows`` = 100k windows per run; the CNN at 32
filters); ``--budget=small``
shrinks every cell to seconds on a CPU (narrow networks, a few dozen steps),
to check that the whole table runs; ``--budget=paper`` (Copy and the CNN)
trains each Copy run for the paper's 2.5 M iterations (windows) and the CNN
at the paper's size. The seeds of a cell train as one vmapped program
(``experiments.sweep``; CNN seeds one after another on a CPU), into
``<workdir>/<table>/<cell>/seed=<s>/``, so a rerun resumes where it stopped.
Prints the table as Markdown, mean ± std over the seeds (n − 1), and writes
it to ``<workdir>/<table>_<budget>.md``.

``--rows`` keeps some of a table's rows (the names of a run's ``[reproduce]
cells:`` line, which a wrong ``--rows`` lists, e.g. ``--rows='copy
T=3,repeat_copy T=3'``). ``--set=field=value`` sets one config field in
every cell, read as ``experiments.main``'s ``--config.<field>=value`` reads
it (repeat it for several fields), after the budget is applied and with no
field derived again from it (``--budget=small`` keeps its checkpoint
interval): ``--set=dni.sg_state=ch --set=opt.learning_rate=1e-4`` is the
Copy set-up of docs/results.md's "a synthetic gradient for the cell state".
The table then says which fields were set. A cell folder that holds runs of
another config is refused: give a changed table its own ``--workdir``, or
``--overwrite`` to delete those runs and start the cells over.
"""

import contextlib
import importlib
import io
import os
import statistics
import sys
from typing import Sequence

from absl import app
from absl import flags

from experiments import cli
from experiments import ptb_speed
from experiments import timing

TABLES = ("mnist_fcn", "mnist_cnn", "cifar10_cnn", "binary_addition", "copy",
          "ptb_char", "ptb_speed", "ptb_table1", "two_networks")
CNN_TABLES = ("mnist_cnn", "cifar10_cnn")
PTB_TABLES = ("ptb_char", "ptb_speed", "ptb_table1")
# The tables --budget=paper applies to.
PAPER_TABLES = ("copy",) + CNN_TABLES
CNN_METHODS = ("backprop", "dni", "cdni", "cdni_unlocked")
# The small budget: every cell shrunk to seconds on a CPU.
SMALL_STEPS = 24
SMALL_BATCH = 16
SMALL_MODEL = dict(width=16, features=4, hidden=(16, 16))
SMALL_SYNTH_HIDDEN = (8,)
_COPY_WINDOWS_DEFAULT = 100_000
# The paper budget of Copy: the paper's 2.5 M iterations, as windows.
PAPER_COPY_WINDOWS = 2_500_000
# The two-network table's full budget (docs/results.md, "BatchNorm in the
# synthesizer"): episodes per run, A's width, Adam's learning rate, and dni's
# synthesizer (what it reads beside the message, its hidden layers).
TWO_NETWORKS_FULL = dict(episodes=40_000, width=128, learning_rate=1e-4,
                         sg_context="label", hidden=(256,))


def _full_steps(table: str) -> int:
  if table == "copy":
    return _COPY_WINDOWS_DEFAULT
  if table == "ptb_speed":
    return ptb_speed.CHARS // (ptb_speed.BATCH * 8)
  if table == "two_networks":
    return TWO_NETWORKS_FULL["episodes"]
  if table in CNN_TABLES:
    config = importlib.import_module(f"configs.{table}").get_cpu_config()
    return config.num_steps
  return importlib.import_module(f"configs.{table}").get_config().num_steps


def budgets_text() -> str:
  """What ``--budget=small`` and ``--budget=full`` run, for --help."""
  full = ", ".join(f"{t} {_full_steps(t)}" for t in TABLES
                   if t not in ("copy", "ptb_table1", "two_networks"))
  return (f"small: {SMALL_STEPS} steps per run (Copy and PTB: windows of T "
          f"time steps), batch {SMALL_BATCH}, narrow networks (width "
          f"{SMALL_MODEL['width']}, cnn features {SMALL_MODEL['features']}, "
          f"mlp hidden {SMALL_MODEL['hidden']}, synthesizer hidden "
          f"{SMALL_SYNTH_HIDDEN}), no early stopping: seconds per cell on a "
          "CPU, a check that the whole table runs, not its numbers. full: "
          f"the README's, each config's own steps per run ({full}: the "
          "windows at T = 8 of the 7.86 M characters every ptb_speed and "
          "ptb_table1 cell trains on; the PTB tables stop early when valid "
          "BPC stops improving) and --copy_windows "
          f"(default {_COPY_WINDOWS_DEFAULT}) windows per Copy run; mnist_cnn "
          "at 32 filters, batch 64 (configs/mnist_cnn.get_cpu_config, not "
          "get_config; cifar10_cnn likewise); two_networks not the config's "
          f"own but {TWO_NETWORKS_FULL['episodes']} episodes per run, A of "
          f"{TWO_NETWORKS_FULL['width']} units, Adam "
          f"{TWO_NETWORKS_FULL['learning_rate']:g} and dni's synthesizer an "
          "MLP reading B's label (docs/results.md's set-up). paper (--table=copy, mnist_cnn "
          "and cifar10_cnn): as "
          f"full, {PAPER_COPY_WINDOWS} windows per Copy run, the paper's "
          "2.5 M iterations; the CNN at the paper's 128 filters and batch "
          "256 for the config's 40k steps.")


# absl prints the module docstring as --help's usage text.
__doc__ += "\nBudgets (``--budget``):\n\n" + budgets_text() + "\n"

_TABLE = flags.DEFINE_enum("table", None, TABLES, "Which table.")
_BUDGET = flags.DEFINE_enum("budget", "small", ["small", "full", "paper"],
                            budgets_text())
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/dni_jax/reproduce",
                               "Where the runs go.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "config.data.dir (MNIST IDX "
                                "files; CIFAR-10's extracted archive; PTB's "
                                "ptb.char.*.txt).")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per cell.")
_FIRST_SEED = flags.DEFINE_integer(
    "first_seed", 0, "Each cell's seeds are first_seed…first_seed+seeds−1 "
    "(e.g. --first_seed=3 for fresh seeds beside a table of seeds 0–2).")
_COPY_WINDOWS = flags.DEFINE_integer("copy_windows", _COPY_WINDOWS_DEFAULT,
                                     "Copy tables, full budget: windows per run.")
_ROWS = flags.DEFINE_list("rows", [], "Only these rows of the table (comma-"
                          "separated, e.g. 'copy T=3'); default: every row.")
_SET = flags.DEFINE_multi_string(
    "set", [], "field=value: a config field set in every cell, as "
    "--config.<field>=value would (repeat for several), e.g. "
    "--set=dni.sg_state=ch.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "If a cell's folder holds runs made by another "
    "config, delete them and start that cell over (else the table stops "
    "there and names the folder).")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show the runs' progress lines.")


def _shrink(config):
  """The small budget: narrow networks, a few dozen steps."""
  config.model.update(**SMALL_MODEL)
  config.dni.hidden = SMALL_SYNTH_HIDDEN
  config.dni.input_hidden = SMALL_SYNTH_HIDDEN  # complete unlock's models
  config.update(batch_size=SMALL_BATCH, eval_batch_size=256,
                num_steps=SMALL_STEPS, log_every=SMALL_STEPS // 3,
                eval_every=SMALL_STEPS // 2, checkpoint_every=SMALL_STEPS // 2)
  if "patience" in config:
    config.patience = 0
  return config


def cells(table: str, budget: str):
  """``[(row, column, config)]`` of a table."""
  out = []
  if table in ("mnist_fcn", "binary_addition"):
    depths = (3, 4, 5, 6) if table == "mnist_fcn" else (None,)
    for depth in depths:
      for method in ("backprop", "dni", "cdni"):
        config = importlib.import_module(f"configs.{table}").get_config()
        config.method = method
        if depth is not None:
          config.model.depth = depth
        row = f"depth {depth}" if depth else "binary addition"
        out.append((row, method, config))
  elif table == "copy":
    for task in ("copy", "repeat_copy"):
      for unroll in (2, 3, 4, 5):
        for method in ("bptt", "dni", "dni_aux"):
          config = importlib.import_module(f"configs.{task}").get_config()
          config.update(method=method, unroll=unroll)
          if budget == "full":
            config.num_steps = _COPY_WINDOWS.value
          elif budget == "paper":
            config.num_steps = PAPER_COPY_WINDOWS
          out.append((f"{task} T={unroll}", method, config))
  elif table in CNN_TABLES:
    module = importlib.import_module(f"configs.{table}")
    for method in CNN_METHODS:
      config = (module.get_config() if budget == "paper"
                else module.get_cpu_config())
      config.method = method
      out.append(("filters", method, config))  # the row: after _shrink
  elif table == "ptb_speed":
    for name, config in ptb_speed.configs(small=budget == "small"):
      out.append(("ptb_speed", name, config))
  elif table == "ptb_table1":
    for _, config in ptb_speed.configs(small=budget == "small",
                                       cells=ptb_speed.TABLE1_CELLS):
      out.append((f"ptb_char T={config.unroll}", config.method, config))
  elif table == "two_networks":
    full = TWO_NETWORKS_FULL
    for t in (2, 3, 4):
      for method in ("locked", "dni", "no_dni"):
        config = importlib.import_module("configs.two_networks").get_config()
        config.method = method
        config.two_networks.T = t
        config.model.width = full["width"]
        config.opt.learning_rate = full["learning_rate"]
        config.update(num_steps=full["episodes"], eval_every=500,
                      log_every=500, checkpoint_every=5000)
        if method == "dni":
          config.two_networks.sg_context = full["sg_context"]
          config.dni.synthesizer = "mlp"
          config.dni.hidden = full["hidden"]
        out.append((f"T={t}", method, config))
  else:
    for method in ("bptt", "dni", "dni_aux"):
      config = importlib.import_module("configs.ptb_char").get_config()
      config.method = method
      out.append(("ptb_char T=8", method, config))
  for _, _, config in out:
    if _DATA_DIR.value and table in ("mnist_fcn", *CNN_TABLES, *PTB_TABLES,
                                     "two_networks"):
      config.data.dir = _DATA_DIR.value
      if table == "two_networks":
        config.data.name = "mnist"  # else the config's generated digits
    if budget == "small":
      _shrink(config)
  for _, _, config in out:
    set_fields(config, _SET.value)
  if table in CNN_TABLES:
    out = [(f"{c.model.features} filters", m, c) for _, m, c in out]
  return _keep_rows(out, _ROWS.value)


# Fields that name a table's cells or seeds, and the flag that sets them.
CELL_FIELDS = {"method": "--rows (the columns are the table's own)",
               "unroll": "--rows", "model.depth": "--rows",
               "two_networks.T": "--rows",
               "data.name": "--data_dir", "data.dir": "--data_dir",
               "seed": "--seeds and --first_seed"}


def _parsers() -> dict:
  """A field's type → the parser ``--config.<field>=value`` uses for it."""
  from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
  from ml_collections.config_flags import tuple_parser  # pylint: disable=g-import-not-at-top
  return {float: absl_flags.FloatParser(), int: absl_flags.IntegerParser(),
          bool: absl_flags.BooleanParser(), str: absl_flags.ArgumentParser(),
          tuple: tuple_parser.TupleParser()}


def _field_paths(config, prefix: str = "") -> list:
  """Every leaf field of ``config``, dotted."""
  out = []
  for key, value in config.items():
    path = prefix + key
    out += (_field_paths(value, path + ".") if hasattr(value, "items")
            else [path])
  return out


def set_fields(config, assignments) -> None:
  """``field=value`` assignments into ``config``, each value read as
  ``--config.<field>=value`` reads it (by the field's type; a bare bool
  field is True; a tuple field given several times collects the values);
  ValueError, one paragraph, names what is wrong and the fix."""
  from ml_collections.config_flags import config_path  # pylint: disable=g-import-not-at-top
  parsers, tuples = _parsers(), {}
  for assignment in assignments:
    field, sep, text = assignment.partition("=")
    field = field.strip().removeprefix("config.")
    if not field:
      raise ValueError(f"--set={assignment!r} is not field=value; write e.g. "
                       "--set=dni.sg_state=ch")
    if field in CELL_FIELDS:
      raise ValueError(f"--set={assignment!r} changes {field}, which names "
                       "the table's cells or seeds; give "
                       f"{CELL_FIELDS[field]} instead")
    try:
      kind = config_path.get_type(field, config)
    except (AttributeError, KeyError) as e:
      import difflib  # pylint: disable=g-import-not-at-top
      close = difflib.get_close_matches(field, _field_paths(config), n=3)
      hint = (f"did you mean {' or '.join(close)}?" if close else
              "e.g. dni.sg_state, opt.learning_rate, num_steps")
      raise ValueError(f"--set={assignment!r}: the table's configs have no "
                       f"field {field!r}; {hint} (the fields are those "
                       "--config.<field> takes)") from e
    if kind not in parsers:
      group = config_path.get_value(field, config)
      what = ("a group of fields; set one of them, e.g. "
              f"{_field_paths(group, field + '.')[0]}"
              if hasattr(group, "items")
              else f"of type {getattr(kind, '__name__', kind)}, which --set "
              "cannot read")
      raise ValueError(f"--set={assignment!r}: {field} is {what}")
    if not sep and kind is not bool:
      raise ValueError(f"--set={assignment!r} gives {field} no value; write "
                       f"--set={field}=<value>")
    try:
      value = parsers[kind].parse(text if sep else "true")
    except ValueError as e:
      old = config_path.get_value(field, config)
      a = "an" if kind.__name__ == "int" else "a"
      raise ValueError(
          f"--set={assignment!r}: {text!r} is not a value for {field}, "
          f"{a} {kind.__name__} field (now {old!r}); give {a} {kind.__name__}"
      ) from e
    if kind is tuple:
      value = tuples[field] = tuples.get(field, ()) + tuple(value)
    config_path.set_value(field, config, value)


def _keep_rows(out, rows):
  """The cells of ``rows`` (all when empty); ValueError for an unknown row."""
  if not rows:
    return out
  known = list(dict.fromkeys(r for r, _, _ in out))
  unknown = [r for r in rows if r not in known]
  if unknown:
    raise ValueError(f"--rows names {', '.join(map(repr, unknown))}, not a "
                     f"row of this table; its rows are "
                     f"{', '.join(map(repr, known))}")
  return [cell for cell in out if cell[0] in rows]


def value(table: str, summary: dict) -> dict:
  """The numbers a table shows from one run's summary."""
  if table == "mnist_fcn":
    return {"test error %": 100 * (1 - summary["test"]["accuracy"])}
  if table in CNN_TABLES:
    return {"test error %": 100 * (1 - summary["test"]["accuracy"]),
            "wall s": summary.get("seconds")}
  if table == "binary_addition":
    return {"whole-sum acc %": 100 * summary["test"]["exact_match"],
            "bit acc %": 100 * summary["test"]["accuracy"]}
  if table == "copy":
    return {"max length solved": summary["max_length_solved"] or 0,
            "T_task solved": summary.get("max_task_length_solved") or 0}
  return {"best valid bpc": summary["best_valid_bpc"],
          "test bpc": summary["test_bpc_at_best_valid"]}


def describe(table: str, budget: str, seeds: Sequence[int],
             workdir: str) -> str:
  """What ``reproduce`` is about to run: the budget, the cells, the seeds."""
  table_cells = cells(table, budget)
  rows = list(dict.fromkeys(r for r, _, _ in table_cells))
  columns = list(dict.fromkeys(c for _, c, _ in table_cells))
  steps = sorted({c.num_steps for _, _, c in table_cells})
  unit = ("windows" if table in ("copy", *PTB_TABLES) else
          "episodes" if table == "two_networks" else "steps")
  each = (f"{steps[0]} {unit}" if len(steps) == 1
          else f"{steps[0]}–{steps[-1]} {unit}")
  batch = sorted({c.batch_size for _, _, c in table_cells})
  if budget == "small":
    how = (f"narrow networks (width {SMALL_MODEL['width']}, synthesizer "
           f"hidden {SMALL_SYNTH_HIDDEN}): a check that the table runs, not "
           "its numbers")
  elif table in CNN_TABLES:
    how = ("the paper's CNN (128 filters)" if budget == "paper" else
           f"the CNN at 32 filters (configs/{table}.get_cpu_config)" +
           (": docs/results.md's numbers" if table == "mnist_cnn" else ""))
  elif table == "two_networks":
    full = TWO_NETWORKS_FULL
    how = (f"A of {full['width']} units, Adam {full['learning_rate']:g}, "
           f"dni's synthesizer an MLP of "
           f"{'-'.join(map(str, full['hidden']))} units reading B's "
           f"{full['sg_context']}: docs/results.md's set-up, on " +
           ("MNIST digits" if _DATA_DIR.value else
            "generated digits (docs/results.md's are MNIST: --data_dir)"))
  elif budget == "paper":
    how = "the configs' own networks for the paper's 2.5 M iterations"
  else:
    how = "the configs' own networks: the README's numbers"
  return "\n".join([
      f"[reproduce] table {table}, budget {budget}: {len(table_cells)} cells "
      f"× {_seed_text(seeds)} = {len(table_cells) * len(seeds)} runs of "
      f"{each} each "
      f"(batch {'/'.join(map(str, batch))}), {how}; into "
      f"{os.path.join(workdir, table)}",
      f"[reproduce] cells: {', '.join(rows)} × {', '.join(columns)}"] +
      ([f"[reproduce] every cell with {', '.join(_SET.value)} (over the "
        "values above)"] if _SET.value else []))


def _cell_text(values: list) -> str:
  if any(v is None for v in values):
    return "-"  # e.g. a run whose summary has no wall time
  from dni_jax.training import results  # pylint: disable=g-import-not-at-top
  s = results.stats(values)
  return f"{s['mean']:.4g} ± {s['std']:.2g}"


def _seed_text(seeds: Sequence[int]) -> str:
  """``3 seeds`` for seeds 0…2, ``3 seeds (3–5)`` for any others."""
  text = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
  if seeds[0] == 0:
    return text
  return text + (f" ({seeds[0]})" if len(seeds) == 1
                 else f" ({seeds[0]}–{seeds[-1]})")


def _sweep(config, seeds: Sequence[int], folder: str) -> dict:
  """The cell's seeds as one vmapped sweep; ``{member: summary}``."""
  from dni_jax.training import sweep  # pylint: disable=g-import-not-at-top
  out = io.StringIO()
  redirect = (contextlib.nullcontext() if _VERBOSE.value
              else contextlib.redirect_stdout(out))
  with redirect:
    return sweep.run_sweep(config, [{"seed": s} for s in seeds],
                           folder, _OVERWRITE.value)


def _window_seconds(table_cells) -> dict:
  """Each cell's median seconds per window, measured side by side.

  The jitted program each run trains with (``windows_per_call`` windows a
  call), compiled first, then timed in interleaved rounds
  (``experiments.timing``).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from dni_jax.training import recurrent  # pylint: disable=g-import-not-at-top
  runs, per_call = {}, {}
  for _, name, config in table_cells:
    loop = recurrent.make_loop(config)
    fn = loop.multi_step or loop.step
    per_call[name] = loop.steps_per_call if loop.multi_step else 1
    state, metrics = fn(loop.init(), 0)
    jax.block_until_ready(metrics)
    runs[name] = (lambda s, _, fn=fn: fn(s, 0), state)
  samples = timing.interleaved_samples(runs, None, rounds=5, steps=10)
  return {n: statistics.median(v) / per_call[n] for n, v in samples.items()}


def reproduce_ptb_speed(budget: str, workdir: str,
                        seeds: Sequence[int]) -> str:
  """The speed table (``experiments.ptb_speed``) of every cell's seeds."""
  import jax  # pylint: disable=g-import-not-at-top
  from dni_jax.training.metrics_log import read_metrics  # pylint: disable=g-import-not-at-top
  table_cells = cells("ptb_speed", budget)
  runs, unroll = {}, {}
  for _, name, config in table_cells:
    folder = os.path.join(workdir, "ptb_speed", name)
    summaries = _sweep(config, seeds, folder)
    runs[name] = [(read_metrics(os.path.join(folder, f"seed={s}",
                                             "metrics.jsonl")),
                   summaries[f"seed={s}"]) for s in seeds]
    unroll[name] = config.unroll
    print(f"[reproduce] ptb_speed {name}: best valid bpc " + ", ".join(
        f"{s['best_valid_bpc']:.4f}" for _, s in runs[name]), flush=True)
  seconds = _window_seconds(table_cells)
  batch = table_cells[0][2].batch_size
  sec_per_char = ptb_speed.seconds_per_char(
      seconds, unroll, batch, root=os.path.join(workdir, "ptb_speed"))
  timings = "\n".join(
      f"- {name}: {1e3 * s:.3f} ms per window of {batch} × {unroll[name]} "
      f"characters" for name, s in seconds.items())
  return (ptb_speed.table(runs, sec_per_char) + "\n\nSeconds per window, "
          f"measured side by side on {jax.devices()[0].device_kind} (5 "
          f"interleaved rounds, median):\n{timings}")


def reproduce_two_networks(budget: str, workdir: str,
                           seeds: Sequence[int]) -> str:
  """Every cell's seeds, then ``experiments.two_networks_table`` of them."""
  from experiments import two_networks_table  # pylint: disable=g-import-not-at-top
  root = os.path.join(workdir, "two_networks")
  for row, method, config in cells("two_networks", budget):
    summaries = _sweep(config, seeds, os.path.join(root, row.replace(
        "=", ""), method))
    print(f"[reproduce] two_networks {row} {method}: test error of A, B % "
          + ", ".join(f"{100 * s['test']['a_error']:.2f}, "
                      f"{100 * s['test']['b_error']:.2f}"
                      for s in summaries.values()), flush=True)
  return two_networks_table.table(root)


def reproduce(table: str, budget: str, workdir: str,
              seeds: Sequence[int]) -> str:
  """Runs every cell's seeds (vmapped); returns the Markdown table."""
  if table == "ptb_speed":
    return reproduce_ptb_speed(budget, workdir, seeds)
  if table == "two_networks":
    return reproduce_two_networks(budget, workdir, seeds)
  grid: dict = {}
  for row, column, config in cells(table, budget):
    name = f"{row}_{column}".replace(" ", "_").replace("=", "")
    summaries = _sweep(config, seeds, os.path.join(workdir, table, name))
    numbers = [value(table, summaries[f"seed={s}"]) for s in seeds]
    for key in numbers[0]:
      grid.setdefault((row, key), {})[column] = _cell_text(
          [n[key] for n in numbers])
    print(f"[reproduce] {row} {column}: " + ", ".join(
        f"{k} {grid[(row, k)][column]}" for k in numbers[0]), flush=True)
  columns = list(dict.fromkeys(c for _, c, _ in cells(table, budget)))
  lines = [f"| {table} ({budget}, {_seed_text(seeds)}, mean ± std) | " +
           " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
  for (row, key), by_column in grid.items():
    lines.append(f"| {row}: {key} | " + " | ".join(
        by_column.get(c, "-") for c in columns) + " |")
  return "\n".join(lines)


def _check_cells(table: str, budget: str) -> None:
  """ValueError (one paragraph) for a bad --rows or --set, or a cell's config
  that a run would refuse, before any cell starts."""
  from dni_jax.training import families  # pylint: disable=g-import-not-at-top
  for row, column, config in cells(table, budget):
    try:
      families.validate(config)
    except (ValueError, TypeError) as e:
      text = str(e).replace("--config.data.dir", "--data_dir").replace(
          "--config.", "--set=")
      raise ValueError(f"cell {row} × {column}: {text}") from e


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}: every option is a flag, e.g. "
          "--table=copy (see --help)")
  if _TABLE.value is None:
    _fail(f"give --table, one of {', '.join(TABLES)} (see --help for the "
          "tables and the budgets)")
  if _BUDGET.value == "paper" and _TABLE.value not in PAPER_TABLES:
    _fail(f"--budget=paper (the paper's Copy iterations, the paper's CNN) "
          f"applies to --table={', '.join(PAPER_TABLES[:-1])} and "
          f"{PAPER_TABLES[-1]} only; use "
          f"--budget=full for {_TABLE.value}")
  if _SEEDS.value < 1 or _FIRST_SEED.value < 0:
    _fail(f"--seeds={_SEEDS.value} --first_seed={_FIRST_SEED.value}: each "
          "cell needs at least one seed (--seeds=1 or more), from a first "
          "seed of 0 or more (e.g. --seeds=3 --first_seed=3 for seeds 3, 4, "
          "5).")
  seeds = list(range(_FIRST_SEED.value, _FIRST_SEED.value + _SEEDS.value))
  try:
    _check_cells(_TABLE.value, _BUDGET.value)
  except ValueError as e:
    _fail(str(e))
  timing.quiet_logs()
  print(describe(_TABLE.value, _BUDGET.value, seeds, _WORKDIR.value),
        flush=True)
  from dni_jax.training import host_memory  # pylint: disable=g-import-not-at-top
  from dni_jax.training import report  # pylint: disable=g-import-not-at-top
  print(report.devices_line(), flush=True)
  host_memory.keep_freed_memory()
  try:
    text = reproduce(_TABLE.value, _BUDGET.value, _WORKDIR.value, seeds)
  except KeyboardInterrupt:
    print("\ninterrupted; rerun the same command to resume every cell from "
          "its last checkpoint", file=sys.stderr, flush=True)
    sys.exit(130)
  except Exception as e:  # pylint: disable=broad-except
    from dni_jax.errors import DNIError  # pylint: disable=g-import-not-at-top
    if not isinstance(e, DNIError) and cli.os_error(e) is None:
      raise  # unexpected: the traceback
    cli.fail(cli.error_paragraph(e, _WORKDIR.value))
  if _SET.value:
    text += f"\n\nEvery cell with {', '.join(_SET.value)}."
  print(text)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  path = os.path.join(_WORKDIR.value, f"{_TABLE.value}_{_BUDGET.value}.md")
  with open(path, "w") as f:
    f.write(text + "\n")
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
