"""Penn Treebank characters with recurrent DNI: BPTT vs DNI vs DNI+Aux at T=8.

  python -m experiments.main --config=configs/ptb_char.py --workdir=workdirs/ptb \\
      --config.data.dir=../shared/data/ptb

Reads ptb.char.{train,valid,test}.txt from data.dir (`_` is the word
boundary; vocabulary from the training split). Logs bits per character on
the training windows, and on valid and test every ``eval_every`` steps; stops
early when valid stops improving. ``--config.data.name=tiny_shakespeare``
trains on tiny_shakespeare from tensorflow-datasets instead.

Expected, after 30k windows (``--config.num_steps=30000
--config.eval_every=5000 --config.eval_batch_size=256 --config.patience=0``;
5 seeds, docs/results.md): test BPC 1.662 ± 0.0024 (BPTT) and 1.674 ± 0.0043
(DNI, the synthetic gradient on the LSTM's output h; no seed diverges). About
5 min per run on one CPU core. The paper (an LSTM of 1024, trained to
convergence) reports 1.35 / 1.34 / 1.33 for BPTT / DNI / DNI+Aux.
"""

from configs import recurrent


def get_config():
  config = recurrent.get_config()
  config.data.name = "ptb_char"
  config.data.dir = ""  # folder with ptb.char.*.txt, e.g. ../shared/data/ptb
  config.opt.learning_rate = 2e-3
  config.unroll = 8
  config.eval_batch_size = 128  # evaluation streams
  config.num_steps = 40_000
  config.log_every = 500
  config.eval_every = 4000
  config.checkpoint_every = 4000
  config.patience = 3
  return config


def get_sweep():
  """Every method × seeds 0–2 (``python -m experiments.sweep``); the seeds
  of a method train as one vmapped program."""
  return [{"method": m, "seed": s} for m in ("bptt", "dni", "dni_aux")
          for s in range(3)]
