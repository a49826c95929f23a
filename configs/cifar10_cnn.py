"""CIFAR-10 with the paper's CNN (3 stages of 5×5 conv(128)→BN→ReLU→pool), conv synthesizers.

  python -m experiments.main --config=configs/cifar10_cnn.py --workdir=/tmp/dni/cifar10_cnn \\
      --config.method=cdni --config.data.dir=/path/to/cifar-10-batches-py

Needs an accelerator for the full run: on the 2-core development CPU the
MNIST-sized step took 1.1 s (backprop) to 2.9 s (cDNI); see mnist_cnn.py.

Expected: not measured yet (docs/results.md lists it under "Not measured").
"""

from configs import mnist_cnn


def get_config():
  config = mnist_cnn.get_config()
  config.data.name = "cifar10"
  return config
