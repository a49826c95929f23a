"""Binary addition: backprop vs DNI vs cDNI, the classic synthetic-gradient demo.

  python -m experiments.main --config=configs/binary_addition.py --workdir=/tmp/dni/binary_addition

(This is also what ``python -m experiments.main`` runs with no --config.) A
3-layer sigmoid network (16 → 128 → 64 → 8) adds two 7-bit numbers; a linear
synthesizer sits after each hidden layer; cDNI's synthesizers also see the
target bits. No download: every one of the 16,384 pairs is enumerated and 20%
are held out. Prints a comparison table of bit accuracy, whole-sum accuracy
("exact") and the first evaluation (every 500 steps) at which each method
gets every held-out sum right.

Expected (12k steps, seed 0, 2-core CPU, 14 s for the three methods;
docs/results.md): cDNI gets every held-out sum right from step 8,000;
backprop ends at 98.4 % of held-out sums (98.6 % best), not 100 % within
12k; unconditioned DNI stays at chance (about 50 % of bits). Float rounding
differs between CPUs, so the step at which cDNI reaches 100 % can move.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.method = "backprop,dni,cdni"
  config.data.name = "binary_addition"
  config.model.kind = "mlp"
  config.model.hidden = (128, 64)
  config.model.activation = "sigmoid"
  config.model.use_batch_norm = False
  config.opt.learning_rate = 1e-2
  config.opt.synth_learning_rate = 1e-3
  config.batch_size = 128
  config.eval_batch_size = 4096
  config.num_steps = 12_000
  config.log_every = 1000
  config.eval_every = 500  # also the resolution of 'steps to 100%'
  config.checkpoint_every = 4000
  return config


def get_sweep():
  """Every method × seeds 0–2 (``python -m experiments.sweep``); the seeds
  of a method train as one vmapped program."""
  return [{"method": m, "seed": s} for m in ("backprop", "dni", "cdni")
          for s in range(3)]
