"""Copy (Graves et al. 2014) with recurrent DNI: BPTT vs DNI vs DNI+Aux.

  python -m experiments.main --config=configs/copy.py --workdir=workdirs/copy_T3 \\
      --config.unroll=3

An LSTM reads random 8-bit vectors, a delimiter, then writes them back. The
sequence length grows by one whenever the error over the last
``data.check_every`` steps is under 0.15 bits per episode; the score is the
longest length N solved (``max_length_solved`` in metrics.jsonl and the
table; the paper counts T_task = N + 3). Generated data, no download.
The method: docs/method.md.

Expected: longest length solved at T = 3: BPTT 1, DNI 3, DNI+Aux 2 (T = 2:
1 / 2 / 1; T = 5: 3 / 3 / 3), every seed alike, after 100k windows
(``--config.num_steps=100000``; 3 seeds, docs/results.md); one seed at 15k
windows gave the same lengths in 1–3 min per run on one core. All cells:
``python -m experiments.reproduce --table=copy --budget=full``.
"""

from configs import recurrent


def get_config():
  config = recurrent.get_config()
  config.data.name = "copy"
  config.data.num_bits = 8
  config.data.start_length = 1
  config.data.check_every = 200
  config.unroll = 3
  config.num_steps = 20_000
  config.log_every = 1000
  config.eval_every = 1000  # unused: the training stream is the measure
  config.checkpoint_every = 5000
  return config


def get_sweep():
  """Every method × seeds 0–2 (``python -m experiments.sweep``); the seeds
  of a method train as one vmapped program."""
  return [{"method": m, "seed": s} for m in ("bptt", "dni", "dni_aux")
          for s in range(3)]
