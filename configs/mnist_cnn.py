"""MNIST, the paper's CNN: 3 stages of 5×5 conv(128)→BN→ReLU→max-pool, conv synthesizers.

  python -m experiments.main --config=configs/mnist_cnn.py --workdir=/tmp/dni/mnist_cnn \\
      --config.method=cdni --config.data.dir=../shared/data/mnist

The synthesizers are the paper's conv stack (two 5×5 conv layers with BN+ReLU,
then a zero-initialised 5×5 conv). Slow on a CPU: on the 2-core development
machine a step took 1.1 s with backprop and 2.9 s with cDNI (batch 256), so
the default 40k steps need an accelerator
(``python -m experiments.benchmark --model=cnn`` times the step anywhere;
docs/performance.md).

Expected: no result at this size yet. A reduced CNN
(``--config.model.features=16 --config.dni.hidden='(16,16)'
--config.dni.input_hidden='(16,)' --config.batch_size=64``, 1.5k steps;
3 seeds, docs/results.md) reached test error 4.19 ± 0.21 % with backprop,
4.85 ± 0.07 % with cDNI and 27.8 ± 1.5 % with complete unlock
(``cdni_unlocked``); complete unlock at 6k steps (``--config.num_steps=6000
--config.opt.decay_steps='(3600,4800)'``) reached 6.75 %, and 4.55 % with
pooling input models (``--config.dni.input_hidden='(16,16)'
--config.dni.input_pool=True``), one seed each.
"""

from configs import mnist_fcn


def get_config():
  config = mnist_fcn.get_config()
  config.model.kind = "cnn"
  config.model.features = 128
  config.dni.synthesizer = "conv"
  config.dni.hidden = (128, 128)
  # Complete unlock (dni_unlocked / cdni_unlocked): conv input models.
  config.dni.input_model = "conv"
  config.dni.input_hidden = (64,)
  return config
