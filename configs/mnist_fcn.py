"""MNIST, the paper's FCN: 3 stages of Linear→BN→ReLU(256), a linear synthesizer per boundary.

  python -m experiments.main --config=configs/mnist_fcn.py --workdir=/tmp/dni/mnist_fcn \\
      --config.method=backprop,dni,cdni --config.data.dir=../shared/data/mnist

``--config.model.depth`` sets 3 to 6 stages. Without ``data.dir`` the data
comes from tensorflow-datasets. The paper trains 500k steps at 3e-5; this
config scales that to 40k steps at 1e-4.

Expected: test error 1.793 ± 0.095 % (backprop), 2.167 ± 0.15 % (DNI) and
1.493 ± 0.075 % (cDNI) at depth 3 after 40k steps (3 seeds, docs/results.md);
at depth 6, 1.847 ± 0.12 %, 3.693 ± 0.15 % and 1.693 ± 0.11 %. About 4–7 min
per method on a 2-core CPU. All depths, 3 seeds each:
``python -m experiments.reproduce --table=mnist_fcn --budget=full
--data_dir=../shared/data/mnist``.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.method = "dni"
  config.data.name = "mnist"
  config.model.kind = "fcn"
  config.model.depth = 3
  config.model.width = 256
  config.opt.learning_rate = 1e-4
  config.opt.decay_steps = (24_000, 32_000)  # the paper's 300k/400k of 500k, scaled
  config.batch_size = 256
  config.num_steps = 40_000
  config.log_every = 500
  config.eval_every = 2000
  config.checkpoint_every = 10_000
  return config


def get_sweep():
  """Every method × seeds 0–2 (``python -m experiments.sweep``); the seeds
  of a method train as one vmapped program."""
  return [{"method": m, "seed": s} for m in ("backprop", "dni", "cdni")
          for s in range(3)]
