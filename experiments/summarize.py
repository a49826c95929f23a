"""Seeds into error bars: every run under a folder, grouped by what differs.

  python -m experiments.summarize DIR [--metrics=error,b_error] [--split=train]
      [--at=STEP]

Finds every run under ``DIR`` (a folder with ``config.json`` and
``metrics.jsonl``, at any depth), groups the runs whose configs differ only
in ``seed`` (and in the fields a run may change on resume: step budget,
cadence, data location), and prints per group and metric the final value
and the best value over the run's evaluations as ``mean ± std`` (sample
standard deviation, n − 1) with min/max and the number of seeds (a group of
one seed has no spread: ``value (n = 1)``). A group is
named by the config fields that tell the groups apart (e.g.
``method=cdni model.depth=6``); a field missing from some configs (written
before the field existed) counts only where present. The table is also written as
``DIR/summary.md`` and ``DIR/summary.csv``.

``--at=STEP`` reads every run as it stood at ``STEP`` (its newest record
at or before it; "best" over those), to set runs of different budgets side
by side; a run whose records end before ``STEP``, begin after it or do
not exist yet is refused by name. The
table is then printed only (``summary.md`` keeps the runs' full length).

The split read is ``--split``; unset, each group reads the first of test,
valid and train that its runs log (Copy and Repeat Copy log only train
records: their curriculum trains on generated sequences and holds nothing
out). The table names the split of each row.

``error`` is derived as ``1 − accuracy`` where a run logs accuracy; "best"
is the maximum of accuracy-like metrics (accuracy, exact_match,
max_length_solved) and of a synthesizer's fit (cosine, grad_cosine/<i>,
sg_r2), and the minimum of the others. Errors (a folder that does
not exist, one without runs) are one paragraph starting with ``error:``.
"""

from __future__ import annotations

from absl import app
from absl import flags

from experiments import cli

from dni_jax.errors import DNIError
from dni_jax.training import results

_METRICS = flags.DEFINE_list(
    "metrics", [], "Metrics to report; empty: every metric of the split.")
_SPLIT = flags.DEFINE_string(
    "split", None, "The split whose records count; unset: per group, the "
    "first of test, valid, train that its runs log.")
_AT = flags.DEFINE_integer(
    "at", None, "Read every run as it stood at this step (its newest record "
    "at or before it); unset: at its last record.")
_SCALE = flags.DEFINE_float(
    "scale", 1.0, "Multiply every value (e.g. 100 for errors in percent).")


def main(argv):
  if len(argv) != 2:
    cli.fail("give one folder: python -m experiments.summarize DIR "
             f"[--metrics=error] [--split=train] (got {len(argv) - 1}).")
  root = argv[1]
  try:
    if _AT.value is not None and _AT.value < 1:
      raise DNIError(f"--at={_AT.value}: give a step of 1 or more.")
    rows = results.summarize(root, _SPLIT.value, tuple(_METRICS.value),
                             _SCALE.value, at=_AT.value)
  except (FileNotFoundError, DNIError) as e:
    cli.fail(str(e))
  print(results.markdown(rows))
  if _AT.value is None:
    results.write_summary(root, rows)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
