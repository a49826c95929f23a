"""CIFAR-10 with the paper's CNN (3 stages of 5×5 conv(128)→BN→ReLU→pool), conv synthesizers.

  python -m experiments.main --config=configs/cifar10_cnn.py --workdir=/tmp/dni/cifar10_cnn \\
      --config.method=cdni --config.data.dir=/path/to/cifar-10-batches-py

Needs an accelerator at its 128 filters (``--budget=paper`` below): on the
2-core development CPU the MNIST-sized step took 1.1 s (backprop) to 2.9 s
(cDNI); see mnist_cnn.py. The 32-filter ``get_cpu_config()`` has not been
timed on CIFAR-10's 32×32×3 images.

Every method, 3 seeds: ``python -m experiments.reproduce
--table=cifar10_cnn --budget=paper --data_dir=/path/to/cifar-10`` (the
paper's 128 filters); ``--budget=full``: 32 filters, 6k steps of batch 64
(``get_cpu_config()``, as ``configs/mnist_cnn.py``'s).

Expected: not measured yet (docs/results.md lists it under "Not measured").
"""

from configs import mnist_cnn


def get_config():
  config = mnist_cnn.get_config()
  config.data.name = "cifar10"
  return config


def get_cpu_config():
  """The reduced CNN of ``mnist_cnn.get_cpu_config`` on CIFAR-10."""
  config = mnist_cnn.get_cpu_config()
  config.data.name = "cifar10"
  return config
