"""Repeat Copy (Graves et al. 2014) with recurrent DNI: BPTT vs DNI vs DNI+Aux.

  python -m experiments.main --config=configs/repeat_copy.py \\
      --workdir=workdirs/repeat_copy_T3 --config.unroll=3

As Copy, but the delimiter step also gives a repeat count R, drawn per
episode uniformly in 1..R_max and input as R / data.max_repeats; the LSTM
writes the sequence R times, then an end marker. The curriculum grows both
the length N and R_max (from data.start_repeats): each time a level is
solved it grows N, then R_max, then N, ..., R_max stopping at
data.max_repeats (after which only N grows). The score is the paper's
episode length T_task = N·R_max + 3 of the longest level solved
(``max_task_length_solved``; ``max_length_solved`` is its N). Generated
data, no download.

Measured results (scored in N, with R uniform in a fixed 1..3, before this
curriculum): docs/results.md. All cells:
``python -m experiments.reproduce --table=copy --budget=full``.
"""

from configs import copy


def get_config():
  config = copy.get_config()
  config.data.name = "repeat_copy"
  config.data.max_repeats = 10
  config.data.start_repeats = 1
  return config


def get_sweep():
  """Every method × seeds 0–2 (``python -m experiments.sweep``); the seeds
  of a method train as one vmapped program."""
  return [{"method": m, "seed": s} for m in ("bptt", "dni", "dni_aux")
          for s in range(3)]
