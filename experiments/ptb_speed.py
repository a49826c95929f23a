"""The PTB speed table: characters and wall time to a common BPC.

The claim (the paper's §3.1, the DeepMind post): DNI+Aux at T = 5 reaches
BPTT-20's BPC with 58 % of the data and in half the wall-clock time; DNI at
T = 8 matches BPTT at T = 40 about twice as fast. ``reproduce
--table=ptb_speed`` trains the cells below (each cell's seeds as one sweep,
run one after another since each stops early on valid on its own), then
prints for each: best valid
BPC, test BPC at the best valid, and the characters and the wall-clock time
each needed to first reach (a) BPTT-20's best valid BPC (the mean over its
seeds) and (b) an easier level that every run reaches (the worst run's best
valid BPC).

Every cell has the same budget in *characters* (``CHARS``: 30,720 windows
of 32 × 8 at T = 8), so the number of windows differs with T, and evaluates
every ``EVAL_CHARS`` characters (at T = 3, the whole 8-window calls below
that: 6,824 windows, 655,104 characters). ``TABLE1_CELLS`` are the paper's
Table 1 on PTB at the same budget (``reproduce --table=ptb_table1``). Runs
that resume across several sittings have no honest wall time, so wall time
= characters × the seconds per character of the cell's window step,
measured here side by side
(interleaved rounds, ``experiments.timing``) on this device and printed
beside the table. ``seconds_per_char(..., root=<workdir>/ptb_speed)`` also
writes them to ``<workdir>/ptb_speed/seconds_per_char.json`` (``{cell:
s/char}``), from which the learning curves are drawn against the same wall
time:

  python -m experiments.plot <workdir>/ptb_speed --x=wall --out=ptb_wall.png
"""

from __future__ import annotations

import importlib
import json
import os
import statistics

# (method, T) of every cell, in the table's order.
# BPTT at T = 5 and 8 is the same-T baseline of DNI and DNI+Aux (the paper's
# Table 1); at T = 20 and 40 the longer-window baselines of its speed claim.
CELLS = (("bptt", 5), ("bptt", 8), ("bptt", 20), ("bptt", 40), ("dni", 5),
         ("dni", 8), ("dni_aux", 5), ("dni_aux", 8))
# The PTB row of the paper's Table 1: every method at T = 2, 3, 4, 5 and 8.
TABLE1_UNROLLS = (2, 3, 4, 5, 8)
TABLE1_CELLS = tuple((m, t) for t in TABLE1_UNROLLS
                     for m in ("bptt", "dni", "dni_aux"))
BATCH = 32
# An evaluation every 655,360 characters: 4096, 2560, 1024 and 512 windows
# at T = 5, 8, 20 and 40, each a multiple of the 8 windows of a call.
EVAL_CHARS = 2_560 * BATCH * 8
CHARS = 12 * EVAL_CHARS  # 7.86 M characters per run
# ``{cell: s/char}`` of the cells under a folder, as measured side by side.
SECONDS_PER_CHAR_FILE = "seconds_per_char.json"


def cell_name(method: str, unroll: int) -> str:
  return f"{method}_T{unroll}"


def configs(small: bool = False, cells=CELLS):
  """``[(name, config)]`` of ``cells`` (``small``: seconds on a CPU)."""
  out = []
  for method, unroll in cells:
    config = importlib.import_module("configs.ptb_char").get_config()
    config.update(method=method, unroll=unroll, batch_size=BATCH)
    if not small:
      # windows per evaluation: EVAL_CHARS' worth, in whole calls
      call = config.windows_per_call
      every = EVAL_CHARS // (BATCH * unroll) // call * call
      config.update(num_steps=CHARS // EVAL_CHARS * every, eval_every=every,
                    checkpoint_every=every, log_every=every)
    out.append((cell_name(method, unroll), config))
  return out


def valid_curve(records: list[dict]) -> list[tuple[float, float]]:
  """``[(chars, valid bpc)]`` of a run's evaluation records, in order."""
  return [(r["chars"], r["bpc"]) for r in records if r["split"] == "valid"]


def chars_to_reach(curve, target: float) -> float | None:
  """The characters at the first evaluation at or below ``target``."""
  for chars, bpc in curve:
    if bpc <= target:
      return chars
  return None


def seconds_per_char(step_seconds: dict, unroll: dict, batch: int,
                     root: str | None = None) -> dict:
  """``{cell: s/char}`` from each cell's median seconds per window; given
  ``root`` (the folder of the cells' runs), also written to
  ``<root>/SECONDS_PER_CHAR_FILE`` for ``experiments.plot --x=wall``."""
  out = {c: s / (batch * unroll[c]) for c, s in step_seconds.items()}
  if root is not None:
    write_seconds_per_char(root, out)
  return out


def write_seconds_per_char(root: str, sec_per_char: dict) -> str:
  """Writes ``{cell: s/char}`` to ``<root>/SECONDS_PER_CHAR_FILE``
  (atomically); returns its path."""
  from dni_jax.training import files  # pylint: disable=g-import-not-at-top
  os.makedirs(root, exist_ok=True)
  path = os.path.join(root, SECONDS_PER_CHAR_FILE)
  files.write_atomic(path, json.dumps(
      {c: float(v) for c, v in sec_per_char.items()}, indent=1) + "\n")
  return path


def _mean(values):
  values = [v for v in values if v is not None]
  return statistics.mean(values) if values else None


def _text(values, scale=1.0, digits=3):
  got = [v for v in values if v is not None]
  if not got:
    return "never"
  mean = statistics.mean(got) * scale
  std = statistics.stdev(got) * scale if len(got) > 1 else 0.0
  missing = f" ({len(values) - len(got)} never)" if len(got) < len(values) \
      else ""
  return f"{mean:.{digits}g} ± {std:.2g}{missing}"


def table(runs: dict, sec_per_char: dict) -> str:
  """The Markdown table of ``runs`` = ``{cell: [(records, summary), ...]}``
  (one entry per seed)."""
  best = {c: [s["best_valid_bpc"] for _, s in r] for c, r in runs.items()}
  target = _mean(best[cell_name("bptt", 20)]) if cell_name(
      "bptt", 20) in best else None
  easy = max(b for bs in best.values() for b in bs if b is not None)
  lines = [
      f"Targets: BPTT-20's best valid BPC {target:.4f} (mean over its "
      f"seeds); the easier level every run reaches {easy:.4f}.",
      "",
      "| cell | seeds | best valid BPC | test BPC at best valid | M chars to "
      "BPTT-20's best | wall s to it | M chars to the easier level | wall s "
      "to it | µs per char |",
      "|---|---|---|---|---|---|---|---|---|"]
  for cell, seed_runs in runs.items():
    curves = [valid_curve(records) for records, _ in seed_runs]
    to_target = [chars_to_reach(c, target) for c in curves]
    to_easy = [chars_to_reach(c, easy) for c in curves]
    spc = sec_per_char[cell]
    wall = lambda chars: [None if x is None else x * spc for x in chars]
    lines.append(
        f"| {cell} | {len(seed_runs)} | {_text(best[cell], digits=4)} | "
        f"{_text([s['test_bpc_at_best_valid'] for _, s in seed_runs], digits=4)}"
        f" | {_text(to_target, 1e-6)} | {_text(wall(to_target))} | "
        f"{_text(to_easy, 1e-6)} | {_text(wall(to_easy))} | "
        f"{1e6 * spc:.3f} |")
  return "\n".join(lines)
