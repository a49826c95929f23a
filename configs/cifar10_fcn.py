"""CIFAR-10 with the paper's FCN (stages Linear→BN→ReLU of 256 units).

  python -m experiments.main --config=configs/cifar10_fcn.py --workdir=/tmp/dni/cifar10_fcn \\
      --config.method=cdni --config.data.dir=/path/to/cifar-10-batches-py

``data.dir`` may hold the python pickles (cifar-10-batches-py) or the binary
version (cifar-10-batches-bin); empty uses tensorflow-datasets. FCNs reach
roughly 45-55 % test accuracy on CIFAR-10 (a general figure, not one
measured here).

Expected: not measured yet (docs/results.md lists it under "Not measured").
"""

from configs import mnist_fcn


def get_config():
  config = mnist_fcn.get_config()
  config.data.name = "cifar10"
  return config
