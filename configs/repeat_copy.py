"""Repeat Copy (Graves et al. 2014) with recurrent DNI: BPTT vs DNI vs DNI+Aux.

  python -m experiments.main --config=configs/repeat_copy.py \\
      --workdir=workdirs/repeat_copy_T3 --config.unroll=3

As Copy, but the delimiter step also gives a repeat count R (uniform in
1..data.max_repeats, input as R/max_repeats); the LSTM writes the sequence R
times, then an end marker. The curriculum lengthens the sequence N (R stays
random); the score is the longest N solved. Generated data, no download.

Expected: longest length solved at T = 3: BPTT 0, DNI 2, DNI+Aux 2 (T = 2:
0 / 1.67 ± 0.58 / 2; T = 5: 1 / 4 / 3) after 100k windows
(``--config.num_steps=100000``; 3 seeds, docs/results.md). All cells:
``python -m experiments.reproduce --table=copy --budget=full``.
"""

from configs import copy


def get_config():
  config = copy.get_config()
  config.data.name = "repeat_copy"
  config.data.max_repeats = 3
  return config


def get_sweep():
  """Every method × seeds 0–2 (``python -m experiments.sweep``); the seeds
  of a method train as one vmapped program."""
  return [{"method": m, "seed": s} for m in ("bptt", "dni", "dni_aux")
          for s in range(3)]
