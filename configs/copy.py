"""Copy (Graves et al. 2014) with recurrent DNI: BPTT vs DNI vs DNI+Aux.

  python -m experiments.main --config=configs/copy.py --workdir=workdirs/copy_T3 \\
      --config.unroll=3

An LSTM reads random 8-bit vectors, a delimiter, then writes them back. The
sequence length grows by one whenever the error over the last
``data.check_every`` steps is under 0.15 bits per episode (wrong bits; the
paper's "0.15 bits error" names no unit, and ``data.error_measure`` picks
another reading: dni_jax/data/copy_tasks.py); the score is the
paper's episode length T_task = N + 3 of the longest length N solved
(``max_task_length_solved`` in metrics.jsonl and the table;
``max_length_solved`` is N). Generated data, no download.
The method: docs/method.md.

Measured results (scored in N): docs/results.md. All cells:
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
